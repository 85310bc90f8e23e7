#!/usr/bin/env python3
"""Offline checks of the monitoring stack (called by tools/check_stack.sh).

  check_stack.py dashboards   structure of every dashboard, provisioning, every query parses
  check_stack.py metrics      every metric a rule or dashboard uses is emitted or recorded
  check_stack.py alerts       the issue's alert list, annotations, runbook sections
  check_stack.py compose      what the compose file must do beyond the schema
  check_stack.py schema       the compose file against the compose-spec JSON schema
  check_stack.py logs         the logs and traces profiles: Loki, Alloy, Jaeger, their data sources
  check_stack.py names FILE   the metric names emitted, from the golden files (one per line)

The compose-spec schema (tools/check_stack_compose_spec.json, Apache-2.0, see
tools/check_stack_compose_spec.LICENSE) is the copy that PyPI check-jsonschema 0.39.0 vendors
(builtin schema vendor.compose-spec); it is checked in so that validation needs only Debian's
python3-jsonschema, offline.

Each check prints what it found and exits 1 with the reasons when something is wrong.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

import check_stack_logs

ROOT = os.environ.get("CHECK_STACK_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTERS = ["host-exporter", "nvidia-exporter", "rocm-exporter", "llm-exporter"]

# The alerts issue 6 asks for, by name: the seeds' and the additions.
REQUIRED_ALERTS = [
    "HighCPUUsage", "HighMemoryUsage", "HighGPUUsage", "LowDiskSpace", "DiskSpaceCritical",
    "HighErrorRate", "SlowResponseTime", "HighLatency", "HighAIInferenceFailureRate",
    "NoAvailableSlots", "GPUMemoryHigh", "ServiceDown", "OllamaDown", "AIServiceDown",
    "HighQueueDepth", "SLOBurnRateHigh",
    # additions: exporter/collector down, GPU too hot, XID, fill prediction, stuck loading
    "ExporterDown", "ExporterCollectorFailed", "GPUTooHot", "GPUXIDError",
    "FilesystemPredictedFull", "ModelServerStuckLoading",
]
# The severities the seeds give each of their alerts (000-004). Where the seeds give one alert
# different severities, ours is a warning/critical pair under that name; where they agree (even
# on different thresholds, as SlowResponseTime and HighLatency), one rule of that severity: a
# critical no seed asks for would page on normal use.
SEED_SEVERITIES = {
    "HighCPUUsage": {"warning", "critical"},         # 000 warning, 004 critical
    "HighMemoryUsage": {"warning", "critical"},      # 000, 002 warning; 004 critical
    "HighGPUUsage": {"info"},                        # 000
    "LowDiskSpace": {"warning"},                     # 000
    "DiskSpaceCritical": {"critical"},               # 004
    "HighErrorRate": {"warning", "critical"},        # 002, 003 warning; 000, 001, 004 critical
    "SlowResponseTime": {"warning"},                 # 000, 004
    "HighLatency": {"warning"},                      # 001, 002, 003
    "HighAIInferenceFailureRate": {"critical"},      # 000
    "NoAvailableSlots": {"warning"},                 # 001
    "GPUMemoryHigh": {"critical"},                   # 001
    "ServiceDown": {"critical"},                     # 001
    "OllamaDown": {"critical"},                      # 002
    "AIServiceDown": {"critical"},                   # 004
    "HighQueueDepth": {"warning"},                   # 001
    "SLOBurnRateHigh": {"critical"},                 # 001
}
# The recording rules the seeds' series need, and issue 15's energy and cost per token series
# (prometheus/rules/energy.yml) with its settings (energy_settings.yml).
REQUIRED_RECORDS = [
    "system_cpu_usage_percent", "system_memory_usage_percent", "system_memory_available_gb",
    "system_gpu_usage_percent", "system_vram_usage_percent", "system_vram_used_gb",
    "system_disk_usage_percent",
    "instance:llm_joules_per_generated_token:rate5m", "instance:llm_generated_tokens_per_kwh:rate5m",
    "instance:llm_energy_cost_per_million_tokens:rate5m",
    "instance_model:llm_joules_per_generated_token:rate5m", "instance_model:llm_generated_tokens_per_kwh:rate5m",
    "instance_model:llm_energy_cost_per_million_tokens:rate5m",
    "llm_energy_price_per_kwh", "llm_energy_idle_power_watts",
]
# Issue 15's dashboard row: its title, the dashboard that holds it, and the series its panels
# must query (the three per-token figures per host and per model, prefill/decode, the power of
# each device, the counted power and energy today).
ENERGY_ROW = ("Energy", "LLM Inference Service", [
    "instance:llm_joules_per_generated_token:rate5m", "instance:llm_generated_tokens_per_kwh:rate5m",
    "instance:llm_energy_cost_per_million_tokens:rate5m",
    "instance_model:llm_joules_per_generated_token:rate5m", "instance_model:llm_generated_tokens_per_kwh:rate5m",
    "instance_model:llm_energy_cost_per_million_tokens:rate5m", "instance_model:llm_inference_power_watts:rate5m",
    "instance_upstream_model:llm_joules_per_prompt_token:rate5m",
    "instance_upstream_model:llm_joules_per_decoded_token:rate5m",
    "gpu_power_watts", "node_rapl_package_joules_total", "instance:llm_power_watts:rate5m",
])
# The seed dashboards and every panel title they list (grafana/dashboards/<uid>.json).
SEED_DASHBOARDS = {
    "Local AI Service Dashboard": ["Request Rate", "Response Time (p95)", "AI Inference Duration",
                                   "System Resources", "VRAM Usage", "Error Rate"],
    "LLM Inference Service": ["Request Rate", "Request Duration (p50, p95, p99)", "Tokens per Second",
                              "Active Slots", "Error Rate", "GPU Utilization", "GPU Memory Usage"],
    "System Resources": ["CPU Usage", "Memory Usage", "Disk Usage"],
    "AI Services Monitoring": ["AI Request Rate", "AI Response Time", "AI Error Rate"],
}
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "barchart", "piechart",
               "heatmap", "histogram", "text", "row", "state-timeline", "status-history", "logs"}
# Series Prometheus itself adds to every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                        "scrape_samples_post_metric_relabeling", "scrape_series_added"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2"}

errors = []


def fail(msg):
    errors.append(msg)


def finish(what):
    if errors:
        print(f"FAIL {what}:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok   {what}")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_files():
    """The rule files prometheus.yml loads (relative to it), in its order."""
    cfg = load_yaml(os.path.join(ROOT, "prometheus/prometheus.yml"))
    return [os.path.join(ROOT, "prometheus", n) for n in cfg.get("rule_files") or []]


def rule_test_files():
    return sorted(glob.glob(os.path.join(ROOT, "prometheus/tests/*.yml")))


def rules():
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def dashboards():
    for path in sorted(glob.glob(os.path.join(ROOT, "grafana/dashboards/*.json"))):
        with open(path, encoding="utf-8") as f:
            yield path, json.load(f)


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
                "__interval_ms": "60000"}


def substitute(expr, declared):
    """Grafana variables to values PromQL accepts: ranges to durations, others to a regex."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_VARS:
            return GRAFANA_VARS[name]
        return ".+" if name in declared else m.group(0)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(__\w+|[A-Za-z_]\w*)", repl, expr)


def metric_names(expr):
    """Metric names an expression selects, by a small PromQL tokenizer."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)                                            # matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                                           # ranges
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?=\s*(\(?))", s):
        word, paren = m.group(1), m.group(2)
        if paren or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def unfiltered_selectors(expr, matcher='instance=~"$instance"'):
    """The metric selectors of a query that do not carry `matcher` in their own braces."""
    same_len = lambda m: " " * len(m.group(0))  # masks keep every position of expr
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', expr)
    s = re.sub(r"\{[^}]*\}", lambda m: "{" + " " * (len(m.group(0)) - 2) + "}", s)
    s = re.sub(r"\[[^\]]*\]", same_len, s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", same_len, s)
    s = re.sub(r"\boffset\s+-?\w+", same_len, s)
    bad = []
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*(\(?)", s):
        word, paren = m.group(1), m.group(2)
        if paren or word.lower() in KEYWORDS:
            continue
        rest = s[m.end():]
        if rest.startswith("{"):
            block = expr[m.end():m.end() + rest.index("}") + 1]
            if matcher in block:
                continue
        bad.append(word)
    return bad


def golden_names():
    """Sample names in the exporters' checked-in golden outputs, read now (they still change)."""
    names = {}
    for exporter in EXPORTERS:
        for path in glob.glob(os.path.join(ROOT, exporter, "tests", "**", "*.prom"), recursive=True):
            # The textfile collector's fixtures are inputs (some deliberately broken: a directory
            # named x.prom, bytes that are not UTF-8), not outputs.
            if not os.path.isfile(path) or f"{os.sep}textfile{os.sep}" in path:
                continue
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    name = re.match(r"[A-Za-z_:][\w:]*", line)
                    if name:
                        names.setdefault(name.group(0), set()).add(os.path.relpath(path, ROOT))
    return names


def extra_names():
    """tools/check_stack_extra_metrics.txt: names the golden files cannot show, with where from."""
    out = {}
    with open(os.path.join(ROOT, "tools/check_stack_extra_metrics.txt"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else None, n)
    return out


# The crates an exporter's binary is built from, beside common (llm-exporter's proxy is llm-proxy).
LIBRARY_CRATES = {"llm-exporter": ["llm-proxy"]}


def source_has(exporter, literal):
    crates = [exporter, "common"] + LIBRARY_CRATES.get(exporter, [])
    for path in (p for c in crates for p in glob.glob(os.path.join(ROOT, c, "src", "**", "*.rs"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            if f'"{literal}"' in f.read():
                return True
    return False


def promtool_parse(exprs, what):
    """Every expression through promtool check rules, as recording rules in a temp file."""
    groups = [{"name": "parse", "rules": [{"record": f"parse_check_{i}", "expr": e} for i, e in enumerate(exprs)]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f)
        path = f.name
    try:
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{what}: promtool does not parse every query:\n{r.stdout}{r.stderr}")
    finally:
        os.unlink(path)


# --------------------------------------------------------------------------------------------

def check_dashboards():
    ds = load_yaml(os.path.join(ROOT, "grafana/provisioning/datasources/datasources.yml"))
    ds_uids = [d["uid"] for d in ds["datasources"]]
    if len(set(ds_uids)) != len(ds_uids):
        fail(f"datasource uids not unique: {ds_uids}")
    if not {"prometheus", "alertmanager"} <= set(ds_uids):
        fail("datasources must provision uids 'prometheus' and 'alertmanager'")
    for d in ds["datasources"]:
        if d["type"] == "prometheus" and d.get("jsonData", {}).get("alertmanagerUid") not in (None, *ds_uids):
            fail(f"datasource {d['name']}: alertmanagerUid names no datasource")
    prov = load_yaml(os.path.join(ROOT, "grafana/provisioning/dashboards/dashboards.yml"))
    paths = [p["options"]["path"] for p in prov["providers"]]
    compose = load_yaml(os.path.join(ROOT, "compose/compose.yaml"))
    mounts = compose["services"]["grafana"]["volumes"]
    for p in paths:
        if not any(m.split(":")[0] == "../grafana/dashboards" and m.split(":")[1] == p for m in mounts):
            fail(f"dashboard provider path {p} is not where compose mounts grafana/dashboards")

    uids, titles, exprs, count, logql_count = {}, {}, [], 0, 0
    for path, dash in dashboards():
        rel = os.path.relpath(path, ROOT)
        count += 1
        uid, title = dash.get("uid"), dash.get("title")
        if not uid or len(uid) > 40:
            fail(f"{rel}: uid missing or longer than 40")
        if uid in uids:
            fail(f"{rel}: uid {uid} also in {uids[uid]}")
        uids[uid] = rel
        if not title or title in titles:
            fail(f"{rel}: title missing or repeated ({title})")
        titles[title] = dash
        if not isinstance(dash.get("schemaVersion"), int):
            fail(f"{rel}: no schemaVersion")
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        if check_stack_logs.is_loki_dashboard(dash):
            # Logs (issue 18): LogQL on $loki, checked by check_stack_logs; the grid here.
            loki_panels = list(panels_of(dash))
            logql_count += check_stack_logs.check_loki_dashboard(rel, dash, loki_panels, ds_uids, fail)
            check_grid(rel, loki_panels)
            continue
        dsv = variables.get("datasource")
        if not dsv or dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
            fail(f"{rel}: needs a $datasource variable of type datasource (prometheus)")
        if "instance" not in variables:
            fail(f"{rel}: needs an $instance variable")
        for v in variables.values():
            if v.get("type") == "query":
                check_ds_ref(rel, f"variable {v['name']}", v.get("datasource"), ds_uids, variables)
                exprs.append(variable_query(v))
        ids = set()
        cells = []
        for p in panels_of(dash):
            where = f"{rel}: panel {p.get('id')} '{p.get('title')}'"
            if p.get("id") in ids or not isinstance(p.get("id"), int):
                fail(f"{where}: id missing or not unique")
            ids.add(p.get("id"))
            if p.get("type") not in PANEL_TYPES:
                fail(f"{where}: panel type {p.get('type')!r} is not a current Grafana panel")
            g = p.get("gridPos", {})
            if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["y"] < 0 \
                    or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
                fail(f"{where}: gridPos {g} is not inside the 24-column grid")
            else:
                cells.append((where, g))
            if p.get("type") not in ("row", "text"):
                if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                    fail(f"{where}: no unit")
                if not p.get("targets"):
                    fail(f"{where}: no queries")
            check_ds_ref(rel, where, p.get("datasource"), ds_uids, variables)
            refs = set()
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                if not expr.strip():
                    fail(f"{where}: a query has no expr")
                    continue
                if t.get("refId") in refs:
                    fail(f"{where}: refId {t.get('refId')} repeated")
                refs.add(t.get("refId"))
                check_ds_ref(rel, where, t.get("datasource"), ds_uids, variables)
                for name in re.findall(r"\$\{?(\w+)", expr):
                    if not name.startswith("__") and not name.isdigit() and name not in variables:
                        fail(f"{where}: ${name} is not declared")
                for fn, rng in re.findall(r"\b(rate|irate)\s*\([^\[]*\[([^\]]+)\]", expr):
                    if rng != "$__rate_interval":
                        fail(f"{where}: {fn}() over [{rng}], not [$__rate_interval]")
                # Every selector, recorded series (instance:...) included, filters itself.
                for sel in unfiltered_selectors(expr):
                    fail(f'{where}: {sel} is not filtered with instance=~"$instance": {expr}')
                exprs.append(substitute(expr, variables))
        for i, (w1, a) in enumerate(cells):
            for w2, b in cells[i + 1:]:
                if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and \
                        a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]:
                    fail(f"{w1} overlaps {w2}")
    check_energy_row(titles)
    check_slo_titles(titles)
    for title, wanted in SEED_DASHBOARDS.items():
        if title not in titles:
            fail(f"seed dashboard '{title}' missing")
            continue
        have = {p.get("title") for p in panels_of(titles[title])}
        for panel in wanted:
            if panel not in have:
                fail(f"dashboard '{title}' lacks the seed's panel '{panel}'")
    promtool_parse(exprs, "dashboards")
    return count, len(exprs), logql_count


def check_grid(rel, panels):
    """Ids unique, current panel types, units, gridPos inside the 24 columns, no overlaps."""
    ids, cells = set(), []
    for p in panels:
        where = f"{rel}: panel {p.get('id')} '{p.get('title')}'"
        if p.get("id") in ids or not isinstance(p.get("id"), int):
            fail(f"{where}: id missing or not unique")
        ids.add(p.get("id"))
        if p.get("type") not in PANEL_TYPES:
            fail(f"{where}: panel type {p.get('type')!r} is not a current Grafana panel")
        if p.get("type") not in ("row", "text", "logs") and not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            fail(f"{where}: no unit")
        if p.get("type") != "row" and not p.get("targets"):
            fail(f"{where}: no queries")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["y"] < 0 \
                or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
            fail(f"{where}: gridPos {g} is not inside the 24-column grid")
        else:
            cells.append((where, g))
    for i, (w1, a) in enumerate(cells):
        for w2, b in cells[i + 1:]:
            if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and \
                    a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]:
                fail(f"{w1} overlaps {w2}")


def check_slo_titles(titles):
    """Panel titles (of the dashboards in `titles`) that name an objective ("objective 99.9 %") name the one in rules/slo.yml."""
    objectives = {}
    for group in load_yaml(os.path.join(ROOT, "prometheus/rules/slo.yml"))["groups"]:
        for r in group["rules"]:
            if r.get("record") == "slo:objective:ratio":
                objectives[r["labels"]["slo"]] = float(re.fullmatch(r"vector\(([\d.]+)\)", r["expr"]).group(1))
    named = 0
    for title in (p.get("title", "") for dash in titles.values() for p in panels_of(dash)):
        m = re.search(r"objective ([\d.]+) %", title)
        if not m:
            continue
        named += 1
        slo = "latency" if "first token" in title.lower() else "availability"
        if abs(float(m.group(1)) / 100 - objectives.get(slo, -1)) > 1e-9:
            fail(f"panel '{title}': the {slo} objective in prometheus/rules/slo.yml is {objectives.get(slo)}")
    if named < 2:
        fail("the SLO row's titles no longer name the objectives")


def check_energy_row(titles):
    """The Energy row: on its dashboard, and its panels (up to the next row) query every series
    ENERGY_ROW names; the "today" panel covers today (timeFrom now/d)."""
    row_title, dash_title, wanted = ENERGY_ROW
    dash = titles.get(dash_title)
    if not dash:
        fail(f"dashboard '{dash_title}' (Energy row) missing")
        return
    members, inside = [], False
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            inside = p.get("title") == row_title
            if inside:
                members += p.get("panels") or []  # a collapsed row holds its panels
            continue
        if inside:
            members.append(p)
    if not members:
        fail(f"dashboard '{dash_title}' has no row '{row_title}' with panels")
        return
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    used = set()
    for p in members:
        for t in p.get("targets", []):
            used |= metric_names(substitute(t.get("expr", ""), variables))
    for name in wanted:
        if name not in used:
            fail(f"dashboard '{dash_title}', row '{row_title}': no panel queries {name}")
    today = [p for p in members if "today" in p.get("title", "").lower()]
    if not today or any(p.get("timeFrom") != "now/d" for p in today):
        fail(f"dashboard '{dash_title}', row '{row_title}': needs an energy today panel with timeFrom now/d")


def variable_query(v):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
    return m.group(1) if m else (q or "")


def check_ds_ref(rel, where, ref, ds_uids, variables):
    if ref is None:
        return
    uid = ref.get("uid") if isinstance(ref, dict) else ref
    m = re.fullmatch(r"\$\{?(\w+)\}?", uid or "")
    if m:
        if m.group(1) not in variables or variables[m.group(1)].get("type") != "datasource":
            fail(f"{where}: datasource {uid} is not a declared datasource variable")
    elif uid not in ds_uids:
        fail(f"{where}: datasource uid {uid!r} is not provisioned ({ds_uids})")


def used_names():
    """(name, where) for every metric a rule or a dashboard query selects."""
    out = []
    for path, rule in rules():
        for n in metric_names(rule["expr"]):
            out.append((n, f"{os.path.relpath(path, ROOT)}: {rule.get('alert') or rule.get('record')}"))
    for path, dash in dashboards():
        if check_stack_logs.is_loki_dashboard(dash):
            continue  # LogQL: no metric names (check_stack_logs checks its queries)
        variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                for n in metric_names(variable_query(v)):
                    out.append((n, f"{os.path.relpath(path, ROOT)}: variable {v['name']}"))
        for p in panels_of(dash):
            for t in p.get("targets", []):
                for n in metric_names(substitute(t.get("expr", ""), variables)):
                    out.append((n, f"{os.path.relpath(path, ROOT)}: '{p.get('title')}'"))
    return out


def emitted_names(live_names=None):
    golden = golden_names()
    if not golden:
        fail("no golden outputs found under */tests/")
    known = {n: "golden: " + sorted(src)[0] for n, src in golden.items()}
    for name, (exporter, literal, line) in extra_names().items():
        where = f"tools/check_stack_extra_metrics.txt:{line}"
        if name in golden:
            fail(f"{where}: {name} is now in the golden outputs ({sorted(golden[name])[0]}); remove the entry")
        if exporter not in EXPORTERS and exporter != "all":
            fail(f"{where}: unknown exporter {exporter}")
        if literal and literal != "-":
            exps = EXPORTERS if exporter == "all" else [exporter]
            if not any(source_has(e, literal) for e in exps):
                fail(f'{where}: "{literal}" is not in the source of {exporter} (or the crates it is built from)')
        if live_names is not None and name not in live_names:
            fail(f"{where}: {name} was not scraped from the live exporters")
        known[name] = f"extra ({exporter})"
    recorded = {r["record"] for _, r in rules() if "record" in r}
    for n in recorded:
        known[n] = "recording rule"
    for n in PROMETHEUS_SYNTHETIC:
        known[n] = "Prometheus"
    return known


def check_metrics(live_file=None):
    live = None
    if live_file:
        with open(live_file, encoding="utf-8") as f:
            live = {l.strip() for l in f if l.strip()}
    known = emitted_names(live)
    used = used_names()
    for name, where in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in known:
            continue
        if name != base and (base + "_bucket") in known:
            continue
        fail(f"{where}: {name} is neither emitted by an exporter (golden outputs, extra list) nor recorded")
    return len({n for n, _ in used}), len(known)


def check_alerts():
    alerts = {}
    for path, rule in rules():
        if "alert" in rule:
            alerts.setdefault(rule["alert"], []).append(rule)
    with open(os.path.join(ROOT, "docs/runbooks.md"), encoding="utf-8") as f:
        runbook = f.read()
    anchors = {anchor(h) for h in re.findall(r"^#{2,3}\s+(.+?)\s*$", runbook, re.M)}
    for name in REQUIRED_ALERTS:
        if name not in alerts:
            fail(f"alert {name} is missing from prometheus/rules/alerts.yml")
    tested_fire, tested_quiet = set(), set()
    for t in (t for path in rule_test_files() for t in load_yaml(path).get("tests") or []):
        for a in t.get("alert_rule_test", []):
            (tested_fire if a.get("exp_alerts") else tested_quiet).add(a["alertname"])
            for e in a.get("exp_alerts") or []:
                sev = e.get("exp_labels", {}).get("severity")
                tested_fire.add((a["alertname"], sev))
    for name, variants in alerts.items():
        sevs = [r.get("labels", {}).get("severity") for r in variants]
        if len(set(sevs)) != len(sevs):
            fail(f"{name}: two rules with the same severity {sevs}")
        if len(variants) > 1 and set(sevs) != {"warning", "critical"}:
            fail(f"{name}: a pair must be warning + critical, not {sevs}")
        if name in SEED_SEVERITIES and set(sevs) != SEED_SEVERITIES[name]:
            fail(f"{name}: severities {sorted(sevs)}, the seeds give {sorted(SEED_SEVERITIES[name])}")
        for r in variants:
            sev = r.get("labels", {}).get("severity")
            if sev not in ("critical", "warning", "info"):
                fail(f"{name}: severity {sev!r}")
            ann = r.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    fail(f"{name} ({sev}): no {key} annotation")
            url = ann.get("runbook_url", "")
            m = re.fullmatch(r"docs/runbooks\.md#([\w-]+)", url)
            if not m or m.group(1) not in anchors:
                fail(f"{name}: runbook_url {url!r} is not a section of docs/runbooks.md")
            if (name, sev) not in tested_fire:
                fail(f"{name} ({sev}): no unit test where it fires")
        if name not in tested_quiet:
            fail(f"{name}: no unit test where it must not fire")
    records = {r["record"] for _, r in rules() if "record" in r}
    for rec in REQUIRED_RECORDS:
        if rec not in records:
            fail(f"recording rule {rec} is missing")
    tested = set()
    for path in rule_test_files():
        for t in load_yaml(path).get("tests") or []:
            for e in t.get("promql_expr_test", []):
                tested |= metric_names(e["expr"])
    for rec in records:
        if rec not in tested:
            fail(f"recording rule {rec} has no promql_expr_test")
    return len(alerts), sum(len(v) for v in alerts.values()), len(records)


def anchor(heading):
    """GitHub's heading anchor."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def check_compose():
    c = load_yaml(os.path.join(ROOT, "compose/compose.yaml"))
    s = c["services"]
    for name in ("prometheus", "alertmanager", "grafana", "host-exporter", "llm-exporter", "check-secrets"):
        if "monitoring" not in s.get(name, {}).get("profiles", []):
            fail(f"{name} must be in the monitoring profile")
    for name, prof in (("nvidia-exporter", "nvidia"), ("rocm-exporter", "rocm")):
        if s.get(name, {}).get("profiles") != [prof]:
            fail(f"{name} must come with its own profile {prof}")
    one_shots = ("check-secrets", "check-nvidia", "check-rocm")
    # Images in which no healthcheck can run, and why (docs/stack.md says how to check them).
    no_healthcheck = {"loki": "the image has no shell and no HTTP client, loki no health flag"}
    for name, svc in s.items():
        if "healthcheck" not in svc and name not in one_shots and name not in no_healthcheck:
            fail(f"{name}: no healthcheck")
        if name.endswith("-exporter"):
            if svc.get("build", {}).get("dockerfile") != "compose/Dockerfile":
                fail(f"{name}: not built from compose/Dockerfile")
    with open(os.path.join(ROOT, "compose/Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("compose/Dockerfile: the final image must run as a non-root USER")
    h = s["host-exporter"]
    if h.get("pid") != "host" or h.get("network_mode") != "host":
        fail("host-exporter: needs the host's pid and network namespaces")
    # rslave by default; setup.sh sets plain ro where / is a private mount.
    if "/:/host:${HOST_ROOT_MOUNT_OPTIONS:-ro,rslave}" not in h.get("volumes", []):
        fail("host-exporter: needs the host's / read-only at /host (/:/host:${HOST_ROOT_MOUNT_OPTIONS:-ro,rslave})")
    cmd = " ".join(h.get("command", []))
    for flag in ("--path.rootfs=/host", "--path.procfs=/host/proc", "--path.sysfs=/host/sys"):
        if flag not in cmd:
            fail(f"host-exporter: missing {flag}")
    nv = s["nvidia-exporter"]
    devs = nv.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if not any(d.get("driver") == "nvidia" for d in devs):
        fail("nvidia-exporter: needs the nvidia device reservation")
    if not {"/dev/kfd:/dev/kfd", "/dev/dri:/dev/dri"} <= set(s["rocm-exporter"].get("devices", [])):
        fail("rocm-exporter: needs /dev/kfd and /dev/dri")
    # A GPU profile on a host without the devices fails with a message saying what is missing:
    # the exporter waits for its one-shot check (compose/check-gpu.sh).
    for exporter, check, profile in (("nvidia-exporter", "check-nvidia", "nvidia"), ("rocm-exporter", "check-rocm", "rocm")):
        svc = s.get(check, {})
        if svc.get("profiles") != [profile] or "check-gpu.sh" not in " ".join(svc.get("entrypoint") or []):
            fail(f"{check}: a one-shot compose/check-gpu.sh {profile} in the {profile} profile is missing")
        cond = (s[exporter].get("depends_on") or {}).get(check, {})
        if cond.get("condition") != "service_completed_successfully":
            fail(f"{exporter}: must wait for {check} (condition: service_completed_successfully)")
    for name, mount in (("prometheus", "/prometheus"), ("grafana", "/var/lib/grafana")):
        vols = s[name].get("volumes", [])
        named = [v for v in vols if v.split(":")[1] == mount and v.split(":")[0] in (c.get("volumes") or {})]
        if not named:
            fail(f"{name}: {mount} must be a named volume")
    # No default passwords: Grafana's password only from a secret file; nothing secret inline.
    g = s["grafana"].get("environment", {})
    if "GF_SECURITY_ADMIN_PASSWORD" in g or g.get("GF_SECURITY_ADMIN_PASSWORD__FILE", "").split("/")[-1] \
            not in (s["grafana"].get("secrets") or []):
        fail("grafana: the admin password must come from a secret file (GF_SECURITY_ADMIN_PASSWORD__FILE)")
    for name, spec in (c.get("secrets") or {}).items():
        if "file" not in spec or not spec["file"].startswith("./secrets/"):
            fail(f"secret {name}: must be a file under compose/secrets/")
    # A missing secret stops the services that need it: the one-shot check-secrets sees every
    # secret as mounted, and each service with secrets waits for it to succeed.
    cs = s.get("check-secrets")
    if not cs:
        fail("compose: no one-shot check-secrets service")
    else:
        if set(cs.get("secrets") or []) != set(c.get("secrets") or {}):
            fail("check-secrets: must mount every secret of the compose file")
        if "check-secrets.sh" not in " ".join(cs.get("entrypoint") or []) + " ".join(cs.get("command") or []):
            fail("check-secrets: must run compose/check-secrets.sh")
        for name, svc in s.items():
            if svc.get("secrets") and name != "check-secrets":
                cond = (svc.get("depends_on") or {}).get("check-secrets", {}) if isinstance(svc.get("depends_on"), dict) else {}
                if cond.get("condition") != "service_completed_successfully":
                    fail(f"{name}: uses secrets but does not depend on check-secrets (condition: service_completed_successfully)")
    am = load_yaml(os.path.join(ROOT, "alertmanager/alertmanager.yml"))
    text = json.dumps(am)
    for key in ("auth_password", "service_key", "routing_key", "api_url", "credentials", "password"):
        for m in re.finditer(rf'"{key}": "([^"]*)"', text):
            fail(f"alertmanager.yml: inline secret {key}")
    for f in re.findall(r'"\w+_file": "(/run/secrets/[^"]+)"', text):
        if f.split("/")[-1] not in (s["alertmanager"].get("secrets") or []):
            fail(f"alertmanager.yml reads {f}, which compose does not mount as a secret")
    for path in glob.glob(os.path.join(ROOT, "grafana/provisioning/**/*.yml"), recursive=True):
        with open(path, encoding="utf-8") as fh:
            if re.search(r"(?i)password|secureJsonData", fh.read()):
                fail(f"{os.path.relpath(path, ROOT)}: holds a password")
    return len(s)


def check_schema():
    import jsonschema
    with open(os.path.join(ROOT, "tools/check_stack_compose_spec.json"), encoding="utf-8") as f:
        schema = json.load(f)
    doc = load_yaml(os.path.join(ROOT, "compose/compose.yaml"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    for e in cls(schema).iter_errors(doc):
        fail(f"compose/compose.yaml {'/'.join(map(str, e.absolute_path))}: {e.message}")
    return cls.__name__


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "dashboards":
        n, q, lq = check_dashboards()
        finish(f"dashboards: {n} dashboards, {q} PromQL queries parse (promtool), {lq} LogQL queries parse, structure and provisioning")
    elif what == "metrics":
        used, known = check_metrics(sys.argv[2] if len(sys.argv) > 2 else None)
        finish(f"metric names: {used} names used by rules and dashboards, all emitted or recorded ({known} known)")
    elif what == "alerts":
        a, r, rec = check_alerts()
        finish(f"alerts: {a} alerts ({r} rules) with annotations, runbook sections and fire/quiet tests; {rec} recording rules tested")
    elif what == "compose":
        n = check_compose()
        finish(f"compose: {n} services, profiles, devices, volumes, healthchecks, secrets")
    elif what == "schema":
        v = check_schema()
        finish(f"compose-spec schema ({v}): compose/compose.yaml is valid")
    elif what == "logs":
        check_stack_logs.Checker(ROOT, fail).run()
        finish("logs and traces profiles: compose, Loki, Jaeger, Alloy (parsed; sample lines through its pipelines), data sources and the trace link")
    elif what == "names":
        names = sorted(emitted_names())
        with open(sys.argv[2], "w") as f:
            f.write("\n".join(names) + "\n")
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
