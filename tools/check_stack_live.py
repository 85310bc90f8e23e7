#!/usr/bin/env python3
"""Live end-to-end run of the monitoring stack on loopback (called by tools/check_stack.sh).

Starts, on free 127.0.0.1 ports and under a temporary directory:
  - the four real exporter binaries on fixtures and fakes: host-exporter on its fixture /proc and
    /sys tree, nvidia-exporter on the fake libnvidia-ml (built from its C source, "fleet"
    scenario), rocm-exporter on the Strix Halo fake sysfs tree, llm-exporter polling a fake
    llama-server and a fake Ollama (tools/check_stack_fake_llm.py) with its measuring proxy in
    front of both, and requests sent through the proxies (some of them failing); the fake
    llama-server serves a copy of its recorded /metrics whose counters (tokens, prompt and
    generation seconds) this script raises with each request, as a real server's rise;
  - Debian's Prometheus with the repository's prometheus.yml and rules (the file-SD target lists
    pointed at loopback, intervals shortened to 1-2 s, rule groups' own intervals too);
  - Debian's Alertmanager with the repository's alertmanager.yml and templates (the secret files
    and the receivers' endpoints pointed at a local webhook sink).
Then asserts: every target is up; every query of every dashboard panel (and variable) returns
data; every recording rule produces series; the energy per token rules count llama-server's
tokens once (its own counter, not also the proxy's); every metric name the stack uses that the
golden files cannot show was scraped; one real alert (GPUXIDError, from the fake GPU's XID 79) travels
Prometheus -> Alertmanager -> the pager and chat receivers with its labels and annotations; the
critical-inhibits-warning rule suppresses a warning in the real Alertmanager.

  check_stack_live.py --bin-dir DIR [--keep]

Every process it starts is stopped by its PID before it exits, whatever happens.
"""

import argparse
import base64
import glob
import json
import os
import re
import shutil
import signal
import socketserver
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import check_stack  # noqa: E402

INSTANCE = "live-host"
procs = []
failures = []


def log(msg):
    print(f"live: {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    print(f"live: FAIL {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, tmp, env=None):
    logf = open(os.path.join(tmp, f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                         start_new_session=True)
    procs.append((name, p, logf))
    return p


def stop_all():
    for name, p, logf in reversed(procs):
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 10
    for name, p, logf in reversed(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        logf.close()
    procs.clear()


def http(url, data=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(what, fn, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - any error means "not yet"
            last = e
        time.sleep(0.5)
    fail(f"timed out waiting for {what} ({last})")
    return None


def prom_query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    _, body = http(url)
    out = json.loads(body)
    if out.get("status") != "success":
        raise RuntimeError(out)
    return out["data"]["result"]


class Sink(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body.decode(errors="replace")
        Sink.received.append({"path": self.path, "headers": dict(self.headers), "body": payload})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def build_fake_nvml(tmp):
    out = os.path.join(tmp, "fake-nvml", "libnvidia-ml.so.1")
    os.makedirs(os.path.dirname(out))
    src = os.path.join(ROOT, "nvidia-exporter/tests/fake-nvml/fake_nvml.c")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-pthread", "-Wl,-z,nodelete", "-o", out, src], check=True)
    return out


def host_rootfs(tmp):
    """A rootfs holding the fixture's mount points, so statvfs answers for them."""
    root = os.path.join(tmp, "rootfs")
    with open(os.path.join(ROOT, "host-exporter/tests/fixtures/full/proc/1/mountinfo")) as f:
        for line in f:
            mp = line.split()[4]
            mp = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), mp)
            os.makedirs(root + mp, exist_ok=True)
    return root


def prometheus_config(tmp, ports):
    """The repository's prometheus.yml and rules; target lists on loopback; 1 s intervals."""
    d = os.path.join(tmp, "prometheus")
    os.makedirs(os.path.join(d, "targets"))
    shutil.copytree(os.path.join(ROOT, "prometheus/rules"), os.path.join(d, "rules"))
    # Groups with their own slow interval (the 7-day SLIs: 5m) are evaluated every second too.
    for path in glob.glob(os.path.join(d, "rules", "*.yml")):
        rules = check_stack.load_yaml(path)
        for group in rules.get("groups", []):
            if "interval" in group:
                group["interval"] = "1s"
        with open(path, "w") as f:
            yaml.safe_dump(rules, f)
    cfg = check_stack.load_yaml(os.path.join(ROOT, "prometheus/prometheus.yml"))
    cfg["global"].update({"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"})
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        yaml.safe_dump(cfg, f)
    repo_targets = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "prometheus/targets/*.yml"))}
    targets = {
        "host.yml": [{"targets": [f"127.0.0.1:{ports['host']}"], "labels": {"instance": INSTANCE}}],
        "nvidia.yml": [{"targets": [f"127.0.0.1:{ports['nvidia']}"], "labels": {"instance": INSTANCE}}],
        "rocm.yml": [{"targets": [f"127.0.0.1:{ports['rocm']}"], "labels": {"instance": INSTANCE}}],
        "llm.yml": [{"targets": [f"127.0.0.1:{ports['llm']}"], "labels": {"instance": INSTANCE}}],
        "llama-server.yml": [{"targets": [f"127.0.0.1:{ports['llama']}"], "labels": {"instance": INSTANCE}}],
        "prometheus.yml": [{"targets": [f"127.0.0.1:{ports['prometheus']}"]}],
        "alertmanager.yml": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}],
    }
    if set(targets) != repo_targets:
        fail(f"the live run's target files {sorted(targets)} differ from prometheus/targets/ {sorted(repo_targets)}")
    for name, groups in targets.items():
        with open(os.path.join(d, "targets", name), "w") as f:
            yaml.safe_dump(groups, f)
    return os.path.join(d, "prometheus.yml")


def alertmanager_config(tmp, sink, smtp):
    """The repository's alertmanager.yml and templates; secrets and endpoints on the sink."""
    d = os.path.join(tmp, "alertmanager")
    shutil.copytree(os.path.join(ROOT, "alertmanager/templates"), os.path.join(d, "templates"))
    secrets = os.path.join(tmp, "secrets")
    os.makedirs(secrets)
    values = {
        "alertmanager_pagerduty_routing_key": "live-routing-key",
        "alertmanager_slack_webhook_url": f"{sink}/slack",
        "alertmanager_webhook_token": "live-token",
        "alertmanager_smtp_password": "live-smtp-password",
    }
    with open(os.path.join(ROOT, "alertmanager/alertmanager.yml")) as f:
        text = f.read()
    for name in re.findall(r"/run/secrets/(\w+)", text):
        if name not in values:
            fail(f"alertmanager.yml reads secret {name}, which the live run does not provide")
    for name, v in values.items():
        with open(os.path.join(secrets, name), "w") as f:
            f.write(v)
    text = text.replace("/run/secrets/", secrets + "/")
    cfg = yaml.safe_load(text)
    cfg["global"]["pagerduty_url"] = f"{sink}/pagerduty"
    # The SMTP sink speaks no TLS.
    cfg["global"]["smtp_smarthost"] = smtp
    cfg["global"]["smtp_require_tls"] = False
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            w["url"] = f"{sink}/webhook"
    with open(os.path.join(d, "alertmanager.yml"), "w") as f:
        yaml.safe_dump(cfg, f)
    return os.path.join(d, "alertmanager.yml")


# The fake llama-server's recorded /metrics, and what one answered request adds to its counters
# here: the capture alone never moves, so every rate() of llama-server's own counters (the energy
# rules' tokens and prefill/decode seconds) would be 0.
LLAMA_METRICS = "llama-server/metrics-after-4-requests.body"
LLAMA_PER_REQUEST = {
    "llamacpp:prompt_tokens_total": 20, "llamacpp:prompt_seconds_total": 0.004,
    "llamacpp:tokens_predicted_total": 12, "llamacpp:tokens_predicted_seconds_total": 0.03,
    "llamacpp:n_decode_total": 12,
}


def llm_fixtures(tmp):
    """A copy of llm-exporter's fixtures for the fake model servers (which read them per request)."""
    d = os.path.join(tmp, "llm-fixtures")
    shutil.copytree(os.path.join(ROOT, "llm-exporter/tests/fixtures"), d)
    return d


def llama_answered(fixtures, n):
    """Raises the fake llama-server's counters by n answered requests (replaced atomically)."""
    path = os.path.join(fixtures, LLAMA_METRICS)
    with open(path) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        name, _, value = line.partition(" ")
        if name in LLAMA_PER_REQUEST:
            lines[i] = f"{name} {float(value) + n * LLAMA_PER_REQUEST[name]!r}"
    with open(path + ".new", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".new", path)


def send_traffic(ports, fixtures, failing=True):
    """Requests through llm-exporter's proxies: streamed and not, and some that fail (404)."""
    lp, op = ports["proxy_llama"], ports["proxy_ollama"]
    reqs = [
        (lp, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 12, "stream": True}),
        (lp, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12}),
        (lp, "/completion", {"prompt": "Once", "n_predict": 12, "stream": True}),
        (op, "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}),
        (op, "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": False}),
        (op, "/api/generate", {"model": "llama3.2", "prompt": "Hi"}),
    ]
    if failing:
        reqs += [(op, "/api/chat", {"model": "nope", "messages": []}), (lp, "/v1/chat/completions", {"model": "nope", "messages": []})]
    answered = 0
    for port, path, body in reqs:
        try:
            http(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
            answered += port == lp
        except urllib.error.HTTPError:
            pass  # the failing ones
    llama_answered(fixtures, answered)


def check_tokens_once(prom):
    sel = f'instance="{INSTANCE}"'

    def value(expr, at):
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at})
        out = json.loads(http(url)[1])["data"]["result"]
        return float(out[0]["value"][1]) if out else 0.0
    # A recorded sample a few seconds old (its scrapes all stored), from once the traffic has
    # raised every counter involved between two scrapes, and the raw counters at that time.
    last = {}

    def settled():
        at = value(f"timestamp(instance:llm_generated_tokens:rate5m{{{sel}}})", time.time() - 3)
        last.update(
            recorded=value(f"instance:llm_generated_tokens:rate5m{{{sel}}}", at),
            server=value(f'sum(rate(llamacpp_tokens_predicted_total{{{sel},upstream="local"}}[5m]))', at),
            proxied_local=value(f'sum(rate(llm_tokens_generated_total{{{sel},upstream="local"}}[5m]))', at),
            proxied_other=value(f'sum(rate(llm_tokens_generated_total{{{sel},upstream!="local"}}[5m]))', at))
        return at and all(v > 0 for v in last.values())
    if not wait_for("tokens from llama-server's counter, the proxy for llama-server and the proxy for Ollama",
                    settled, 20):
        fail(f"energy rules: the live run needs all of these above 0: {last}")
        return
    recorded, server, proxied_local, proxied_other = (last[k] for k in ("recorded", "server", "proxied_local", "proxied_other"))
    # Off by less than a quarter of the proxied tokens of llama-server: adding them would show.
    if abs(recorded - (server + proxied_other)) > min(0.01 * recorded, 0.25 * proxied_local):
        fail(f"instance:llm_generated_tokens:rate5m = {recorded}, want llama-server's own {server} + "
             f"Ollama's proxied {proxied_other} (the proxied {proxied_local} of llama-server not again)")
    else:
        log(f"generated tokens counted once: {recorded:.3f}/s = llama-server {server:.3f} + Ollama {proxied_other:.3f} "
            f"(llama-server's proxied {proxied_local:.3f} left out)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="check-stack-live-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sink_server = None
    try:
        sink_server, ok = run(a.bin_dir, tmp)
    finally:
        stop_all()
        if sink_server:
            sink_server.shutdown()
            sink_server.server_close()
        if failures:
            log(f"logs of the failed run are in {tmp}")
        elif not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"FAIL live end-to-end run: {len(failures)} problem(s)", file=sys.stderr)
        sys.exit(1)
    print(f"ok   live end-to-end run: {ok}")


def check_llama_model_label(prom):
    """The fake llama-server's model as the proxy and the poller label it: the file name of its
    path, as llama-server's own (`Server: llama.cpp`) answers are labelled, never Ollama's
    `name:latest`."""
    want = "tiny-random-llama.gguf"
    for expr in ('llm_requests_total{upstream="local",status="success"}', 'llm_backend_info{upstream="local"}'):
        models = {r["metric"].get("model") for r in prom_query(prom, expr)}
        if models != {want}:
            fail(f"llama model label of {expr}: {sorted(m or '' for m in models)}, want ['{want}']")


class SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP for Alertmanager's e-mail receiver: EHLO with AUTH PLAIN, MAIL, RCPT,
    DATA. Keeps each message and the credentials of its AUTH."""
    messages = []

    def handle(self):
        reply = lambda text: self.wfile.write(text.encode() + b"\r\n")  # noqa: E731
        reply("220 sink ESMTP")
        auth, lines, in_data = "", [], False
        while True:
            line = self.rfile.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\r\n")
            if in_data:
                if text == ".":
                    SmtpSink.messages.append({"auth": auth, "text": "\n".join(lines)})
                    lines, in_data = [], False
                    reply("250 queued")
                else:
                    lines.append(text[1:] if text.startswith("..") else text)
                continue
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                reply("250-sink")
                reply("250 AUTH PLAIN")
            elif verb == "AUTH":
                parts = text.split(" ")
                auth = base64.b64decode(parts[2]).decode(errors="replace") if len(parts) > 2 else ""
                reply("235 ok")
            elif verb == "DATA":
                in_data = True
                reply("354 go on")
            elif verb == "QUIT":
                reply("221 bye")
                return
            else:
                reply("250 ok")


def run(bin_dir, tmp):
    names = ["host", "nvidia", "rocm", "llm", "llama", "ollama", "proxy_llama", "proxy_ollama",
             "prometheus", "alertmanager", "sink", "smtp"]
    ports = {n: free_port() for n in names}
    sink_server = ThreadingHTTPServer(("127.0.0.1", ports["sink"]), Sink)
    sink_server.daemon_threads = True
    threading.Thread(target=sink_server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{ports['sink']}"
    smtp_server = socketserver.ThreadingTCPServer(("127.0.0.1", ports["smtp"]), SmtpSink)
    smtp_server.daemon_threads = True
    threading.Thread(target=smtp_server.serve_forever, daemon=True).start()
    b = lambda n: os.path.join(bin_dir, n)  # noqa: E731
    for n in ("host-exporter", "nvidia-exporter", "rocm-exporter", "llm-exporter"):
        if not os.access(b(n), os.X_OK):
            fail(f"{b(n)} is not an executable")
            return sink_server, ""

    hf = os.path.join(ROOT, "host-exporter/tests/fixtures/full")
    start("host-exporter", [b("host-exporter"), f"--web.listen-address=127.0.0.1:{ports['host']}",
                            f"--path.procfs={hf}/proc", f"--path.sysfs={hf}/sys",
                            f"--path.rootfs={host_rootfs(tmp)}", f"--path.udev.data={hf}/udev"], tmp)
    start("nvidia-exporter", [b("nvidia-exporter"), f"--web.listen-address=127.0.0.1:{ports['nvidia']}",
                              f"--nvml.library={build_fake_nvml(tmp)}"], tmp,
          env={"FAKE_NVML_SCENARIO": os.path.join(ROOT, "nvidia-exporter/tests/fake-nvml/scenarios/fleet.scn"),
               "NODE_NAME": INSTANCE})
    rf = os.path.join(ROOT, "rocm-exporter/tests/fixtures")
    start("rocm-exporter", [b("rocm-exporter"), f"--web.listen-address=127.0.0.1:{ports['rocm']}",
                            "--backend=sysfs", f"--path.sysfs={rf}/sysfs/strix-halo", f"--path.procfs={rf}/proc"], tmp)
    fixtures = llm_fixtures(tmp)
    start("fake-llm", [sys.executable, os.path.join(ROOT, "tools/check_stack_fake_llm.py"),
                       "--fixtures", fixtures,
                       "--llama-port", str(ports["llama"]), "--ollama-port", str(ports["ollama"])], tmp)
    start("llm-exporter", [b("llm-exporter"), f"--web.listen-address=127.0.0.1:{ports['llm']}",
                           f"--upstream=local=http://127.0.0.1:{ports['llama']}",
                           f"--upstream=home=http://127.0.0.1:{ports['ollama']}",
                           f"--proxy=local=127.0.0.1:{ports['proxy_llama']}",
                           f"--proxy=home=127.0.0.1:{ports['proxy_ollama']}"], tmp)
    am_cfg = alertmanager_config(tmp, sink, f"127.0.0.1:{ports['smtp']}")
    start("alertmanager", ["prometheus-alertmanager", f"--config.file={am_cfg}",
                           f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                           "--cluster.listen-address=", f"--storage.path={tmp}/am-data"], tmp)
    prom_cfg = prometheus_config(tmp, ports)
    prom = f"http://127.0.0.1:{ports['prometheus']}"
    am = f"http://127.0.0.1:{ports['alertmanager']}"
    start("prometheus", ["prometheus", f"--config.file={prom_cfg}", f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                         f"--storage.tsdb.path={tmp}/prom-data", "--rules.alert.resend-delay=1s",
                         "--web.enable-lifecycle"], tmp)

    for n, port in (("host", ports["host"]), ("nvidia", ports["nvidia"]), ("rocm", ports["rocm"]), ("llm", ports["llm"])):
        wait_for(f"{n} exporter /-/healthy", lambda port=port: http(f"http://127.0.0.1:{port}/-/healthy")[0] == 200, 20)
    wait_for("the fake model servers", lambda: http(f"http://127.0.0.1:{ports['llama']}/health")[0] == 200, 10)
    wait_for("prometheus /-/ready", lambda: http(f"{prom}/-/ready")[0] == 200, 30)
    wait_for("alertmanager /-/ready", lambda: http(f"{am}/-/ready")[0] == 200, 30)
    if failures:
        return sink_server, ""

    # Traffic in two bursts a few scrapes apart, so the proxy's counters rise between scrapes.
    send_traffic(ports, fixtures)
    time.sleep(4)
    send_traffic(ports, fixtures)

    # 1. Every target up.
    def all_up():
        _, body = http(f"{prom}/api/v1/targets?state=active")
        t = json.loads(body)["data"]["activeTargets"]
        jobs = {x["labels"]["job"] for x in t}
        return len(t) >= 7 and jobs >= {"host", "nvidia", "rocm", "llm", "llama-server", "prometheus", "alertmanager"} \
            and all(x["health"] == "up" for x in t) and t
    targets = wait_for("every target up", all_up, 30)
    if not targets:
        _, body = http(f"{prom}/api/v1/targets")
        for x in json.loads(body)["data"]["activeTargets"]:
            if x["health"] != "up":
                fail(f"target {x['labels']['job']} {x['scrapeUrl']}: {x['health']} {x['lastError']}")
    time.sleep(3)
    send_traffic(ports, fixtures, failing=False)
    time.sleep(4)
    check_llama_model_label(prom)

    # 2. Every dashboard query returns data (and every variable query).
    queries = []
    for path, dash in check_stack.dashboards():
        if check_stack.check_stack_logs.is_loki_dashboard(dash):
            continue  # LogQL on Loki, which cannot run here (checked offline: check_stack.py dashboards)
        variables = {v["name"] for v in dash["templating"]["list"]}
        for v in dash["templating"]["list"]:
            if v.get("type") == "query":
                queries.append((f"{os.path.basename(path)} variable {v['name']}", check_stack.variable_query(v)))
        for p in check_stack.panels_of(dash):
            for t in p.get("targets", []):
                expr = t["expr"].replace("$__rate_interval", "1m").replace('"$instance"', f'"{INSTANCE}"')
                queries.append((f"{os.path.basename(path)} '{p['title']}' {t['refId']}", check_stack.substitute(expr, variables)))
    empty = []
    for where, expr in queries:
        try:
            if not prom_query(prom, expr):
                empty.append((where, expr))
        except Exception as e:  # noqa: BLE001
            fail(f"{where}: query error {e}: {expr}")
    # Rates need a few samples: ask again before calling a query empty.
    if empty:
        time.sleep(5)
        for where, expr in empty:
            if not prom_query(prom, expr):
                fail(f"dashboard query returns no data: {where}: {expr}")
    log(f"{len(queries)} dashboard queries checked for data")

    # 3. Every recording rule produces series.
    records = sorted({r["record"] for _, r in check_stack.rules() if "record" in r})
    for rec in records:
        if not wait_for(f"recording rule {rec}", lambda rec=rec: prom_query(prom, rec), 20):
            fail(f"recording rule {rec} produces no series")
    log(f"{len(records)} recording rules produce series")

    # 3b. Energy per token: llama-server's tokens counted once. The proxy carried tokens of
    # upstream "local" too; the host's generated tokens are the server's own counter plus the
    # proxy's for the other upstream (Ollama), evaluated at the recorded sample's time.
    check_tokens_once(prom)

    # 4. The names the golden files cannot show were really scraped.
    _, body = http(f"{prom}/api/v1/label/__name__/values")
    scraped = json.loads(body)["data"]
    names_file = os.path.join(tmp, "scraped-names.txt")
    with open(names_file, "w") as f:
        f.write("\n".join(scraped) + "\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools/check_stack.py"), "metrics", names_file],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"metric names against the live scrape:\n{r.stdout}{r.stderr}")

    # 5. One real alert: Prometheus -> Alertmanager -> pager and chat receivers.
    def xid_in_am():
        _, body = http(f"{am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": 'alertname="GPUXIDError"'}))
        return [x for x in json.loads(body) if x["labels"].get("xid") == "79"]
    got = wait_for("GPUXIDError in Alertmanager", xid_in_am, 40)
    if got:
        x = got[0]
        want_labels = {"alertname": "GPUXIDError", "severity": "critical", "job": "nvidia", "instance": INSTANCE,
                       "gpu": "1", "id": "0000:65:00.0", "xid": "79"}
        for k, v in want_labels.items():
            if x["labels"].get(k) != v:
                fail(f"GPUXIDError in Alertmanager: label {k}={x['labels'].get(k)!r}, want {v!r}")
        ann = x["annotations"]
        if ann.get("summary") != "NVIDIA XID error" or ann.get("runbook_url") != "docs/runbooks.md#gpuxiderror" \
                or not ann.get("description", "").startswith(f"GPU 1 (0000:65:00.0) on {INSTANCE} reported XID 79"):
            fail(f"GPUXIDError in Alertmanager: annotations {ann}")

    def delivered():
        pd = [r for r in Sink.received if r["path"] == "/pagerduty" and isinstance(r["body"], dict)
              and r["body"].get("payload", {}).get("custom_details", {}).get("alertname") == "GPUXIDError"]
        sl = [r for r in Sink.received if r["path"] == "/slack" and "GPUXIDError" in json.dumps(r["body"])]
        return (pd, sl) if pd and sl else None
    got = wait_for("GPUXIDError at the pager and chat receivers", delivered, 40)
    if got:
        pd, sl = got[0][0]["body"], got[1][0]["body"]
        details = pd["payload"]["custom_details"]
        if pd.get("routing_key") != "live-routing-key" or pd.get("event_action") != "trigger":
            fail(f"pager notification: routing key / action {pd.get('routing_key')} {pd.get('event_action')}")
        if pd["payload"].get("severity") != "critical" or details.get("summary") != "NVIDIA XID error":
            fail(f"pager notification: severity/summary {pd['payload'].get('severity')} {details.get('summary')}")
        for needle in (f"GPU 1 (0000:65:00.0) on {INSTANCE} reported XID 79", "Runbook: docs/runbooks.md#gpuxiderror",
                       "xid=79", "gpu=1", f"instance={INSTANCE}", "severity=critical"):
            if needle not in details.get("firing", ""):
                fail(f"pager notification: {needle!r} not in {details.get('firing')!r}")
        att = sl.get("attachments", [{}])[0]
        if not att.get("title", "").startswith("[FIRING:") or "GPUXIDError (critical)" not in att.get("title", ""):
            fail(f"chat notification: title {att.get('title')!r}")
        if "reported XID 79" not in att.get("text", "") or "Runbook: docs/runbooks.md#gpuxiderror" not in att.get("text", ""):
            fail(f"chat notification: text {att.get('text')!r}")
        if any(r["path"] == "/webhook" and "GPUXIDError" in json.dumps(r["body"]) for r in Sink.received):
            fail("a critical alert reached the default receiver")
    # The e-mail receiver: the critical alert by mail, logged in with the secret file's password.
    mail = wait_for("GPUXIDError by e-mail", lambda: [m for m in SmtpSink.messages if "GPUXIDError" in m["text"]], 40)
    if mail:
        m = mail[0]
        if "live-smtp-password" not in m["auth"]:
            fail(f"e-mail: SMTP login without the secret file's password ({m['auth']!r})")
        if not re.search(r"(?m)^Subject: \[FIRING:\d+\] GPUXIDError \(critical\)", m["text"]):
            fail(f"e-mail: subject line missing or wrong in {m['text'][:400]!r}")

    # 6. The inhibition rule, in the real Alertmanager: a critical silences its warning.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pair = [{"labels": {"alertname": "LiveInhibitCheck", "severity": s, "instance": INSTANCE}, "startsAt": now,
             "annotations": {"summary": "inhibition check"}} for s in ("critical", "warning")]
    other = [{"labels": {"alertname": "LiveInhibitCheck", "severity": "warning", "instance": "other-host"}, "startsAt": now}]
    http(f"{am}/api/v2/alerts", json.dumps(pair + other).encode(), {"Content-Type": "application/json"})

    def inhibited():
        _, body = http(f"{am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": 'alertname="LiveInhibitCheck"'}))
        got = {(x["labels"]["severity"], x["labels"]["instance"]): x["status"] for x in json.loads(body)}
        return got if len(got) == 3 and got[("warning", INSTANCE)]["inhibitedBy"] else None
    st = wait_for("the warning inhibited by its critical", inhibited, 15)
    if st:
        if st[("critical", INSTANCE)]["state"] != "active" or st[("warning", "other-host")]["state"] != "active":
            fail(f"inhibition: the critical and the other host's warning must stay active: {st}")
    return sink_server, f"{len(targets or [])} targets up, {len(queries)} dashboard queries and {len(records)} recording rules return data, GPUXIDError delivered to pager and chat, inhibition works"


if __name__ == "__main__":
    main()
