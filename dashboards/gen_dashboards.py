#!/usr/bin/env python3
"""Generate the Grafana dashboards in dashboards/grafana/ (stdlib only).

    python3 dashboards/gen_dashboards.py          # rewrite the JSON files
    python3 dashboards/gen_dashboards.py --check  # exit 1 if they are out of date

The JSON files are committed (import them into Grafana: Dashboards -> New -> Import,
or provision them); this script is their source. Every query uses the datasource
variable ${datasource} (type prometheus) - no datasource UID is hard-coded. The
dashboards' own uids are fixed (rpo-overview, rpo-target, rpo-dr-drill) so that links
between them survive re-import and provisioning.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent / "grafana"
DS = {"type": "prometheus", "uid": "${datasource}"}
# Template variables are only ever used with =~ matchers (check_dashboards.py checks).
M = 'target=~"$target", replica_region=~"$region"'
MT = 'target=~"$target"'
ROUTE = "{{target}} {{source_region}}→{{replica_region}}"
TAGS = ["rpo-agent"]


class Layout:
    """Assigns panel ids and grid positions, left to right, top to bottom."""

    def __init__(self):
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel

    def row(self, title):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x = 0
        self.y += 1
        self.row_h = 0


def tgt(expr, legend="", ref="A", instant=False, fmt="time_series"):
    t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend,
         "editorMode": "code", "range": not instant, "instant": instant}
    if fmt != "time_series":
        t["format"] = fmt
    return t


def refs(targets):
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return targets


def thresholds(*steps):
    out = [{"color": steps[0], "value": None}]
    for i in range(1, len(steps), 2):
        out.append({"color": steps[i + 1], "value": steps[i]})
    return {"mode": "absolute", "steps": out}


def timeseries(title, targets, unit="s", desc="", overrides=None, stack=False, bars=False, min0=True):
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1,
              "fillOpacity": 60 if bars else 10, "showPoints": "never", "spanNulls": False,
              "axisSoftMin": 0 if min0 else None,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if custom["axisSoftMin"] is None:
        del custom["axisSoftMin"]
    return {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom,
                                         "color": {"mode": "palette-classic"},
                                         "thresholds": thresholds("green")},
                            "overrides": overrides or []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": refs(targets)}


def stat(title, targets, unit="s", desc="", th=None, graph=True, decimals=None):
    d = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": th or thresholds("green")}
    if decimals is not None:
        d["decimals"] = decimals
    return {"type": "stat", "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": d, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area" if graph else "none",
                        "textMode": "auto", "justifyMode": "auto", "orientation": "auto"},
            "targets": refs(targets)}


def table(title, targets, desc="", rename=None, unit=None, exclude=("Time", "__name__", "job")):
    defaults = {"custom": {"align": "auto", "filterable": True}, "thresholds": thresholds("green")}
    if unit:
        defaults["unit"] = unit
    return {"type": "table", "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
            "transformations": [{"id": "merge", "options": {}},
                                {"id": "organize", "options": {
                                    "excludeByName": {k: True for k in exclude},
                                    "renameByName": rename or {}}}],
            "targets": refs(targets)}


def objective_override():
    return [{"matcher": {"id": "byRegexp", "options": "^objective.*"},
             "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                            {"id": "custom.fillOpacity", "value": 0}]}]


def drill_link(title="Target drill-down"):
    return [{"title": title, "targetBlank": False,
             "url": "/d/rpo-target/rpo-target-drill-down?${datasource:queryparam}"
                    "&var-target=${__field.labels.target}&var-region=${__field.labels.replica_region}"
                    "&${__url_time_range}"}]


def var_datasource():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False,
            "multi": False, "skipUrlSync": False}


def var_query(name, label, query, multi=True, include_all=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var", "qryType": 1},
            "definition": query, "refresh": 2, "sort": 1, "regex": "", "hide": 0,
            "current": {}, "options": [], "multi": multi, "includeAll": include_all,
            "allValue": ".*", "skipUrlSync": False}


def templating(target_multi=True):
    return {"list": [
        var_datasource(),
        var_query("target", "Target", "label_values(rpo_seconds, target)",
                  multi=target_multi, include_all=target_multi),
        var_query("region", "Replica region", 'label_values(rpo_seconds{target=~"$target"}, replica_region)'),
    ]}


def dashboard(uid, title, description, panels, annotations=(), target_multi=True, time_from="now-6h"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{"type": "dashboards", "tags": TAGS, "title": "rpo-agent dashboards",
                   "asDropdown": True, "includeVars": True, "keepTime": True,
                   "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
             "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
             "type": "dashboard"}] + list(annotations)},
        "templating": templating(target_multi),
        "panels": panels,
    }


def direction_annotation():
    return {"name": "Direction changes (failover)", "datasource": DS, "enable": True, "hide": False,
            "iconColor": "red", "expr": f"increase(rpo_direction_changes_total{{{MT}}}[1m]) > 0",
            "step": "15s", "titleFormat": "Direction change: {{target}}",
            "textFormat": "{{target}} ({{kind}}) swapped source and replica", "useValueForTime": False}


# ---------------------------------------------------------------------------------------------
def overview():
    L = Layout()
    pct = thresholds("green", 0.8, "yellow", 1, "red")
    L.add(stat("Worst RPO now", [tgt(f"max(rpo_seconds{{{M}}})")],
               desc="The largest RPO across the selected targets and replica regions, right now."), 4, 5)
    L.add(stat("Worst RPO / objective", [tgt(f"max(rpo:rpo_objective:ratio{{{M}}})")], unit="percentunit",
               desc="RPO as a fraction of its own objective (100% = at the objective).", th=pct), 4, 5)
    L.add(stat("Targets above objective",
               [tgt(f"count(rpo_seconds{{{M}}} > rpo_objective_seconds{{{M}}}) or on() vector(0)")],
               unit="none", th=thresholds("green", 1, "red"), decimals=0,
               desc="Target × replica pairs whose RPO is above the objective now."), 4, 5)
    L.add(stat("Probes up", [tgt(f"sum(rpo_probe_up{{{M}}}) / count(rpo_probe_up{{{M}}})")],
               unit="percentunit", th=thresholds("red", 0.99, "green"),
               desc="Fraction of target × replica probes whose last write and read both succeeded."), 4, 5)
    L.add(stat("Worst SLO attainment (1d)", [tgt(f"min(rpo:slo_attainment:ratio_1d{{{M}}})")],
               unit="percentunit", decimals=3, th=thresholds("red", 0.99, "yellow", 0.999, "green"),
               desc="Lowest fraction of the last day spent within the objective."), 4, 5)
    L.add(stat("Worst SLO attainment (30d)", [tgt(f"min(rpo:slo_attainment:ratio_30d{{{M}}})")],
               unit="percentunit", decimals=3, th=thresholds("red", 0.99, "yellow", 0.999, "green"),
               desc="Lowest fraction of the last 30 days spent within the objective."), 4, 5)
    p = L.add(timeseries("RPO per target against its objective", [
        tgt(f"rpo_seconds{{{M}}}", ROUTE),
        tgt(f"rpo_objective_seconds{{{M}}}", "objective " + ROUTE),
    ], desc="RPO now (max of newest canary's lag and oldest unseen canary's age) per target and "
            "replica region; dashed: the objective. Click a series for the drill-down.",
        overrides=objective_override()), 16, 10)
    p["fieldConfig"]["defaults"]["links"] = drill_link()
    p = L.add({"type": "bargauge", "title": "RPO as % of objective", "datasource": DS,
               "description": "Each target's RPO now, relative to its own objective.",
               "fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 2,
                                            "color": {"mode": "thresholds"}, "thresholds": pct,
                                            "links": drill_link()},
                               "overrides": []},
               "options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                           "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "minVizHeight": 10, "minVizWidth": 0, "valueMode": "color"},
               "targets": [tgt(f"rpo:rpo_objective:ratio{{{M}}}", ROUTE, instant=True)]}, 8, 10)
    L.add(table("SLO attainment (fraction of time within objective)", [
        tgt(f"rpo:slo_attainment:ratio_1h{{{M}}}", instant=True, fmt="table"),
        tgt(f"rpo:slo_attainment:ratio_1d{{{M}}}", instant=True, fmt="table"),
        tgt(f"rpo:slo_attainment:ratio_30d{{{M}}}", instant=True, fmt="table"),
    ], rename={"Value #A": "last 1h", "Value #B": "last 1d", "Value #C": "last 30d"}, unit="percentunit",
        exclude=("Time", "__name__", "job"),
        desc="From the recording rules rpo:slo_attainment:ratio_{1h,1d,30d}. Time without data "
             "(agent down) counts neither way."), 12, 8)
    L.add(timeseries("SLO attainment, rolling 1h", [tgt(f"rpo:slo_attainment:ratio_1h{{{M}}}", ROUTE)],
                     unit="percentunit", min0=False), 12, 8)
    L.add(timeseries("Data at risk if you fail over now (upper bound)", [tgt(f"rpo_upper_bound_seconds{{{M}}}", ROUTE)],
                     desc="now − write time of the newest canary seen in the replica: never under-reports. "
                          "A failover now loses at most this much; it keeps rising while the source region is down."),
          12, 8)
    L.add(table("Agents", [tgt("count by (instance, version) (rpo_agent_build_info)", instant=True, fmt="table")],
                rename={"Value": "agents"}, exclude=("Time",),
                desc="Running rpo-agent instances and their versions."), 12, 8)
    return dashboard("rpo-overview", "RPO overview",
                     "Cross-region replication RPO per target against its objective (rpo-agent).", L.panels)


def target_drilldown():
    L = Layout()
    L.add(stat("RPO now", [tgt(f"max(rpo_seconds{{{M}}})")]), 4, 5)
    L.add(stat("Objective", [tgt(f"max(rpo_objective_seconds{{{M}}})")], graph=False), 4, 5)
    L.add(stat("Probe up", [tgt(f"min(rpo_probe_up{{{M}}})")], unit="none",
               th=thresholds("red", 1, "green"), graph=False), 4, 5)
    L.add(stat("Canaries pending", [tgt(f"sum(rpo_canaries_pending{{{M}}})")], unit="none", decimals=0), 4, 5)
    L.add(stat("Lost in range", [tgt(f"sum(increase(rpo_canaries_lost_total{{{M}}}[$__range]))")],
               unit="none", decimals=0, th=thresholds("green", 1, "red"), graph=False), 4, 5)
    L.add(stat("Failed in range", [tgt(f"sum(increase(rpo_canaries_failed_total{{{M}}}[$__range]))")],
               unit="none", decimals=0, th=thresholds("green", 1, "red"), graph=False), 4, 5)
    L.add(timeseries("RPO, upper bound and objective", [
        tgt(f"rpo_seconds{{{M}}}", "RPO " + ROUTE),
        tgt(f"rpo_upper_bound_seconds{{{M}}}", "data at risk (upper bound) " + ROUTE),
        tgt(f"rpo_objective_seconds{{{M}}}", "objective " + ROUTE),
    ], overrides=objective_override()), 12, 9)
    L.add({"type": "heatmap", "title": "Replication lag per canary (heatmap)", "datasource": DS,
           "description": "Distribution of the lag of each observed canary "
                          "(rpo_replication_lag_seconds histogram), per time bucket.",
           "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"},
                                                   "hideFrom": {"legend": False, "tooltip": False,
                                                                "viz": False}}},
                           "overrides": []},
           "options": {"calculate": False, "cellGap": 1, "cellValues": {"unit": "none"},
                       "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                                 "fill": "dark-orange", "reverse": False, "scale": "exponential"},
                       "exemplars": {"color": "rgba(255,0,255,0.7)"}, "filterValues": {"le": 1e-9},
                       "legend": {"show": True}, "rowsFrame": {"layout": "auto"},
                       "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
                       "yAxis": {"axisPlacement": "left", "reverse": False, "unit": "s"}},
           "targets": [tgt(f"sum by (le) (increase(rpo_replication_lag_seconds_bucket{{{M}}}[$__rate_interval]))",
                           "{{le}}", fmt="heatmap")]}, 12, 9)
    L.add(timeseries("Replication lag quantiles", [
        tgt(f"rpo:replication_lag_seconds:p50_5m{{{M}}}", "p50 " + ROUTE),
        tgt(f"rpo:replication_lag_seconds:p99_5m{{{M}}}", "p99 " + ROUTE),
        tgt(f"sum by (target, source_region, replica_region) (rate(rpo_replication_lag_seconds_sum{{{M}}}[$__rate_interval]))"
            f" / sum by (target, source_region, replica_region) (rate(rpo_replication_lag_seconds_count{{{M}}}[$__rate_interval]))",
            "mean " + ROUTE),
    ], desc="p50/p99 over 5 minutes (recording rules) and the mean per rate interval."), 12, 8)
    L.add(timeseries("Measurement uncertainty", [
        tgt(f"histogram_quantile(0.5, sum by (le, target, source_region, replica_region) "
            f"(rate(rpo_measurement_uncertainty_seconds_bucket{{{M}}}[$__rate_interval])))", "p50 " + ROUTE),
        tgt(f"histogram_quantile(0.99, sum by (le, target, source_region, replica_region) "
            f"(rate(rpo_measurement_uncertainty_seconds_bucket{{{M}}}[$__rate_interval])))", "p99 " + ROUTE),
        tgt(f"sum by (target, source_region, replica_region) (rate(rpo_measurement_uncertainty_seconds_sum{{{M}}}[$__rate_interval]))"
            f" / sum by (target, source_region, replica_region) (rate(rpo_measurement_uncertainty_seconds_count{{{M}}}[$__rate_interval]))",
            "mean " + ROUTE),
    ], desc="Width of the window between the last read that missed a canary and the first that "
            "saw it: the true arrival lies inside it."), 12, 8)
    L.add(timeseries("Canary flow", [
        tgt(f"sum by (replica_region) (rate(rpo_canaries_written_total{{{M}}}[$__rate_interval]))",
            "written →{{replica_region}}"),
        tgt(f"sum by (replica_region) (rate(rpo_canaries_observed_total{{{M}}}[$__rate_interval]))",
            "observed {{replica_region}}"),
        tgt(f"sum by (replica_region) (rate(rpo_canaries_lost_total{{{M}}}[$__rate_interval]))",
            "lost {{replica_region}}"),
        tgt(f"sum by (replica_region) (rate(rpo_canaries_failed_total{{{M}}}[$__rate_interval]))",
            "failed {{replica_region}}"),
    ], unit="ops", desc="Canaries per second: written (counted per replica region), observed in the "
                        "replica, lost (timeout), failed (S3 reported FAILED)."), 12, 8)
    L.add(timeseries("Canaries pending", [tgt(f"rpo_canaries_pending{{{M}}}", ROUTE)], unit="none",
                     desc="Written but not yet seen in the replica."), 12, 8)
    L.add(timeseries("Probe errors by code", [
        tgt(f"sum by (op, code) (rate(rpo_probe_errors_total{{{M}}}[$__rate_interval]))", "{{op}} {{code}}"),
    ], unit="ops", desc="API/DB errors per second by operation and error code. Empty when there were "
                        "no errors.", stack=True), 12, 8)
    L.add(timeseries("API requests (cost)", [
        tgt(f"sum by (service, op, region) (rate(rpo_api_requests_total{{{MT}}}[$__rate_interval]))",
            "{{service}} {{op}} {{region}}"),
    ], unit="reqps", desc="Every billable call the agent makes, per service, operation and region.",
        stack=True), 12, 8)
    L.add(stat("API requests in range", [tgt(f"sum(increase(rpo_api_requests_total{{{MT}}}[$__range]))")],
               unit="short", decimals=0, graph=False), 6, 5)
    L.add(stat("Projected requests / 30 days", [tgt(f"sum(rate(rpo_api_requests_total{{{MT}}}[$__range])) * 2592000")],
               unit="short", graph=False, desc="At the average rate of the selected time range."), 6, 5)
    L.add(stat("API requests per canary", [tgt(
        f"sum(increase(rpo_api_requests_total{{{MT}}}[$__range])) / sum(increase(rpo_canaries_observed_total{{{M}}}[$__range]))")],
        unit="short", decimals=1, graph=False,
        desc="Requests (writes + reads, all regions) per canary observed in a replica."), 6, 5)
    L.add(stat("Time since last successful canary", [tgt(
        f"max(time() - rpo_last_canary_success_timestamp_seconds{{{M}}})")], graph=False), 6, 5)
    L.add(timeseries("AWS-reported vs observed", [
        tgt(f"rpo_aws_reported_lag_seconds{{{M}}}", "AWS {{metric}} →{{replica_region}}"),
        tgt(f"rpo_seconds{{{M}}}", "observed RPO →{{replica_region}}"),
        tgt(f"rpo:replication_lag_seconds:p50_5m{{{M}}}", "observed lag p50 →{{replica_region}}"),
    ], desc="AWS's own figure from CloudWatch (arrives minutes late, stops when nothing "
            "replicates) beside the canary measurement."), 12, 8)
    L.add(timeseries("AWS minus observed (5m average)", [
        tgt(f"rpo:aws_reported_lag_divergence_seconds:avg5m{{{M}}}", "{{metric}} →{{replica_region}}"),
    ], min0=False, desc="Positive: AWS reports more lag than the canaries see. "
                        "The RPOAWSReportedLagDivergence alert fires on a sustained gap."), 12, 8)
    return dashboard("rpo-target", "RPO target drill-down",
                     "One target in detail: lag distribution, uncertainty, canary flow, errors, "
                     "API cost, AWS's figure beside ours.", L.panels, target_multi=False,
                     time_from="now-3h")


def dr_drill():
    L = Layout()
    L.add(stat("Direction changes in range",
               [tgt(f"sum(increase(rpo_direction_changes_total{{{MT}}}[$__range]))")],
               unit="none", decimals=0, graph=False,
               desc="Switchovers/failovers the agent noticed (SQL targets): it swapped source and replica."),
          6, 5)
    L.add(stat("Max RPO in range", [tgt(f"max(max_over_time(rpo_seconds{{{M}}}[$__range]))")], graph=False,
               desc="The worst RPO measured in the selected time range: the data a failover at that "
                    "moment would have lost."), 6, 5)
    L.add(stat("Max data at risk in range (upper bound)",
               [tgt(f"max(max_over_time(rpo_upper_bound_seconds{{{M}}}[$__range]))")], graph=False,
               desc="If you fail over now you lose at most rpo_upper_bound_seconds: the worst of it in the range."), 6, 5)
    L.add(stat("Longest gap without a successful canary", [tgt(
        f"max(max_over_time((time() - rpo_last_canary_success_timestamp_seconds{{{M}}})[$__range:]))")],
        graph=False, desc="Measurement blackout during the drill (e.g. while the writer was read-only)."), 6, 5)
    L.add(timeseries("RPO around the failover", [
        tgt(f"rpo_seconds{{{M}}}", "RPO " + ROUTE),
        tgt(f"rpo_upper_bound_seconds{{{M}}}", "data at risk (upper bound) " + ROUTE),
        tgt(f"rpo_objective_seconds{{{M}}}", "objective " + ROUTE),
    ], desc="Red annotations mark the direction changes. After a failover the labels "
            "source_region/replica_region are swapped: the new series is the new direction.",
        overrides=objective_override()), 24, 10)
    L.add(timeseries("Direction changes", [
        tgt(f"sum by (target, kind) (increase(rpo_direction_changes_total{{{MT}}}[$__rate_interval]))",
            "{{target}} ({{kind}})"),
    ], unit="none", bars=True), 12, 7)
    L.add(table("Direction measured now", [tgt(f"rpo_seconds{{{M}}}", instant=True, fmt="table")],
                rename={"Value": "RPO now"}, unit="s", exclude=("Time", "__name__", "job"),
                desc="Which way each target is being measured right now (source → replica)."), 12, 7)
    L.add(timeseries("Probe up", [tgt(f"rpo_probe_up{{{M}}}", ROUTE)], unit="none",
                     desc="0 while the old writer is read-only / the new one is not yet writable."), 12, 7)
    L.add(timeseries("Probe errors by code", [
        tgt(f"sum by (op, code) (rate(rpo_probe_errors_total{{{M}}}[$__rate_interval]))", "{{op}} {{code}}"),
    ], unit="ops", stack=True, desc="Empty when there were no errors."), 12, 7)
    L.add(timeseries("Canaries pending and lost", [
        tgt(f"sum by (target, replica_region) (rpo_canaries_pending{{{M}}})", "pending {{target}} →{{replica_region}}"),
        tgt(f"sum by (target, replica_region) (increase(rpo_canaries_lost_total{{{M}}}[$__rate_interval]))",
            "lost {{target}} →{{replica_region}}"),
    ], unit="none"), 12, 7)
    L.add(timeseries("Time since last successful canary", [
        tgt(f"time() - rpo_last_canary_success_timestamp_seconds{{{M}}}", ROUTE),
    ]), 12, 7)
    return dashboard("rpo-dr-drill", "RPO DR drill",
                     "Failover rehearsal view: direction changes and RPO around them, for the "
                     "drill report.", L.panels, annotations=[direction_annotation()], time_from="now-1h")


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, fn in (("rpo-overview.json", overview), ("rpo-target.json", target_drilldown),
                     ("rpo-dr-drill.json", dr_drill)):
        text = json.dumps(fn(), indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python3 dashboards/gen_dashboards.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
