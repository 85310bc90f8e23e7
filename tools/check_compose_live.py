#!/usr/bin/env python3
"""The compose stack, run for real under a Docker daemon, as a user's first `up` runs it.

  check_compose_live.py [--bin-dir target/release] [--keep]

This machine reaches no container registry, so the images compose/compose.yaml pins are built
here as stand-ins under the exact names it pins: a Debian base from `debootstrap --variant=minbase`
(the machine's apt mirror) and `docker import`; Prometheus and Alertmanager from Debian's packages,
laid out as the official images are (/bin/prometheus, /bin/alertmanager, user 65534, busybox wget
for the health checks); bash for the one-shot checks; the exporters' image from the release
binaries (the real compose/Dockerfile starts from rust and distroless images, which cannot be
pulled here). Grafana has no stand-in: its service is left out, and the dashboards are checked
against a real Prometheus by tools/check_stack_live.py instead.

The run: compose/setup.sh writes the .env, targets and secrets for this host (known values are
then put in the secrets the checks need); the stack is started with the monitoring, nvidia and
rocm profiles, the GPU exporters without their devices (this host has none), and these must hold:
every service healthy and every check one-shot exited 0; every Prometheus target up; the
host-exporter in its container reads the host's own boot time and MemTotal; no rule in error; an
alert sent to Alertmanager reaches the default webhook receiver (a listener on the Docker bridge
address) with the bearer token from its secret file; the GPU exporters answer with their backend
down (nvidia_up 0, rocm_up 0); a request through llm-exporter's proxy leaves one access-log line
in the container's Docker log (json-file, rotated), which compose/alloy/config.alloy's pipelines
take as the logs profile would (check_stack_logs.check_container_lines; Loki and Alloy themselves
cannot run here); check-rocm and check-nvidia, run alone, fail naming what the host lacks; the build context of compose/Dockerfile holds no secret, no target/ and no .git, with
the classic builder (Compose v1's). Then `down -v`.

All traffic stays on this machine: the model servers and the webhook are fakes on the Docker
bridge address, the receivers' outside hosts map to 127.0.0.1 in the containers, and iptables
(and ip6tables) rules in DOCKER-USER drop whatever is forwarded from a Docker bridge to this
host's other interfaces while the test runs. Containers, networks, volumes and the rules are
removed at the end (nothing interrupts the clean-up), the stand-in images this run created are
removed and any image that had a pinned name before gets it back, and dockerd is stopped if the
test started it.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

import check_stack_logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_IMAGE = "llm-stack-live/debian:bookworm"
EXPORTERS = ("host-exporter", "nvidia-exporter", "rocm-exporter", "llm-exporter")
TOKEN = "live-webhook-token"
failures = []
cleanups = []  # run in reverse order at the end, whatever happened


def log(msg):
    print(f"compose-live: {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    log(f"FAIL {msg}")


def sh(*argv, check=True, capture=False, env=None, input=None, timeout=600):
    """Runs a command; its output goes to our stdout unless captured."""
    r = subprocess.run(argv, env=env, input=input, timeout=timeout, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.STDOUT if capture else None)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {(r.stdout or '')[-2000:]}")
    return r


def wait_for(what, fn, timeout, every=1.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - anything is "not yet"
            last = e
        time.sleep(every)
    fail(f"{what}: not within {timeout} s" + (f" ({last})" if last else ""))
    return None


def http(url, data=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def ensure_daemon(tmp):
    if sh("docker", "info", check=False, capture=True).returncode == 0:
        return
    log("starting dockerd")
    out = open(os.path.join(tmp, "dockerd.log"), "w")
    proc = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT)

    def stop():
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    cleanups.append(stop)
    if not wait_for("dockerd", lambda: sh("docker", "info", check=False, capture=True).returncode == 0, 60):
        raise RuntimeError("dockerd did not start; see dockerd.log")


def image_exists(tag):
    return sh("docker", "image", "inspect", tag, check=False, capture=True).returncode == 0


def apt_mirror():
    """The machine's Debian mirror, from its apt sources."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def image_id(tag):
    r = sh("docker", "image", "inspect", "-f", "{{.Id}}", tag, check=False, capture=True)
    return r.stdout.strip() if r.returncode == 0 else None


def take_tag(tag, keep, created):
    """Before a stand-in takes a pinned name: the image that had it (a real one pulled on a
    developer's machine) gets it back at the end; a name nobody had is removed again (unless
    --keep)."""
    previous = image_id(tag)
    if previous:
        cleanups.append(lambda: sh("docker", "tag", previous, tag, check=False, capture=True))
        return
    created.append(tag)
    if not keep:
        cleanups.append(lambda: sh("docker", "rmi", "-f", tag, check=False, capture=True))


def build_image(tag, dockerfile, files, tmp, keep, created):
    """docker build of a context holding `files` (name -> source path), classic builder."""
    ctx = tempfile.mkdtemp(dir=tmp, prefix="ctx-")
    for name, src in files.items():
        shutil.copy2(src, os.path.join(ctx, name))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    take_tag(tag, keep, created)
    sh("docker", "build", "-q", "-t", tag, ctx, env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture=True)


def build_images(tmp, pins, keep):
    """The stand-ins, under the names compose.yaml pins. Returns the tags this run created."""
    created = []
    if not image_exists(BASE_IMAGE):
        take_tag(BASE_IMAGE, keep, created)
        rootfs = os.path.join(tmp, "rootfs")
        mirror = apt_mirror()
        log(f"debootstrap --variant=minbase bookworm from {mirror}")
        sh("debootstrap", "--variant=minbase", "--include=busybox-static", "bookworm", rootfs, mirror,
           capture=True, timeout=900)
        for junk in ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale"):
            shutil.rmtree(os.path.join(rootfs, junk), ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    # Prometheus and Alertmanager as their official images lay them out.
    build_image(pins["prometheus"], f"""FROM {BASE_IMAGE}
COPY prometheus /bin/prometheus
RUN ln -s /bin/busybox /bin/wget && mkdir -p /etc/prometheus /prometheus && chown 65534:65534 /prometheus
USER 65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
""", {"prometheus": shutil.which("prometheus")}, tmp, keep, created)
    build_image(pins["alertmanager"], f"""FROM {BASE_IMAGE}
COPY alertmanager /bin/alertmanager
# Debian's build reads its default notification templates from here (the official one embeds them).
COPY default.tmpl email.tmpl /usr/share/prometheus/alertmanager/
RUN ln -s /bin/busybox /bin/wget && mkdir -p /etc/alertmanager /alertmanager && chown 65534:65534 /alertmanager
USER 65534
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
""", {"alertmanager": shutil.which("prometheus-alertmanager"),
        "default.tmpl": "/usr/share/prometheus/alertmanager/default.tmpl",
        "email.tmpl": "/usr/share/prometheus/alertmanager/email.tmpl"}, tmp, keep, created)
    build_image(pins["check-secrets"], f"FROM {BASE_IMAGE}\nCMD [\"bash\"]\n", {}, tmp, keep, created)
    # The exporters as compose/Dockerfile's final stage has them: /usr/local/bin, a busybox for
    # wget, a non-root user.
    bins = {e: os.path.join(pins["bin_dir"], e) for e in EXPORTERS}
    build_image(pins["exporters"], f"""FROM {BASE_IMAGE}
COPY {' '.join(EXPORTERS)} /usr/local/bin/
RUN ln -s /bin/busybox /usr/local/bin/busybox
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/host-exporter"]
""", bins, tmp, keep, created)
    return created


def check_build_context(tmp):
    """compose/Dockerfile's context, through the root .dockerignore, with the classic builder:
    no secret file, no target/, no .git."""
    secrets = os.path.join(ROOT, "compose/secrets")
    made_dir = not os.path.isdir(secrets)
    os.makedirs(secrets, exist_ok=True)
    canary = os.path.join(secrets, f"live-canary-{os.getpid()}")
    secret = os.urandom(12).hex()  # a value found nowhere else in the tree
    with open(canary, "w") as f:
        f.write(secret)
    tag = f"llm-stack-live/context-probe:{os.getpid()}"
    dockerfile = os.path.join(tmp, "Dockerfile.context")
    with open(dockerfile, "w") as f:
        f.write(f"FROM {BASE_IMAGE}\nCOPY . /ctx\n")
    try:
        sh("docker", "build", "-q", "-f", dockerfile, "-t", tag, ROOT,
           env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture=True)
        probe = ("test -f /ctx/Cargo.toml && test -f /ctx/compose/Dockerfile && "
                 "test ! -e /ctx/compose/secrets && test ! -e /ctx/target && test ! -e /ctx/.git && "
                 f"! grep -rqs {secret} /ctx")
        r = sh("docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c", probe,
               check=False, capture=True)
        if r.returncode != 0:
            fail("the build context of compose/Dockerfile holds compose/secrets, target/ or .git")
        else:
            log("build context: no secrets, no target/, no .git (classic builder, root .dockerignore)")
    finally:
        sh("docker", "rmi", "-f", tag, check=False, capture=True)
        os.remove(canary)
        if made_dir:
            os.rmdir(secrets)


class Webhook(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Webhook.received.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                 "body": json.loads(body or b"{}")})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def block_outside(gateway):
    """Drops what containers send outside the Docker networks, for the test's duration: every
    packet forwarded from a Docker bridge (docker0, br-*) to one of this host's other interfaces,
    whatever the networks' addresses; IPv6 too where ip6tables has the chain. Traffic to this
    host itself (host.docker.internal) is not forwarded and stays allowed."""
    outside = [n for n in os.listdir("/sys/class/net")
               if n not in ("lo", "docker0") and not n.startswith(("br-", "veth"))]
    tag = ["-m", "comment", "--comment", f"llm-stack-live-{os.getpid()}", "-j", "DROP"]
    rules = [["DOCKER-USER", "-i", bridge, "-o", out] + tag
             for bridge in ("docker0", "br-+") for out in outside]
    for tool in ("iptables", "ip6tables"):
        if sh(tool, "-L", "DOCKER-USER", "-n", check=False, capture=True).returncode != 0:
            if tool == "iptables":
                raise RuntimeError("no DOCKER-USER chain: dockerd must run with its iptables rules")
            continue
        for rule in rules:
            # Removal registered first: a rule must not outlive the test.
            cleanups.append(lambda tool=tool, rule=rule: sh(tool, "-D", *rule, check=False, capture=True))
            sh(tool, "-I", *rule, capture=True)
    log(f"containers reach the Docker networks and this host ({gateway}) only; dropped towards {', '.join(outside)}")


def derived_compose(tmp, compose_env):
    """compose.yaml as this test runs it: Grafana left out (no image here), Prometheus's config
    and the secrets from the run's directory, the GPU exporters without devices, the receivers'
    outside hosts on 127.0.0.1. Written next to compose.yaml, so relative paths still hold."""
    with open(os.path.join(ROOT, "compose/compose.yaml"), encoding="utf-8") as f:
        c = yaml.safe_load(f)
    s = c["services"]
    del s["grafana"]
    del c["volumes"]["grafana-data"]
    s["prometheus"]["volumes"] = [v.replace("../prometheus:", os.path.join(tmp, "prometheus") + ":")
                                  for v in s["prometheus"]["volumes"]]
    for name, spec in c["secrets"].items():
        spec["file"] = os.path.join(compose_env, "secrets", name)
    s["nvidia-exporter"].pop("deploy", None)
    s["rocm-exporter"].pop("devices", None)
    for name in ("nvidia-exporter", "rocm-exporter"):
        s[name].pop("depends_on", None)
    del s["check-nvidia"], s["check-rocm"]
    s["alertmanager"]["extra_hosts"] = s["alertmanager"].get("extra_hosts", []) + [
        "events.pagerduty.com:127.0.0.1", "hooks.slack.com:127.0.0.1", "smtp.example.org:127.0.0.1"]
    path = os.path.join(ROOT, "compose", f".live-{os.getpid()}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(c, f, sort_keys=False)
    cleanups.append(lambda: os.path.exists(path) and os.remove(path))
    return path


def prom_query(expr):
    _, body = http("http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return json.loads(body)["data"]["result"]


def host_truth():
    with open("/proc/stat") as f:
        btime = int(re.search(r"^btime (\d+)", f.read(), re.M).group(1))
    with open("/proc/meminfo") as f:
        memtotal = int(re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024
    return btime, memtotal


def check_access_log(dc):
    """One request through the Ollama proxy (published on 127.0.0.1:11435) with a request id and
    a W3C traceparent: its access-log line in llm-exporter's Docker log, rotated json-file as
    compose says, goes through the logs profile's Alloy pipelines (evaluated here)."""
    rid = f"compose-live-{os.getpid()}"
    traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
    body = json.dumps({"model": "compose-live", "messages": [{"role": "user", "content": "hi"}], "stream": False}).encode()
    try:
        status, _ = http("http://127.0.0.1:11435/api/chat", body,
                         {"Content-Type": "application/json", "X-Request-ID": rid, "traceparent": traceparent})
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        fail(f"a request through the proxy: {e}")
        return
    cid = sh(*dc, "ps", "-q", "llm-exporter", capture=True).stdout.strip()
    info = json.loads(sh("docker", "inspect", cid, capture=True).stdout)[0]
    lc = info["HostConfig"]["LogConfig"]
    if lc.get("Type") != "json-file" or not lc.get("Config", {}).get("max-size"):
        fail(f"llm-exporter's Docker log is not a rotated json-file log: {lc}")
    text = wait_for("the access-log line of the proxied request",
                    lambda: (lambda out: out if rid in out else None)(sh("docker", "logs", cid, check=False, capture=True).stdout), 20)
    if not text:
        return
    errors = []
    n = check_stack_logs.check_container_lines(ROOT, text, rid, errors.append)
    for e in errors:
        fail(f"llm-exporter's log through Alloy's pipelines: {e}")
    if not errors:
        log(f"request {rid} (status {status}): its access-log line, and {n - 1} other lines of llm-exporter's "
            "Docker log, take the Alloy pipelines they should")


def check_leftovers():
    label = f"label=com.docker.compose.project=llmlive{os.getpid()}"
    for kind in ("container", "network", "volume"):
        every = ["-a"] if kind == "container" else []
        listed = sh("docker", kind, "ls", "-q", *every, "--filter", label, check=False, capture=True)
        if listed.returncode != 0:
            fail(f"cannot list {kind}s to check for leftovers")
        elif listed.stdout.split():
            fail(f"{kind}s left behind: {listed.stdout.split()}")


def run(a, tmp):
    with open(os.path.join(ROOT, "compose/compose.yaml"), encoding="utf-8") as f:
        services = yaml.safe_load(f)["services"]
    pins = {"prometheus": services["prometheus"]["image"], "alertmanager": services["alertmanager"]["image"],
            "check-secrets": services["check-secrets"]["image"], "exporters": services["host-exporter"]["image"],
            "bin_dir": a.bin_dir}
    for e in EXPORTERS:
        if not os.access(os.path.join(a.bin_dir, e), os.X_OK):
            raise RuntimeError(f"{a.bin_dir}/{e} is not an executable (cargo build --release first)")
    ensure_daemon(tmp)
    # Runs after everything else is cleaned up, but before a dockerd this test started stops.
    cleanups.append(check_leftovers)
    created = build_images(tmp, pins, a.keep)
    log(f"stand-in images: {', '.join(created) or 'over existing ones, which get their names back'}")
    check_build_context(tmp)

    # host.docker.internal (host-gateway) is the default bridge's address on the host.
    gateway = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", sh("ip", "-4", "-o", "addr", "show", "docker0",
                                                          capture=True).stdout).group(1)
    block_outside(gateway)

    # The fakes the containers reach through host.docker.internal (the bridge's gateway).
    fake = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools/check_stack_fake_llm.py"),
                             "--fixtures", os.path.join(ROOT, "llm-exporter/tests/fixtures"),
                             "--llama-port", "8080", "--ollama-port", "11434", "--address", gateway],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "fake-llm.log"), "w"))
    cleanups.append(fake.kill)
    hook = ThreadingHTTPServer((gateway, 5001), Webhook)
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    cleanups.append(hook.shutdown)
    wait_for("the fake model servers", lambda: http(f"http://{gateway}:8080/health")[0] == 200, 20)

    # The first-up step, as a user runs it; then the values the checks need.
    shutil.copytree(os.path.join(ROOT, "prometheus"), os.path.join(tmp, "prometheus"))
    compose_env = os.path.join(tmp, "compose")
    os.makedirs(compose_env)
    sh("bash", os.path.join(ROOT, "compose/setup.sh"), "--compose-dir", compose_env,
       "--targets-dir", os.path.join(tmp, "prometheus/targets"), capture=True)
    with open(os.path.join(compose_env, "secrets/alertmanager_webhook_token"), "w") as f:
        f.write(TOKEN)
    # This host has no GPU: scrape the GPU exporters anyway, to see them report that.
    for job, target in (("nvidia", "nvidia-exporter:10471"), ("rocm", "rocm-exporter:10472")):
        with open(os.path.join(tmp, f"prometheus/targets/{job}.yml"), "w") as f:
            f.write(f"- targets: ['{target}']\n  labels: {{instance: docker-host}}\n")
    env_file = os.path.join(compose_env, ".env")
    with open(env_file) as f:
        env_text = f.read()
    log("setup.sh wrote: " + ", ".join(l for l in env_text.splitlines() if l and not l.startswith("#")))
    if "llama=http://host.docker.internal:8080" not in env_text or "ollama=" not in env_text:
        fail("setup.sh did not find the model servers listening on 8080 and 11434")

    compose_file = derived_compose(tmp, compose_env)
    project = f"llmlive{os.getpid()}"
    dc = ["docker-compose", "-p", project, "-f", compose_file, "--env-file", env_file,
          "--profile", "monitoring", "--profile", "nvidia", "--profile", "rocm"]
    cleanups.append(lambda: sh(*dc, "down", "-v", "--remove-orphans", "-t", "5", check=False, capture=True))
    started = time.time()
    sh(*dc, "up", "-d", "--no-build", capture=True, timeout=300)

    # Every service healthy; the one-shot check exited 0.
    def states():
        ids = sh(*dc, "ps", "-a", "-q", capture=True).stdout.split()
        out = {}
        for cid in ids:
            info = json.loads(sh("docker", "inspect", cid, capture=True).stdout)[0]
            name = info["Config"]["Labels"].get("com.docker.compose.service")
            st = info["State"]
            out[name] = (st.get("Health", {}).get("Status") or st["Status"], st.get("ExitCode"))
        return out
    want = {"prometheus", "alertmanager", "host-exporter", "llm-exporter", "nvidia-exporter", "rocm-exporter"}

    def all_healthy():
        st = states()
        ok = all(st.get(n, ("",))[0] == "healthy" for n in want)
        return st if ok and st.get("check-secrets") == ("exited", 0) else None
    got = wait_for("every service healthy", all_healthy, 150, every=2)
    if not got:
        log(f"states: {states()}")
        for n in sorted(want):
            log(f"logs of {n}:\n" + sh(*dc, "logs", "--tail", "20", n, check=False, capture=True).stdout)
        return
    log(f"all services healthy {time.time() - started:.0f} s after up")

    # Every target up.
    def targets_up():
        _, body = http("http://127.0.0.1:9090/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in active}
        if {"host", "llm", "nvidia", "rocm", "llama-server", "prometheus", "alertmanager"} - jobs:
            return None
        return active if all(t["health"] == "up" for t in active) else None
    active = wait_for("every Prometheus target up", targets_up, 60, every=2)
    if not active:
        _, body = http("http://127.0.0.1:9090/api/v1/targets")
        for t in json.loads(body)["data"]["activeTargets"]:
            log(f"target {t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t.get('lastError')}")
    else:
        log(f"{len(active)} targets up: " + ", ".join(sorted(t["labels"]["job"] for t in active)))

    # host-exporter in its container sees the host.
    btime, memtotal = host_truth()
    for expr, truth in (('node_boot_time_seconds{job="host"}', btime), ('node_memory_MemTotal_bytes{job="host"}', memtotal)):
        r = wait_for(expr, lambda expr=expr: prom_query(expr), 30)
        if r and float(r[0]["value"][1]) != truth:
            fail(f"{expr} = {r[0]['value'][1]}, the host's is {truth}")
    # The GPU exporters, without devices, are up and say their backend is down.
    for expr in ('nvidia_up{job="nvidia"}', 'rocm_up{job="rocm"}'):
        r = wait_for(expr, lambda expr=expr: prom_query(expr), 30)
        if r and any(float(x["value"][1]) != 0 for x in r):
            fail(f"{expr}: {r}, want 0 on a host without GPUs")
    # The llama model server behind the proxy and poller.
    if not wait_for("llm_up of the llama upstream", lambda: [x for x in prom_query('llm_up{upstream="llama"}') if x["value"][1] == "1"], 30):
        pass

    # No rule in error, once every group has run.
    # Groups of a 5-minute interval (the 7- and 30-day windows) may first run minutes after the
    # start: wait for the others, then check every rule that has run.
    def rules_evaluated():
        _, body = http("http://127.0.0.1:9090/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        fast = [g for g in groups if g.get("interval", 60) <= 60]
        return groups if all(g.get("lastEvaluation", "0001").startswith("2") for g in fast) else None
    groups = wait_for("every rule group of 1 minute or less evaluated", rules_evaluated, 60, every=2)
    for g in groups or []:
        for r in g["rules"]:
            if r.get("health") not in ("ok", "unknown"):
                fail(f"rule {r.get('name')} in {g['name']}: {r.get('health')} {r.get('lastError')}")
    if groups:
        log(f"{sum(len(g['rules']) for g in groups)} rules in {len(groups)} groups, none in error")

    # An alert through Alertmanager to the default webhook receiver, with its bearer token.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    alert = [{"labels": {"alertname": "ComposeLiveCheck", "severity": "info", "instance": "docker-host"},
              "annotations": {"summary": "compose live run"}, "startsAt": now}]
    http("http://127.0.0.1:9093/api/v2/alerts", json.dumps(alert).encode(), {"Content-Type": "application/json"})
    got = wait_for("the alert at the webhook receiver", lambda: [r for r in Webhook.received
                   if "ComposeLiveCheck" in json.dumps(r["body"])], 60)
    if got:
        if got[0]["auth"] != f"Bearer {TOKEN}":
            fail(f"webhook: Authorization {got[0]['auth']!r}, want the token from the secret file")
        else:
            log("alert delivered to the webhook receiver with its bearer token")

    # The logs profile's pipelines on llm-exporter's real access log.
    check_access_log(dc)

    # The GPU profiles' checks, alone as on a host without GPUs: they fail and say why.
    real = ["docker-compose", "-p", project, "-f", os.path.join(ROOT, "compose/compose.yaml"),
            "--env-file", env_file, "--profile", "nvidia", "--profile", "rocm"]
    # `run` creates the project's volumes of this file (grafana-data too): remove them after.
    cleanups.append(lambda: sh(*real, "down", "-v", "--remove-orphans", check=False, capture=True))
    for check, needle in (("check-rocm", "no /dev/kfd"), ("check-nvidia", "NVIDIA")):
        r = sh(*real, "run", "--rm", "--no-deps", check, check=False, capture=True)
        if r.returncode == 0 or needle not in r.stdout:
            fail(f"{check} on a host without the devices: exit {r.returncode}, output {r.stdout[-500:]!r}")
    log("check-rocm and check-nvidia fail on this host, naming what it lacks")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--keep", action="store_true", help="keep the stand-in images and the run's directory")
    a = ap.parse_args()
    a.bin_dir = os.path.abspath(a.bin_dir)
    if os.geteuid() != 0:
        print("check_compose_live.py needs root (dockerd, iptables, debootstrap)", file=sys.stderr)
        return 1
    for cmd in ("docker", "dockerd", "docker-compose", "debootstrap", "iptables", "prometheus", "prometheus-alertmanager"):
        if not shutil.which(cmd):
            print(f"check_compose_live.py needs {cmd}", file=sys.stderr)
            return 1
    tmp = tempfile.mkdtemp(prefix="compose-live-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    try:
        run(a, tmp)
    except Exception as e:  # noqa: BLE001 - reported as a failure, cleanup still runs
        fail(f"{type(e).__name__}: {e}")
    finally:
        # Nothing may interrupt the clean-up (a second Ctrl-C would leave the DROP rule in).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for step in reversed(cleanups):
            try:
                step()
            except BaseException as e:  # noqa: BLE001
                log(f"cleanup: {e!r}")
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        log(f"{len(failures)} failure(s) in {time.time() - started:.0f} s")
        return 1
    log(f"all checks passed in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
