#!/usr/bin/env python3
"""Offline unit tests of check_panels.py's logic (stdlib unittest).

A stub HTTP server speaks the few Prometheus API calls check_panels.py makes and answers by
the query text: this tests the script's substitution, empty/NaN/error handling and exit code,
not the dashboards (that needs a real Prometheus scraping the agent: see README.md).
"""
import http.server
import json
import pathlib
import sys
import tempfile
import threading
import unittest
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_panels  # noqa: E402


class Stub(http.server.BaseHTTPRequestHandler):
    seen = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        Stub.seen.append((u.path, q))
        expr = (q.get("query") or q.get("match[]") or [""])[0]
        if u.path.startswith("/api/v1/label/"):
            body = {"status": "success", "data": ["orders"] if "rpo_seconds" in expr else []}
        elif "syntax_error" in expr:
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"status": "error", "errorType": "bad_data",
                                         "error": "parse error"}).encode())
            return
        else:
            if "empty_metric" in expr:
                result = []
            elif "nan_metric" in expr:
                result = [{"metric": {}, "values": [[1, "NaN"]]}]
            elif u.path.endswith("/query"):
                result = [{"metric": {"target": "orders"}, "value": [1, "1"]}]
            else:
                result = [{"metric": {"target": "orders"}, "values": [[1, "1"], [2, "2"]]}]
            rtype = "vector" if u.path.endswith("/query") else "matrix"
            body = {"status": "success", "data": {"resultType": rtype, "result": result}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


def dashboard(exprs, title="D"):
    return {"title": title, "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus"},
        {"name": "target", "type": "query", "query": {"query": "label_values(rpo_seconds, target)"}}]},
        "annotations": {"list": [{"name": "ann", "expr": "empty_metric"}]},
        "panels": [{"id": i + 1, "title": f"P{i}", "targets": [{"refId": "A", "expr": e}]}
                   for i, e in enumerate(exprs)]}


class CheckPanelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.srv.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()

    def run_with(self, exprs, *extra):
        with tempfile.TemporaryDirectory() as d:
            pathlib.Path(d, "d.json").write_text(json.dumps(dashboard(exprs)))
            Stub.seen.clear()
            return check_panels.main(["--prometheus", self.url, "--dashboards", d, "-q", *extra])

    def test_all_good(self):
        self.assertEqual(self.run_with(['rpo_seconds{target=~"$target"}']), 0)

    def test_substitution(self):
        self.run_with(['rate(rpo_x{target=~"$target"}[$__rate_interval]) [$__range:]'], "--var", "target=orders")
        queries = [q["query"][0] for p, q in Stub.seen if "query" in q]
        self.assertIn('rate(rpo_x{target=~"orders"}[1m]) [10m:]', queries)

    def test_error_fails(self):
        self.assertEqual(self.run_with(["syntax_error("]), 1)

    def test_empty_fails_unless_allowed(self):
        self.assertEqual(self.run_with(["empty_metric"]), 1)
        self.assertEqual(self.run_with(["empty_metric"], "--allow-empty", "^D / P0"), 0)

    def test_nan_only_is_no_data(self):
        self.assertEqual(self.run_with(["nan_metric"]), 1)

    def test_annotation_may_be_empty(self):
        # the dashboard's annotation query returns nothing: not a failure
        self.assertEqual(self.run_with(["rpo_seconds"]), 0)

    def test_unreachable_prometheus_fails(self):
        with tempfile.TemporaryDirectory() as d:
            pathlib.Path(d, "d.json").write_text(json.dumps(dashboard(["rpo_seconds"])))
            rc = check_panels.main(["--prometheus", "http://127.0.0.1:9", "--dashboards", d, "-q",
                                    "--timeout", "2"])
        self.assertEqual(rc, 1)


if __name__ == "__main__":
    unittest.main()
