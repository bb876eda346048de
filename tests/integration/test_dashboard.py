"""The Grafana dashboard (docker/grafana/vecgate-dashboard.json) queries only
what vecgate exports.  A primary, one streaming replica and a vecgate with a
managed index (route replica, drift monitor) serve vector reads, finish a
small rebuild (vecgatectl rebuild start --until-done) and answer an error, so
every series family has samples; then /metrics is scraped with the bearer
token and every panel target's PromQL and every template variable's
label_values() query is checked against the scrape: each metric name exactly
as written (a histogram x is exposed as x_bucket, x_sum and x_count), each
label in a {matcher}, by()/without()/on()/ignoring()/group_*() list and
{{legend}}, and each literal matcher value.  A copy of the dashboard with a
bogus panel and variable proves the checker reports what vecgate does not
export."""
import copy
import json
import os
import random
import re
import subprocess
import unittest
import urllib.request

import psycopg

from pgtest import SUPERPW, SRC, PgCluster, Vecgate, cube_table, eval_file, free_port, wait_for

CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
DASHBOARD = os.path.join(SRC, "docker", "grafana", "vecgate-dashboard.json")
TOKEN = "dashboard-token-0123456789"
VREAD = "SELECT id FROM items ORDER BY v <-> cube(array[%s, 0.5, 0.5]) LIMIT 5"

# what the dashboard must cover (docker/README.md, README.md's Admin API)
REQUIRED = {
    "vecgate_rebuild_state", "vecgate_rebuild_progress_percent", "vecgate_recall", "vecgate_drift_recall",
    "vecgate_drift_baseline", "vecgate_drift_alert", "vecgate_swap_lock_milliseconds", "vecgate_route_mode",
    "vecgate_route_queries_total", "vecgate_vector_query_seconds_bucket", "vecgate_replica_lag_bytes",
    "vecgate_replica_lag_seconds", "vecgate_backend_in_rotation", "vecgate_backend_up",
    "vecgate_client_errors_total", "vecgate_server_connections", "vecgate_waiting_clients", "vecgate_clients",
    "vecgate_requests_total", "vecgate_request_seconds_total", "vecgate_rebuild_blocked_seconds",
}

# ---------------------------------------------------------------- the checker

FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "ceil",
    "floor", "round", "clamp", "clamp_min", "clamp_max", "label_replace", "label_join", "vector", "scalar",
    "time", "sort", "sort_desc", "absent", "absent_over_time", "avg_over_time", "max_over_time",
    "min_over_time", "sum_over_time", "count_over_time", "last_over_time", "quantile_over_time", "changes",
    "resets", "timestamp", "sgn", "exp", "ln", "log2", "log10", "sqrt", "predict_linear",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2"}
IDENT = r"[A-Za-z_:][A-Za-z0-9_:]*"
STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(%s)\s*(?:,|$)" % STRING)
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def promql_refs(expr):
    """(metrics, matchers, grouping labels, problems) of one PromQL expression:
    metrics as written, matchers as (metric, label, op, value)."""
    problems, matchers, metrics = [], [], []
    text = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery selectors ([5m], [$__rate_interval])

    def selector(m):
        name, body = m.group(1), m.group(2)
        found, rest = [], body
        for mm in MATCHER.finditer(body):
            value = mm.group(3)[1:-1]
            found.append((mm.group(1), mm.group(2), value))
        rest = MATCHER.sub("", body).strip()
        if rest:
            problems.append("cannot parse matchers {%s} in %r" % (body, expr))
        if not name or name in FUNCTIONS | KEYWORDS:
            named = [v for k, op, v in found if k == "__name__" and op == "="]
            if not named:
                problems.append("selector without a metric name in %r" % expr)
                return " "
            name = named[0]
        for label, op, value in found:
            if label != "__name__":
                matchers.append((name, label, op, value))
        return " %s " % name

    text = re.sub(r"(%s)?\s*\{([^{}]*)\}" % IDENT, selector, text)
    grouping = set()
    for m in GROUPING.finditer(text):
        grouping |= {g.strip() for g in m.group(2).split(",") if g.strip()}
    text = GROUPING.sub(" ", text)
    text = re.sub(STRING, " ", text)
    text = re.sub(r"\$\{?\w+(?::\w+)?\}?", " ", text)  # Grafana variables outside strings
    for m in re.finditer(r"(?<![\w.:])(%s)(\s*\()?" % IDENT, text):
        word, call = m.group(1), m.group(2)
        if call:
            if word not in FUNCTIONS:
                problems.append("unknown function %s() in %r" % (word, expr))
        elif word not in KEYWORDS and word not in FUNCTIONS:
            metrics.append(word)
    if not metrics:
        problems.append("no metric in %r" % expr)
    return metrics, matchers, grouping, problems


def parse_scrape(text):
    """{sample name: {label: {values}}} and {family: type} of a Prometheus text exposition."""
    series, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            types[fam] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"(%s)(?:\{(.*)\})?\s+\S+$" % IDENT, line)
        assert m, "bad sample line %r" % line
        labels = series.setdefault(m.group(1), {})
        for lm in re.finditer(r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""):
            labels.setdefault(lm.group(1), set()).add(lm.group(2))
    return series, types


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:  # collapsed rows hold their panels
            yield inner


def check_dashboard(dash, scrape_text):
    """Problems (strings) of a dashboard against a scrape; [] when it only
    queries what the scrape has; also returns the metric names it uses."""
    series, types = parse_scrape(scrape_text)
    problems, used = [], set()
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}

    def check_metric(where, metric):
        used.add(metric)
        if metric not in series:
            hint = " (a histogram: use %s_bucket, _sum or _count)" % metric if types.get(metric) == "histogram" else ""
            problems.append("%s: metric %s is not exported%s" % (where, metric, hint))
            return False
        return True

    def check_label(where, metric, label):
        if metric in series and label not in series[metric]:
            problems.append("%s: metric %s has no label %r (it has %s)" % (where, metric, label, sorted(series[metric])))
            return False
        return True

    def check_expr(where, expr, legend=""):
        for ref in re.findall(r"\$\{?(\w+)", expr):
            if not ref.startswith("__") and ref not in variables:
                problems.append("%s: undefined variable $%s" % (where, ref))
        metrics, matchers, grouping, bad = promql_refs(expr)
        problems.extend("%s: %s" % (where, b) for b in bad)
        present = [m for m in metrics if check_metric(where, m)]
        for metric, label, op, value in matchers:
            if not check_label(where, metric, label) or metric not in series:
                continue
            values = series[metric][label]
            if "$" in value:
                if label == "index" and value != "$index":
                    problems.append("%s: index matcher %r is not the $index variable" % (where, value))
                continue
            if op == "=" and value not in values:
                problems.append("%s: no %s{%s=%r} (values %s)" % (where, metric, label, value, sorted(values)))
            elif op == "=~":
                for alt in value.split("|"):
                    if re.fullmatch(r"\w+", alt) and alt not in values:
                        problems.append("%s: no %s{%s=%r} (values %s)" % (where, metric, label, alt, sorted(values)))
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""))
        for label in grouping | legend_labels:
            for metric in present:
                check_label(where, metric, label)
        # per-index panels follow the index variable
        for metric in present:
            if "index" in series[metric] and not any(m == metric and l == "index" and v == "$index"
                                                     for m, l, _, v in matchers):
                problems.append("%s: %s is per index but not filtered by index=~\"$index\"" % (where, metric))

    ids = set()
    for p in panels_of(dash):
        where = "panel %r" % p.get("title")
        if p.get("id") in ids:
            problems.append("%s: duplicate id %s" % (where, p.get("id")))
        ids.add(p.get("id"))
        if "gridPos" not in p:
            problems.append("%s: no gridPos" % where)
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            problems.append("%s: no targets" % where)
        for t in p.get("targets", []):
            if not t.get("expr"):
                problems.append("%s: target %s has no expr" % (where, t.get("refId")))
                continue
            check_expr("%s %s" % (where, t.get("refId")), t["expr"], t.get("legendFormat", ""))

    for name, v in variables.items():
        where = "variable $%s" % name
        if v.get("type") == "datasource":
            if v.get("query") != "prometheus":
                problems.append("%s: not a prometheus datasource variable" % where)
            continue
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q or ""
        m = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*", q)
        if not m:
            problems.append("%s: query %r is not label_values(...)" % (where, q))
            continue
        if m.group(1):
            metrics, matchers, _, bad = promql_refs(m.group(1))
            problems.extend("%s: %s" % (where, b) for b in bad)
            for metric in metrics:
                if check_metric(where, metric):
                    check_label(where, metric, m.group(2))
            for metric, label, _, _ in matchers:
                check_label(where, metric, label)
        elif not any(m.group(2) in labels for labels in series.values()):
            problems.append("%s: no metric has label %r" % (where, m.group(2)))
    return problems, used


# ---------------------------------------------------------------- the test

class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dash = json.load(f)
        cls.pg = PgCluster()
        cube_table(cls.pg, "items", 3000, "items_v")
        cls.pg.psql("ANALYZE items")
        cls.r1 = cls.pg.replica()
        rnd = random.Random(5)
        evals = eval_file(["(%f, %f, %f)" % (rnd.random(), rnd.random(), rnd.random()) for _ in range(15)])
        cls.admin_port = free_port()
        index = {"name": "items", "database": "postgres", "table": "public.items", "index": "items_v",
                 "user": "postgres", "password": SUPERPW, "eval_file": evals,
                 "eval_query": "SELECT id FROM public.items ORDER BY v <-> $1::cube LIMIT $2",
                 "route": "replica", "latency_tolerance": 10, "latency_budget_ms": 250,
                 "watch_seconds": 0.5, "retention_seconds": 0.5, "drift_check_seconds": 1}
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 4, "user": "postgres", "password": SUPERPW},
        ], extra={
            "backends": {
                "primary": {"host": "127.0.0.1", "port": cls.pg.port},
                "r1": {"host": "127.0.0.1", "port": cls.r1.port, "role": "replica", "max_lag_bytes": 1048576,
                       "max_lag_seconds": 30},
            },
            "health_check": {"user": "postgres", "password": SUPERPW, "interval": 0.2, "timeout": 2},
            "admin": {"port": cls.admin_port, "token": TOKEN},
            "managed_indexes": [index],
        })
        try:
            cls.exercise()
        except Exception:
            cls.vg.stop()
            raise

    @classmethod
    def exercise(cls):
        def wait(what, pred, timeout=20):
            return wait_for(pred, timeout, what, lambda: cls.vg.log()[-3000:], pause=0.1)

        wait("r1 in rotation", lambda: 'vecgate_backend_in_rotation{backend="r1",role="replica"} 1' in cls.scrape())
        dsn = cls.vg.dsn(db="postgres", user="postgres", password="")
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
            for _ in range(20):
                assert c.execute(VREAD, (random.random(),)).fetchall()
        env = dict(os.environ, VECGATE_TOKEN=TOKEN)
        r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % cls.admin_port, "rebuild", "start", "items",
                            "--until-done"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr + cls.vg.log()[-3000:]
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
            for _ in range(20):
                assert c.execute(VREAD, (random.random(),)).fetchall()
            try:  # an ErrorResponse, so vecgate_client_errors_total has a series
                c.execute("SELECT 1/0")
            except psycopg.errors.DivisionByZero:
                pass
        wait("drift series", lambda: all(m + '{index="items"}' in cls.scrape()
                                         for m in ("vecgate_drift_recall", "vecgate_drift_baseline")))
        cls.text = cls.scrape()

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    @classmethod
    def scrape(cls):
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % cls.admin_port,
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def test_scrape_has_every_family(self):
        series, types = parse_scrape(self.text)
        self.assertEqual(types["vecgate_vector_query_seconds"], "histogram")
        self.assertGreater(float(re.search(r'vecgate_vector_query_seconds_count\{index="items"\} (\S+)',
                                           self.text).group(1)), 30)
        self.assertEqual(series["vecgate_recall"]["which"], {"baseline", "candidate"})
        self.assertIn("22012", series["vecgate_client_errors_total"]["sqlstate"])
        self.assertIn('vecgate_rebuild_state{index="items",state="done"} 1', self.text)
        self.assertIn("vecgate_swap_lock_milliseconds", series)

    def test_dashboard_queries_only_exported_series(self):
        problems, used = check_dashboard(self.dash, self.text)
        self.assertEqual(problems, [])
        self.assertEqual(REQUIRED - used, set())
        self.assertEqual(self.dash["schemaVersion"], 38)
        self.assertEqual([p["title"] for p in self.dash["panels"] if p["type"] == "row"],
                         ["Rebuilds", "Routing", "Latency", "Backends", "Errors", "Pools"])
        # every query panel uses the datasource variable (importable as is, and provisioned)
        for p in panels_of(self.dash):
            if p["type"] != "row":
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"}, p["title"])
                for t in p["targets"]:
                    self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])

    def test_parser(self):
        metrics, matchers, grouping, problems = promql_refs(
            'histogram_quantile(0.95, sum by (le, index) (rate(vecgate_vector_query_seconds_bucket'
            '{index=~"$index"}[5m])))')
        self.assertEqual((metrics, grouping, problems), (["vecgate_vector_query_seconds_bucket"], {"le", "index"}, []))
        self.assertEqual(matchers, [("vecgate_vector_query_seconds_bucket", "index", "=~", "$index")])
        metrics, _, grouping, _ = promql_refs(
            "sum by (database) (rate(a_total[$__rate_interval])) / on (database) sum(b_total) by (database) > 0")
        self.assertEqual((metrics, grouping), (["a_total", "b_total"], {"database"}))

    def test_checker_reports_what_vecgate_does_not_export(self):
        bad = copy.deepcopy(self.dash)
        target = dict(self.dash["panels"][1]["targets"][0])
        bogus = [
            ('sum by (index) (rate(vecgate_bogus_total{index=~"$index"}[5m]))', "{{index}}"),
            ('histogram_quantile(0.9, sum by (le, index) (rate(vecgate_vector_query_seconds{index=~"$index"}[5m])))', ""),
            ('sum by (nosuchlabel) (vecgate_requests_total)', ""),
            ('vecgate_recall{index=~"$index", which="nosuchvalue"}', ""),
            ('vecgate_clients{pool="x"}', ""),
            ('sum(vecgate_server_connections)', "{{state}} {{colour}}"),
            ('max by (index) (vecgate_drift_alert)', ""),
        ]
        bad["panels"].append({"type": "timeseries", "title": "bogus", "id": 999, "datasource": target["datasource"],
                              "gridPos": {"h": 8, "w": 24, "x": 0, "y": 99},
                              "targets": [dict(target, refId=chr(65 + i), expr=e, legendFormat=lf)
                                          for i, (e, lf) in enumerate(bogus)]})
        bad["templating"]["list"].append({"name": "pool", "type": "query", "query": "label_values(vecgate_clients, pool)"})
        problems, _ = check_dashboard(bad, self.text)
        report = "\n".join(problems)
        for expected in ("'bogus' A: metric vecgate_bogus_total is not exported",
                         "'bogus' B: metric vecgate_vector_query_seconds is not exported (a histogram",
                         "'bogus' C: metric vecgate_requests_total has no label 'nosuchlabel'",
                         "'bogus' D: no vecgate_recall{which='nosuchvalue'}",
                         "'bogus' E: metric vecgate_clients has no label 'pool'",
                         "'bogus' F: metric vecgate_server_connections has no label 'colour'",
                         "'bogus' G: vecgate_drift_alert is per index but not filtered",
                         "variable $pool: metric vecgate_clients has no label 'pool'"):
            self.assertIn(expected, report)
        self.assertTrue(all("bogus" in p or "$pool" in p for p in problems), report)


if __name__ == "__main__":
    unittest.main(verbosity=2)
