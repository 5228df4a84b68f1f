#!/usr/bin/env bash
# Tests of the rpo-agent dashboards and rules. Run from anywhere:
#   bash dashboards/test.sh                         # offline: rules, promtool tests, dashboards
#   bash dashboards/test.sh --prometheus URL        # also run every panel query against URL
#   bash dashboards/test.sh --offline               # skip the lab monitoring stack test (~70 s)
# Needs promtool/amtool (Debian packages prometheus, prometheus-alertmanager; installed here
# with apt-get when missing) and python3. Last line: "N passed, N failed"; exit 1 on failure.
set -u
cd "$(dirname "$0")"
PROM_URL=""
OFFLINE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prometheus) PROM_URL="$2"; shift 2 ;;
    --offline) OFFLINE=1; shift ;;
    *) echo "usage: $0 [--offline] [--prometheus URL]" >&2; exit 2 ;;
  esac
done

passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "PASS: $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL: $*"; }
step() { # step NAME CMD...: one test, output shown only on failure
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then ok "$name"; else bad "$name"; echo "$out" | sed 's/^/    /'; fi
}

ensure_pkg() { # ensure_pkg BINARY PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "$1 missing and not root: apt-get install $2" >&2; return 1; }
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 install --no-install-recommends "$2")
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/tmp/rpo-dashboards-apt.log 2>&1 || {
    apt-get -q -o DPkg::Lock::Timeout=300 update >>/tmp/rpo-dashboards-apt.log 2>&1
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>/tmp/rpo-dashboards-apt.log 2>&1
  }
  command -v "$1" >/dev/null 2>&1
}

if ensure_pkg promtool prometheus; then ok "promtool available"; else bad "promtool available"; fi
if ensure_pkg amtool prometheus-alertmanager; then ok "amtool available"; else bad "amtool available"; fi

if command -v promtool >/dev/null 2>&1; then
  for f in rules/*.yml; do step "promtool check rules $f" promtool check rules "$f"; done
  for f in tests/*.yml; do step "promtool test rules $f" promtool test rules "$f"; done
  step "promtool check config prometheus.example.yml" promtool check config prometheus.example.yml
  # The TLS + basic-auth variant of the scrape job (its lines are marked "#: ").
  tls_variant=$(mktemp --suffix=.yml)
  sed -E 's/^( *)#: /\1/' prometheus.example.yml >"$tls_variant"
  # Rule files are relative to the config's directory; promtool resolves them from there.
  sed -i "s|  - rules/|  - $PWD/rules/|" "$tls_variant"
  step "promtool check config prometheus.example.yml (TLS + basic auth variant)" \
    sh -c "grep -q '^    scheme: https' '$tls_variant' && promtool check config '$tls_variant'"
  rm -f "$tls_variant"
  # The example web config, beside a certificate of its own (promtool opens the files), is
  # accepted by promtool and by the agent (when built: target/debug/rpo-agent).
  wc_dir=$(mktemp -d)
  cp web-config.example.yml "$wc_dir/web.yml"
  mkdir "$wc_dir/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -keyout "$wc_dir/tls/agent.key" -out "$wc_dir/tls/agent.crt" >/dev/null 2>&1
  step "promtool check web-config web-config.example.yml" promtool check web-config "$wc_dir/web.yml"
  agent_bin=../target/debug/rpo-agent
  if [ -x "$agent_bin" ]; then
    printf '[agent]\nweb_config = "%s"\n[[target]]\nname = "t"\nkind = "dynamodb"\ntable = "t"\nsource = { region = "eu-west-1" }\nreplicas = [{ region = "eu-west-2" }]\n' \
      "$wc_dir/web.yml" >"$wc_dir/agent.toml"
    step "rpo-agent validate accepts web-config.example.yml" "$agent_bin" validate --config "$wc_dir/agent.toml"
  fi
  rm -rf "$wc_dir"
fi
if command -v amtool >/dev/null 2>&1; then
  step "amtool check-config alertmanager.example.yml" amtool check-config alertmanager.example.yml
fi

# Static dashboard and rule checks: one line per check.
out="$(python3 check_dashboards.py 2>&1)"; rc=$?
while IFS= read -r line; do
  case "$line" in
    PASS:*) passed=$((passed + 1)); echo "$line" ;;
    FAIL:*) failed=$((failed + 1)); echo "$line" ;;
  esac
done <<<"$out"
if [ $rc -ne 0 ] && ! grep -q '^FAIL:' <<<"$out"; then bad "check_dashboards.py crashed"; echo "$out"; fi

step "check_panels.py unit tests (stub Prometheus API)" python3 test_check_panels.py

# The lab's monitoring stack end to end: Prometheus + Alertmanager + webhook with these rules
# (stall -> page within objective + 15 s, resolve, controls, clean stop). One line per check.
if [ -z "$OFFLINE" ]; then
  out="$(python3 ../tests/lab/monitoring/test_lab_monitoring.py 2>&1)"; rc=$?
  while IFS= read -r line; do
    case "$line" in
      PASS:*) passed=$((passed + 1)); echo "lab monitoring $line" ;;
      FAIL:*) failed=$((failed + 1)); echo "lab monitoring $line" ;;
    esac
  done <<<"$out"
  if [ $rc -ne 0 ] && ! grep -q '^FAIL:' <<<"$out"; then bad "lab monitoring test crashed"; echo "$out"; fi
fi

if [ -n "$PROM_URL" ]; then
  step "check_panels.py against $PROM_URL" python3 check_panels.py --prometheus "$PROM_URL" -q
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
