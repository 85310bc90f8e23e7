#!/usr/bin/env python3
"""Offline checks of the compose profiles `logs` and `traces` (issue 18), for check_stack.py.

Loki, Alloy and Jaeger cannot run here (their images cannot be pulled; no Debian, PyPI or npm
package ships them or a checker of their configurations), so their files are checked for what
would make the stack fail or leak, as far as that can be seen without them:
- compose: the services in their profiles, images pinned to a version, memory limits, UIs on
  127.0.0.1, the config files mounted where the commands read them, Docker log rotation, and
  llm-exporter's access-log and OTLP flags wired to documented .env variables;
- Loki (compose/loki/loki.yaml): the port the others use, schema v13 on TSDB (structured
  metadata needs it), retention on with its delete store, ingestion and query limits;
- Jaeger (compose/jaeger/config.yaml): every component a pipeline names is defined, OTLP/HTTP on
  the port llm-exporter is told, storage bounded in memory, query and health ports as compose
  and Grafana use them;
- Alloy (compose/alloy/config.alloy, parsed by check_stack_alloy.py): known components only,
  every reference resolves, the Loki URL is the Loki service's, the env variables it reads are
  set, labels few (request_id and trace_id as structured metadata, never labels), every
  stage.match selector parses as LogQL, and sample lines (llm-exporter's access log, the
  exporters' logfmt and JSON lines, as common/src/log.rs writes them) each take their pipeline
  and only it, the access log's time parsing as the timestamp stage says;
- Grafana: Loki and Jaeger data sources with fixed uids at the services' URLs, the derived field
  that links an access-log line's trace_id to Jaeger (tried on sample lines), the request logs
  dashboard's LogQL (check_stack_logql.py), its data source and $host filter on every selector,
  and the seeds' log queries.
"""

import os
import re
from datetime import datetime
from urllib.parse import urlparse

import yaml

import check_stack_alloy as alloy
import check_stack_logql as logql

# A line as llm-exporter's access log writes it (issue 18), and the exporters' own log lines
# (common/src/log.rs: ts, level, msg first; logfmt, or JSON with --log.format=json).
ACCESS_LINE = ('{"time":"2026-12-07T05:10:00.123Z","request_id":"9f1c0e7a-2b6d-4f3e-8a51-0c2d7e9b4a10",'
               '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","upstream":"llama","backend":"llama.cpp",'
               '"model":"qwen3-8b","route":"/v1/chat/completions","code":200,"outcome":"success",'
               '"error_kind":null,"finish_reason":"stop","stream":true,"duration_seconds":6.234,'
               '"ttft_seconds":0.123,"queue_seconds":0.01,"prompt_tokens":12,"generated_tokens":34}')
ACCESS_LINE_UNTRACED = ACCESS_LINE.replace('"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",', "")
EXPORTER_LOGFMT = 'ts=2026-12-07T05:10:00.123Z level=warn msg="upstream poll failed" upstream=ollama error="connection refused"'
EXPORTER_JSON = '{"ts":"2026-12-07T05:10:00.123Z","level":"warn","msg":"upstream poll failed","upstream":"ollama"}'
# The fields every access-log line has (trace_id only when the request was traced).
ACCESS_FIELDS = {"time", "request_id", "upstream", "backend", "model", "route", "code", "outcome", "error_kind",
                 "finish_reason", "stream", "duration_seconds", "ttft_seconds", "queue_seconds", "prompt_tokens",
                 "generated_tokens"}
# The labels a line may carry (stream labels; everything else is parsed at query time).
ALLOWED_LABELS = {"job", "host", "service", "container", "level", "upstream", "outcome", "log_type"}
ACCESS_LABELS = {"upstream", "outcome"}
ACCESS_METADATA = {"request_id", "trace_id"}
# Alloy components this configuration may use: attributes each requires, what each exports.
COMPONENTS = {
    "loki.write": ({"endpoint"}, {"receiver"}),
    "loki.process": ({"forward_to"}, {"receiver"}),
    "loki.source.journal": ({"forward_to"}, set()),
    "loki.source.docker": ({"host", "targets", "forward_to"}, set()),
    "discovery.docker": ({"host"}, {"targets"}),
    "discovery.relabel": ({"targets"}, {"output", "rules"}),
}
STAGES = {"stage.json", "stage.logfmt", "stage.labels", "stage.structured_metadata", "stage.static_labels",
          "stage.timestamp", "stage.match", "stage.template", "stage.drop", "stage.regex", "stage.replace",
          "stage.output", "stage.label_drop", "stage.label_keep", "stage.limit"}
FUNCTIONS = {"sys.env", "constants.hostname", "string.format", "string.to_lower"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
                   "hashmod", "keepequal", "dropequal"}
# The parser's own test, run first: queries Loki accepts (forms from its documentation) must
# parse, and queries it refuses must not, or the checks below prove nothing.
LOGQL_ACCEPTED = [
    '{job="mysql"} |= "error" != "timeout" | json | duration > 10s',
    'sum by (host) (rate({job="mysql"} |= "error" | json | __error__="" [1m]))',
    'topk(10, sum(rate({region="us-east1"}[5m])) by (name))',
    'quantile_over_time(0.99, {cluster="ops"} | json | unwrap duration(latency) | __error__="" [1m]) by (method)',
    '{app="foo"} | logfmt --strict | level="error" or level="warn"',
    '{job="x"} | pattern "<ip> - <_> <status>" | status >= 500',
    '{job="x"} | regexp "(?P<method>\\w+) (?P<path>\\S+)"',
    '{job="x"} | label_format foo=bar, baz="{{.a}}" | line_format "{{.msg}}" | drop __error__, level="debug"',
    'sum(count_over_time({job="x"}[5m])) / sum(count_over_time({job="x", a=~".+"}[5m])) > bool 0.1',
    '{job="x"} |~ "a|b" or "c" | json a="b.c", d | size > 20KB',
]
LOGQL_REFUSED = [
    '{job="x"',                                          # unbalanced
    '{job=""}',                                          # every matcher matches the empty value
    '{job="x"} | jsn',                                   # unknown stage
    '{job="x"} |~ "("',                                  # bad regex
    'sum by (a) ({job="x"})',                            # aggregation of log lines
    'sum_over_time({job="x"}[5m])',                      # needs unwrap
    'count_over_time({job="x"} | json | unwrap a [5m])', # refuses unwrap
    'rate({job="x"}[5mm])',                              # bad duration
    'rate({job="x"} | json | a > "s" [5m])',             # > on a string
    '{job="x"} | regexp "(\\w+)"',                     # regexp without a named group
    'sum(rate({job="x"}[5m])) /',                        # dangling operator
]


# The seeds' (001) log queries, as panels of the request logs dashboard: title, regexes its
# queries must match.
SEED_LOG_PANELS = {
    "Failed requests (last hour)": [r'outcome="error"'],
    "Errors (last hour)": [r'level=~"error\|'],
    "Slow requests (over 5 s)": [r"\| json \| duration_seconds > 5(?![\d.])"],
    "Token usage by model": [r"^sum by \(model\) \(", r"\| unwrap generated_tokens\b"],
    "Error rate": [r'outcome="error"\}[^/]*\) / sum'],
}


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def port_of(endpoint):
    """The port of host:port, :port or a URL."""
    m = re.search(r":(\d+)(?:/|$)", endpoint or "")
    return int(m.group(1)) if m else None


class Checker:
    def __init__(self, root, fail):
        self.root = root
        self.fail = fail
        self.compose = load_yaml(os.path.join(root, "compose/compose.yaml"))
        self.services = self.compose["services"]

    def path(self, rel):
        return os.path.join(self.root, rel)

    def mounted(self, service, target):
        """The repository file compose mounts at `target` in `service` (None if none)."""
        for v in self.services.get(service, {}).get("volumes", []):
            parts = v.split(":")
            if len(parts) >= 2 and parts[1] == target and parts[0].startswith("./"):
                return os.path.normpath(os.path.join("compose", parts[0]))
        return None

    def published(self, service):
        """{container port: host address} of a service's published ports."""
        out = {}
        for p in self.services.get(service, {}).get("ports", []):
            parts = str(p).split(":")
            out[int(parts[-1])] = parts[0] if len(parts) == 3 else "0.0.0.0"
        return out

    # ---- compose ------------------------------------------------------------------------------
    def check_compose(self):
        s = self.services
        for name, profile in (("loki", "logs"), ("alloy", "logs"), ("jaeger", "traces")):
            svc = s.get(name)
            if not svc:
                self.fail(f"compose: no {name} service (profile {profile})")
                continue
            if svc.get("profiles") != [profile]:
                self.fail(f"compose: {name} must be in the {profile} profile only, not {svc.get('profiles')}")
            image = svc.get("image", "")
            if not re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image):
                self.fail(f"compose: {name}'s image {image!r} is not pinned to a version")
            if not svc.get("mem_limit"):
                self.fail(f"compose: {name} has no mem_limit (the profile must stay bounded on a small host)")
            for port, addr in self.published(name).items():
                if addr != "127.0.0.1":
                    self.fail(f"compose: {name} publishes {port} on {addr}, not on 127.0.0.1")
            if (svc.get("logging") or {}).get("options", {}).get("max-size") is None:
                self.fail(f"compose: {name}'s Docker log is not rotated (logging options max-size)")
        # llm-exporter: the access log (stdout by default, off when empty) and the OTLP endpoint
        # (empty by default), from .env variables; its stdout rotated by Docker.
        llm = s.get("llm-exporter", {})
        cmd = llm.get("command") or []
        cmd = cmd if isinstance(cmd, list) else cmd.split()
        want = {"--proxy.access-log": ("LLM_ACCESS_LOG", "stdout"), "--proxy.otlp-endpoint": ("LLM_OTLP_ENDPOINT", "")}
        for flag, (var, default) in want.items():
            arg = next((a for a in cmd if a.startswith(flag + "=")), None)
            m = re.fullmatch(re.escape(flag) + r"=\$\{(\w+)(:?-)([^}]*)\}", arg or "")
            if not m or m.group(1) != var or m.group(3) != default:
                self.fail(f"llm-exporter: {flag} must come from ${{{var}}} with default {default!r}, got {arg!r}")
        if (llm.get("logging") or {}).get("options", {}).get("max-size") is None:
            self.fail("llm-exporter: its stdout (the access log) is not rotated (logging options max-size)")
        with open(self.path("compose/env.example"), encoding="utf-8") as f:
            env = f.read()
        for var in ("LLM_ACCESS_LOG", "LLM_OTLP_ENDPOINT"):
            if not re.search(rf"^#?\s*{var}=", env, re.M):
                self.fail(f"compose/env.example does not document {var}")
        return env

    # ---- Loki -----------------------------------------------------------------------------------
    def check_loki(self):
        svc = self.services.get("loki", {})
        cmd = " ".join(svc.get("command") or [])
        m = re.search(r"-config\.file=(\S+)", cmd)
        rel = self.mounted("loki", m.group(1)) if m else None
        if not rel or not os.path.isfile(self.path(rel)):
            self.fail(f"loki: -config.file is not a file compose mounts from the repository ({cmd!r})")
            return None
        cfg = load_yaml(self.path(rel))
        port = (cfg.get("server") or {}).get("http_listen_port")
        if port != 3100 and port not in self.published("loki"):
            self.fail(f"loki: http_listen_port {port} is not the port compose publishes")
        if cfg.get("auth_enabled") is not False:
            self.fail("loki: auth_enabled must be false (one tenant; Alloy and Grafana send no tenant)")
        schemas = (cfg.get("schema_config") or {}).get("configs") or []
        if not schemas or schemas[-1].get("schema") != "v13" or schemas[-1].get("store") != "tsdb":
            self.fail("loki: the newest schema must be v13 on tsdb (structured metadata needs it)")
        data_mounts = [v.split(":")[1] for v in svc.get("volumes", []) if v.split(":")[0] in (self.compose.get("volumes") or {})]
        prefix = (cfg.get("common") or {}).get("path_prefix", "")
        if not any(prefix == d or prefix.startswith(d.rstrip("/") + "/") for d in data_mounts):
            self.fail(f"loki: path_prefix {prefix!r} is not on a named volume ({data_mounts})")
        comp = cfg.get("compactor") or {}
        limits = cfg.get("limits_config") or {}
        if comp.get("retention_enabled") is not True or not comp.get("delete_request_store"):
            self.fail("loki: compactor retention_enabled with a delete_request_store is needed for retention")
        hours = parse_hours(limits.get("retention_period"))
        if hours is None or not 0 < hours <= 31 * 24:
            self.fail(f"loki: retention_period {limits.get('retention_period')!r} must be set, at most 31 days")
        for key in ("ingestion_rate_mb", "ingestion_burst_size_mb", "per_stream_rate_limit", "max_line_size",
                    "max_global_streams_per_user", "max_entries_limit_per_query", "max_query_series"):
            if not limits.get(key):
                self.fail(f"loki: limits_config.{key} must be set (bounded on a small host)")
        if limits.get("allow_structured_metadata") is False:
            self.fail("loki: structured metadata is off, but Alloy sends request_id and trace_id as such")
        return port

    # ---- Jaeger ---------------------------------------------------------------------------------
    def check_jaeger(self):
        svc = self.services.get("jaeger", {})
        cmd = " ".join(svc.get("command") or [])
        m = re.search(r"--config=(\S+)", cmd)
        rel = self.mounted("jaeger", m.group(1)) if m else None
        if not rel or not os.path.isfile(self.path(rel)):
            self.fail(f"jaeger: --config is not a file compose mounts from the repository ({cmd!r})")
            return None, None
        cfg = load_yaml(self.path(rel))
        service = cfg.get("service") or {}
        for ext in service.get("extensions") or []:
            if ext not in (cfg.get("extensions") or {}):
                self.fail(f"jaeger: extension {ext} is listed but not configured")
        traces = (service.get("pipelines") or {}).get("traces")
        if not traces:
            self.fail("jaeger: no traces pipeline")
            return None, None
        for kind in ("receivers", "processors", "exporters"):
            for name in traces.get(kind) or []:
                if name not in (cfg.get(kind) or {}):
                    self.fail(f"jaeger: the traces pipeline names {kind[:-1]} {name}, which is not configured")
        otlp_http = (((cfg.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http")
        otlp_port = port_of((otlp_http or {}).get("endpoint"))
        if "otlp" not in (traces.get("receivers") or []) or otlp_port != 4318:
            self.fail(f"jaeger: the traces pipeline must receive OTLP/HTTP on 4318 (got {otlp_port})")
        exts = cfg.get("extensions") or {}
        backends = ((exts.get("jaeger_storage") or {}).get("backends")) or {}
        for name, backend in backends.items():
            mem = (backend or {}).get("memory")
            if mem is not None and not 0 < int(mem.get("max_traces") or 0) <= 100000:
                self.fail(f"jaeger: memory backend {name} needs max_traces, at most 100000 (bounded memory)")
            if mem is None:
                self.fail(f"jaeger: backend {name} is not the bounded in-memory store the docs describe")
        used = [((exts.get("jaeger_query") or {}).get("storage") or {}).get("traces")]
        used += [e.get("trace_storage") for e in (cfg.get("exporters") or {}).values() if isinstance(e, dict) and "trace_storage" in e]
        for b in used:
            if b not in backends:
                self.fail(f"jaeger: storage {b!r} is not a backend of jaeger_storage ({sorted(backends)})")
        query_port = port_of(((exts.get("jaeger_query") or {}).get("http") or {}).get("endpoint"))
        if query_port not in self.published("jaeger"):
            self.fail(f"jaeger: the query/UI port {query_port} is not published by compose")
        health_port = port_of(((exts.get("healthcheckv2") or {}).get("http") or {}).get("endpoint"))
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        if not health_port or f":{health_port}/" not in test:
            self.fail(f"jaeger: the compose healthcheck ({test!r}) does not ask healthcheckv2's port {health_port}")
        return otlp_port, query_port

    # ---- Alloy ----------------------------------------------------------------------------------
    def check_alloy(self, loki_port):
        svc = self.services.get("alloy", {})
        cmd = svc.get("command") or []
        config = next((a for a in cmd if a.endswith(".alloy")), None)
        rel = self.mounted("alloy", config) if config else None
        if not rel or not os.path.isfile(self.path(rel)):
            self.fail(f"alloy: the config file in its command is not mounted from the repository ({cmd})")
            return
        # Its storage (read positions) on a volume of its own. The image's /var/lib/alloy is
        # alloy:alloy mode 770 and a fresh volume mounted there copies that: root without
        # capabilities (cap_drop ALL) could not enter it, and Alloy would not start.
        storage = next((a.split("=", 1)[1] for a in cmd if a.startswith("--storage.path=")), None)
        volumes = [str(v).split(":") for v in svc.get("volumes") or []]
        named = {v[1] for v in volumes if len(v) >= 2 and not v[0].startswith((".", "/"))}
        if storage not in named:
            self.fail(f"alloy: --storage.path {storage!r} is not a named volume's mount point ({sorted(named)})")
        elif storage.startswith("/var/lib/alloy") and "ALL" in (svc.get("cap_drop") or []):
            self.fail(f"alloy: --storage.path {storage!r} is in the image's alloy-owned directory, which root without capabilities cannot write")
        with open(self.path(rel), encoding="utf-8") as f:
            text = f.read()
        try:
            blocks = alloy.parse(text)
        except alloy.AlloyError as e:
            self.fail(f"{rel}: {e}")
            return
        declared = {}
        for b in blocks:
            if b.name not in COMPONENTS:
                self.fail(f"{rel}:{b.line}: unknown component {b.name}")
                continue
            if not b.label:
                self.fail(f"{rel}:{b.line}: {b.name} needs a label")
            key = f"{b.name}.{b.label}"
            if key in declared:
                self.fail(f"{rel}:{b.line}: {key} declared twice")
            declared[key] = b
            required, _ = COMPONENTS[b.name]
            have = set(b.attrs) | {c.name for c in b.blocks}
            for r in required - have:
                self.fail(f"{rel}:{b.line}: {key} lacks {r}")
        env = svc.get("environment") or {}
        for b in blocks:
            for inner in alloy.all_blocks(b):
                if inner is not b and b.name == "loki.process" and inner.name.startswith("stage.") and inner.name not in STAGES:
                    self.fail(f"{rel}:{inner.line}: unknown stage {inner.name}")
                if inner.name == "rule":
                    action = (inner.attrs.get("action") or ("str", "replace"))[1]
                    if action not in RELABEL_ACTIONS:
                        self.fail(f"{rel}:{inner.line}: relabel action {action!r}")
                    regex = inner.attrs.get("regex")
                    if regex and regex[0] == "str":
                        try:
                            re.compile(regex[1])
                        except re.error as e:
                            self.fail(f"{rel}:{inner.line}: regex {regex[1]!r}: {e}")
                    tl = inner.attrs.get("target_label")
                    if tl and tl[1] not in ALLOWED_LABELS:
                        self.fail(f"{rel}:{inner.line}: label {tl[1]!r} is not one of the few this stack allows ({sorted(ALLOWED_LABELS)})")
                for value in inner.attrs.values():
                    for node in alloy.walk(value):
                        if node[0] == "call":
                            if node[1] not in FUNCTIONS:
                                self.fail(f"{rel}:{inner.line}: unknown function {node[1]}")
                            if node[1] == "sys.env" and node[2] and node[2][0][0] == "str" and node[2][0][1] not in env:
                                self.fail(f"{rel}:{inner.line}: sys.env({node[2][0][1]!r}) is not set in compose's alloy environment")
                        elif node[0] == "ref":
                            self.check_ref(rel, inner, node[1], declared)
        # forward_to: receivers only.
        for key, b in declared.items():
            fwd = b.attrs.get("forward_to")
            if fwd is None:
                continue
            if fwd[0] != "list" or not fwd[1] or any(n[0] != "ref" or not n[1].endswith(".receiver") for n in fwd[1]):
                self.fail(f"{rel}:{b.line}: {key}'s forward_to must list receivers")
        # Loki's push URL is the Loki service's.
        for b in (b for b in blocks if b.name == "loki.write"):
            for ep in b.children("endpoint"):
                url = urlparse((ep.attrs.get("url") or ("str", ""))[1])
                if url.hostname != "loki" or url.port != loki_port or url.path != "/loki/api/v1/push":
                    self.fail(f"{rel}:{ep.line}: loki.write sends to {url.geturl()!r}, not http://loki:{loki_port}/loki/api/v1/push")
            for k in (b.attrs.get("external_labels") or ("obj", {}))[1]:
                if k not in ALLOWED_LABELS:
                    self.fail(f"{rel}:{b.line}: external label {k!r} is not one of the few this stack allows")
        # The Docker socket and the journal as compose mounts them.
        mounts = {v.split(":")[1] for v in svc.get("volumes", [])}
        for b in blocks:
            host = b.attrs.get("host")
            if host and host[0] == "str" and host[1].startswith("unix://") and host[1][len("unix://"):] not in mounts:
                self.fail(f"{rel}:{b.line}: {b.name} reads {host[1]}, which compose does not mount")
            if b.name == "loki.source.journal":
                path = (b.attrs.get("path") or ("str", "/var/log/journal"))[1]
                if path not in mounts or "/etc/machine-id" not in mounts:
                    self.fail(f"{rel}:{b.line}: the journal ({path}) and /etc/machine-id must be mounted in alloy")
        self.check_pipelines(rel, [b for b in blocks if b.name == "loki.process"])

    def check_ref(self, rel, block, ref, declared):
        if ref in ("true", "false", "null"):
            return
        for key, b in declared.items():
            if ref.startswith(key + "."):
                export = ref[len(key) + 1:]
                if export not in COMPONENTS[b.name][1]:
                    self.fail(f"{rel}:{block.line}: {key} exports no {export!r}")
                return
        if not ref.startswith(("sys.", "constants.")):
            self.fail(f"{rel}:{block.line}: {ref} names no declared component")

    def check_pipelines(self, rel, processes):
        """Every stage.match selector parses; the sample lines each take their pipeline."""
        matches = [m for p in processes for m in p.children("stage.match")]
        for m in matches:
            sel = (m.attrs.get("selector") or ("str", ""))[1]
            try:
                logql.matches(sel, {}, "")
            except logql.LogQLError as e:
                self.fail(f"{rel}:{m.line}: stage.match selector {sel!r}: {e}")
                return
        samples = [
            ("llm-exporter's access log (docker)", {"job": "docker", "service": "llm-exporter"}, ACCESS_LINE, "access_log"),
            ("llm-exporter's access log (journal)", {"job": "journal", "service": "llm-exporter"}, ACCESS_LINE_UNTRACED, "access_log"),
            ("an exporter's logfmt line", {"job": "docker", "service": "llm-exporter"}, EXPORTER_LOGFMT, "exporter_logfmt"),
            ("an exporter's JSON line", {"job": "docker", "service": "host-exporter"}, EXPORTER_JSON, "exporter_json"),
            ("an exporter's JSON line", {"job": "docker", "service": "llm-exporter"}, EXPORTER_JSON, "exporter_json"),
        ]
        for what, labels, line, want in samples:
            got = [(m.attrs.get("pipeline_name") or ("str", f"line {m.line}"))[1] for m in matches
                   if logql.matches(m.attrs["selector"][1], labels, line)]
            if got != [want]:
                self.fail(f"{rel}: {what} takes the pipelines {got}, not [{want!r}]")
        access = next((m for m in matches if (m.attrs.get("pipeline_name") or ("str", ""))[1] == "access_log"), None)
        if not access:
            self.fail(f"{rel}: no stage.match with pipeline_name \"access_log\"")
            return
        import json as _json
        fields = _json.loads(ACCESS_LINE)
        if set(fields) - {"trace_id"} != ACCESS_FIELDS:
            self.fail("the sample access-log line no longer has the documented fields")
        extracted = {}
        for st in access.children("stage.json"):
            for k, v in (st.attrs.get("expressions") or ("obj", {}))[1].items():
                src = v[1] or k
                if src not in fields:
                    self.fail(f"{rel}:{st.line}: stage.json extracts {src!r}, which the access log does not have")
                extracted[k] = fields.get(src)
        labels = {k for st in access.children("stage.labels") for k in st.attrs["values"][1]}
        metadata = {k for st in access.children("stage.structured_metadata") for k in st.attrs["values"][1]}
        if not ACCESS_LABELS <= labels or labels - ACCESS_LABELS:
            self.fail(f"{rel}: the access log's labels must be {sorted(ACCESS_LABELS)}, got {sorted(labels)}")
        if metadata != ACCESS_METADATA:
            self.fail(f"{rel}: request_id and trace_id must be structured metadata, got {sorted(metadata)}")
        for k in labels | metadata:
            if k not in extracted:
                self.fail(f"{rel}: {k} is used but not extracted by stage.json")
        ts = access.children("stage.timestamp")
        if not ts or ts[0].attrs["source"][1] not in extracted or ts[0].attrs["format"][1] != "RFC3339Nano":
            self.fail(f"{rel}: the access log's time must be its timestamp (stage.timestamp, RFC3339Nano)")
        else:
            try:
                datetime.fromisoformat(extracted[ts[0].attrs["source"][1]].replace("Z", "+00:00"))
            except (TypeError, ValueError) as e:
                self.fail(f"{rel}: the sample access log's time does not parse: {e}")
        # Nowhere a label of unbounded cardinality.
        for p in processes:
            for inner in alloy.all_blocks(p):
                if inner.name in ("stage.labels", "stage.static_labels"):
                    for k in inner.attrs["values"][1]:
                        if k not in ALLOWED_LABELS:
                            self.fail(f"{rel}:{inner.line}: label {k!r} is not one of the few this stack allows ({sorted(ALLOWED_LABELS)})")

    # ---- Grafana data sources -------------------------------------------------------------------
    def check_datasources(self, loki_port, query_port):
        ds = load_yaml(self.path("grafana/provisioning/datasources/datasources.yml"))["datasources"]
        by_uid = {d["uid"]: d for d in ds}
        loki, jaeger = by_uid.get("loki"), by_uid.get("jaeger")
        if not loki or loki.get("type") != "loki":
            self.fail("datasources: no Loki data source with uid loki")
        if not jaeger or jaeger.get("type") != "jaeger":
            self.fail("datasources: no Jaeger data source with uid jaeger")
        if not loki or not jaeger:
            return
        for d, host, port in ((loki, "loki", loki_port), (jaeger, "jaeger", query_port)):
            u = urlparse(d.get("url", ""))
            if u.hostname != host or u.port != port or host not in self.services:
                self.fail(f"datasources: {d['name']} at {d.get('url')!r}, not the {host} service's http://{host}:{port}")
        fields = (loki.get("jsonData") or {}).get("derivedFields") or []
        trace = [f for f in fields if f.get("datasourceUid")]
        if not trace:
            self.fail("datasources: Loki has no derived field linking to a trace data source")
        for f in trace:
            target = by_uid.get(f["datasourceUid"])
            if not target or target.get("type") != "jaeger":
                self.fail(f"datasources: derived field {f.get('name')} links to {f['datasourceUid']!r}, not the Jaeger data source")
            if "$${__value.raw}" not in f.get("url", ""):
                self.fail(f"datasources: derived field {f.get('name')} url must be $${{__value.raw}} (the trace id; $$ is a literal $ in provisioning)")
            try:
                rx = re.compile(f.get("matcherRegex", ""))
            except re.error as e:
                self.fail(f"datasources: derived field regex: {e}")
                continue
            m = rx.search(ACCESS_LINE)
            if not m or rx.groups != 1 or m.group(1) != "4bf92f3577b34da6a3ce929d0e0e4736":
                self.fail(f"datasources: derived field regex {rx.pattern!r} does not capture the access log's trace_id")
            if rx.search(ACCESS_LINE_UNTRACED) or rx.search(EXPORTER_LOGFMT):
                self.fail(f"datasources: derived field regex {rx.pattern!r} matches a line without a trace_id")
        t2l = (jaeger.get("jsonData") or {}).get("tracesToLogsV2") or {}
        if t2l.get("datasourceUid") != "loki":
            self.fail("datasources: Jaeger's tracesToLogsV2 must point at the Loki data source")

    def check_otlp_documented(self, env, otlp_port):
        if otlp_port and f"http://jaeger:{otlp_port}/v1/traces" not in env:
            self.fail(f"compose/env.example must say how to turn traces on (http://jaeger:{otlp_port}/v1/traces)")

    def check_parser(self):
        for q in LOGQL_ACCEPTED:
            try:
                logql.parse(q)
            except logql.LogQLError as e:
                self.fail(f"check_stack_logql refuses a query Loki accepts: {q}: {e}")
        for q in LOGQL_REFUSED:
            try:
                logql.parse(q)
                self.fail(f"check_stack_logql accepts a query Loki refuses: {q}")
            except logql.LogQLError:
                pass

    def run(self):
        self.check_parser()
        env = self.check_compose()
        loki_port = self.check_loki()
        otlp_port, query_port = self.check_jaeger()
        self.check_alloy(loki_port)
        self.check_datasources(loki_port, query_port)
        self.check_otlp_documented(env, otlp_port)


def alloy_matches(root):
    """[(pipeline name, selector)] of compose/alloy/config.alloy's stage.match blocks."""
    with open(os.path.join(root, "compose/alloy/config.alloy"), encoding="utf-8") as f:
        blocks = alloy.parse(f.read())
    return [((m.attrs.get("pipeline_name") or ("str", f"line {m.line}"))[1], m.attrs["selector"][1])
            for b in blocks if b.name == "loki.process" for m in b.children("stage.match")]


def check_container_lines(root, text, request_id, fail):
    """Real lines of llm-exporter's container (`docker logs`, as Alloy reads them): the access-log
    line of `request_id` is one JSON object with every documented field and no other, taken by
    Alloy's access_log pipeline and only by it, its trace_id (when there is one) found by the
    trace link; no other line is taken for an access-log line. Returns the lines looked at."""
    import json as _json
    matches = alloy_matches(root)
    ds = load_yaml(os.path.join(root, "grafana/provisioning/datasources/datasources.yml"))["datasources"]
    link = next((re.compile(f["matcherRegex"]) for d in ds if d.get("uid") == "loki"
                 for f in (d.get("jsonData") or {}).get("derivedFields") or [] if f.get("datasourceUid")), None)
    labels = {"job": "docker", "service": "llm-exporter"}
    lines = [l for l in text.splitlines() if l.strip()]
    mine = []
    for line in lines:
        taken = [name for name, sel in matches if logql.matches(sel, labels, line)]
        if line.startswith("{") and '"request_id"' in line:
            if taken != ["access_log"]:
                fail(f"an access-log line takes the pipelines {taken}, not ['access_log']: {line}")
            try:
                obj = _json.loads(line)
            except ValueError as e:
                fail(f"an access-log line is not one JSON object ({e}): {line}")
                continue
            if obj.get("request_id") == request_id:
                mine.append(obj)
                missing, extra = ACCESS_FIELDS - set(obj), set(obj) - ACCESS_FIELDS - {"trace_id"}
                if missing or extra:
                    fail(f"the access-log line lacks {sorted(missing)}, has unknown {sorted(extra)}: {line}")
                if "trace_id" in obj:
                    m = link.search(line) if link else None
                    if not m or m.group(1) != obj["trace_id"]:
                        fail(f"the trace link does not find trace_id {obj['trace_id']} in {line}")
        elif "access_log" in taken:
            fail(f"a line that is no access-log line takes the access_log pipeline: {line}")
    if len(mine) != 1:
        fail(f"{len(mine)} access-log lines with request_id {request_id} in llm-exporter's log, want 1")
    return len(lines)


def parse_hours(v):
    m = re.fullmatch(r"(\d+)([hdw])", str(v or ""))
    if not m:
        return None
    return int(m.group(1)) * {"h": 1, "d": 24, "w": 168}[m.group(2)]


# ---- The request logs dashboard -----------------------------------------------------------------

def is_loki_dashboard(dash):
    return any(v.get("type") == "datasource" and v.get("query") == "loki"
               for v in dash.get("templating", {}).get("list", []))


def check_loki_dashboard(rel, dash, panels, ds_uids, fail):
    """A dashboard on Loki: $loki and $host, every query's data source $loki, every query parses
    as LogQL with host=~"$host" on each selector, and the seeds' log queries are there."""
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if (variables.get("loki") or {}).get("query") != "loki" or "loki" not in ds_uids:
        fail(f"{rel}: needs a $loki variable of type datasource (loki), and a provisioned loki")
    if "host" not in variables:
        fail(f"{rel}: needs a $host variable")
    for v in variables.values():
        if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") != "${loki}":
            fail(f"{rel}: variable {v['name']} does not query $loki")
    titles = {}
    count = 0
    for p in panels:
        titles[p.get("title")] = p
        for t in p.get("targets", []):
            where = f"{rel}: panel '{p.get('title')}'"
            if (t.get("datasource") or {}).get("uid") != "${loki}" or (p.get("datasource") or {}).get("uid") != "${loki}":
                fail(f"{where}: data source is not $loki")
            expr = t.get("expr", "")
            for name in re.findall(r"\$\{?(\w+)", expr):
                if not name.startswith("__") and name not in variables:
                    fail(f"{where}: ${name} is not declared")
            q = re.sub(r"\$\{?(__auto|__interval|__range)\}?", lambda m: {"__auto": "5m", "__interval": "1m", "__range": "1h"}[m.group(1)], expr)
            q = re.sub(r"\$\{?(\w+)(?::\w+)?\}?", ".+", q)
            try:
                tree, parser = logql.parse(q)
            except logql.LogQLError as e:
                fail(f"{where}: LogQL does not parse: {e}: {expr}")
                continue
            count += 1
            raw_selectors = re.findall(r"\{[^{}]*\}", re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace("{", "(").replace("}", ")"), expr))
            for s in raw_selectors:
                if 'host=~"$host"' not in s:
                    fail(f'{where}: selector {s} is not filtered with host=~"$host"')
            if len(raw_selectors) != len(parser.selectors):
                fail(f"{where}: could not match every selector of {expr}")
            if p.get("type") == "logs" and tree[0] != "log":
                fail(f"{where}: a logs panel needs a log query, not a metric query")
            if p.get("type") != "logs" and tree[0] == "log":
                fail(f"{where}: a {p.get('type')} panel needs a metric query")
            if p.get("type") == "logs" and 'log_type="access"' in expr and any(s[0] == "line_format" for s in parser.stages):
                fail(f"{where}: line_format would hide the trace_id that links the line to its trace")
    for title, wanted in SEED_LOG_PANELS.items():
        p = titles.get(title)
        if not p:
            fail(f"{rel}: the seeds' log query panel '{title}' is missing")
            continue
        for w in wanted:
            if not any(re.search(w, t.get("expr", "")) for t in p.get("targets", [])):
                fail(f"{rel}: panel '{title}' has no query matching {w!r}")
    slow = titles.get("Slow requests (over 5 s)")
    if slow and (slow.get("type") != "logs" or not any('log_type="access"' in t.get("expr", "") for t in slow.get("targets", []))):
        fail(f"{rel}: 'Slow requests (over 5 s)' must be a logs panel of access-log lines (their trace_id links to the trace)")
    return count
