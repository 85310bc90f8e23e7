#!/usr/bin/env python3
"""Checks behind tools/check_packaging.sh that are easier in Python than in bash.

    checks.py exporters ROOT                  exporter crates of the workspace: NAME VERSION per line
    checks.py unit-policy UNIT NAME           the hardening the issue asks for, per exporter
    checks.py k8s ROOT PROMRULE_JSON          the manifests: offline schemas + cross-checks
    checks.py rules-equal PROMRULE_JSON DIR   the PrometheusRule carries exactly DIR's rules
    checks.py rules-to-file PROMRULE_JSON OUT the PrometheusRule's groups as a Prometheus rule file
    checks.py self-test ROOT                  every check above rejects a broken input

Each prints "FAIL: ..." lines and exits 1 on a failure.
"""
import copy
import glob
import json
import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "crd-schemas")
# Kubernetes version whose schemas the core objects are validated against (kubernetes-validate
# bundles them). 1.29 is the oldest release still common in managed clusters that has every
# field used here.
K8S_VERSIONS = ("1.29.0", "1.33.0")


class Failures(list):
    def add(self, msg):
        self.append(msg)

    def report(self):
        for msg in self:
            print("FAIL: " + msg)
        return 1 if self else 0


# ---------------------------------------------------------------------------- exporters


def exporters(root):
    """Workspace members with a binary target, from cargo metadata (the members of Cargo.toml)."""
    out = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    meta = json.loads(out)
    members = set(meta["workspace_members"])
    for pkg in sorted(meta["packages"], key=lambda p: p["name"]):
        if pkg["id"] in members and any("bin" in t["kind"] for t in pkg["targets"]):
            print(pkg["name"], pkg["version"])
    return 0


# ---------------------------------------------------------------------------- unit policy


def parse_unit(path):
    """systemd unit file -> {section: {key: [values]}} (comments and continuations handled)."""
    sections, current, pending = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + line
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                current = sections.setdefault(stripped[1:-1], {})
                continue
            key, _, value = stripped.partition("=")
            if current is None:
                raise ValueError(f"{path}: {key} outside any section")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_policy(path, name, failures=None):
    own = failures is None
    failures = Failures() if own else failures
    try:
        unit = parse_unit(path)
    except (OSError, ValueError) as e:
        failures.add(str(e))
        return failures.report() if own else None
    svc = unit.get("Service", {})

    def last(key):
        values = svc.get(key) or [""]
        return values[-1]

    def need(key, allowed, why):
        if last(key) not in allowed:
            failures.add(f"{path}: {key}={last(key) or '(unset)'}, want {' or '.join(allowed)} ({why})")

    truthy = ("yes", "true", "on", "1")
    if last("DynamicUser") not in truthy:
        user = last("User")
        if not user or user == "root" or user == "0":
            failures.add(f"{path}: runs as root: want its own User= or DynamicUser=yes")
        elif user != name:
            failures.add(f"{path}: User={user}, want {name} (the user the package creates)")
    need("ProtectSystem", ("strict",), "read-only /usr, /boot, /etc and the rest")
    need("ProtectHome", ("yes", "true", "read-only", "tmpfs"), "no access to home directories")
    need("NoNewPrivileges", truthy, "no setuid escalation")
    need("PrivateTmp", truthy, "own /tmp")
    need("Restart", ("on-failure", "always"), "restart on failure")
    if last("CapabilityBoundingSet") != "":
        failures.add(f"{path}: CapabilityBoundingSet={last('CapabilityBoundingSet')}, want it empty (no capability)")
    exec_start = last("ExecStart")
    if f"/usr/bin/{name}" not in exec_start.split()[0:1] and not exec_start.startswith(f"/usr/bin/{name} "):
        failures.add(f"{path}: ExecStart={exec_start!r} does not run /usr/bin/{name}")
    if f"--config.file=/etc/{name}/" not in exec_start:
        failures.add(f"{path}: ExecStart does not read its defaults from /etc/{name}/ (--config.file)")
    env_files = [v.lstrip("-") for v in svc.get("EnvironmentFile", [])]
    if f"/etc/default/{name}" not in env_files:
        failures.add(f"{path}: no EnvironmentFile=-/etc/default/{name}")
    if "multi-user.target" not in " ".join(unit.get("Install", {}).get("WantedBy", [])):
        failures.add(f"{path}: not WantedBy=multi-user.target (nothing to enable)")

    # Device access: the minimum for each exporter.
    allow = [v.split()[0] for v in svc.get("DeviceAllow", []) if v]
    private_devices = last("PrivateDevices") in truthy
    if name == "nvidia-exporter":
        need("DevicePolicy", ("closed", "strict"), "only the NVIDIA devices")
        if private_devices:
            failures.add(f"{path}: PrivateDevices=yes hides /dev/nvidia*")
        want = {"/dev/nvidiactl", "char-nvidia"}
        if not want <= set(allow):
            failures.add(f"{path}: DeviceAllow lacks {sorted(want - set(allow))}")
        stray = [a for a in allow if "nvidia" not in a]
        if stray:
            failures.add(f"{path}: DeviceAllow has non-NVIDIA devices {stray}")
    elif name == "rocm-exporter":
        need("DevicePolicy", ("closed", "strict"), "only /dev/kfd and /dev/dri")
        if private_devices:
            failures.add(f"{path}: PrivateDevices=yes hides /dev/kfd and /dev/dri")
        want = {"/dev/kfd", "char-drm"}
        if set(allow) != want:
            failures.add(f"{path}: DeviceAllow={sorted(allow)}, want exactly {sorted(want)} (/dev/kfd and /dev/dri/*)")
    else:
        if not private_devices:
            failures.add(f"{path}: PrivateDevices=yes wanted ({name} needs no device)")
        if allow:
            failures.add(f"{path}: DeviceAllow={allow}, but {name} needs no device")
    if name == "host-exporter":
        # node_exporter's needs: /proc and /sys readable, statfs on every mount.
        if last("ProtectProc") not in ("", "default") or last("ProcSubset") not in ("", "all"):
            failures.add(f"{path}: ProtectProc/ProcSubset hide /proc from host-exporter")
        if last("ProtectHome") not in ("read-only",):
            failures.add(f"{path}: ProtectHome={last('ProtectHome')}: host-exporter must see /home read-only to statfs its mounts")
        for key in ("InaccessiblePaths", "TemporaryFileSystem"):
            if svc.get(key):
                failures.add(f"{path}: {key} hides mounts from host-exporter's statfs")
    return failures.report() if own else None


# ---------------------------------------------------------------------------- kubernetes


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomize_docs(kdir):
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml"), encoding="utf-8"))
    docs = []
    for res in kust.get("resources", []):
        docs.extend(load_docs(os.path.join(kdir, res)))
    return docs


def crd_validator(kind):
    import jsonschema

    with open(os.path.join(SCHEMAS, kind.lower() + ".json"), encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_core(docs, failures, where, versions=K8S_VERSIONS):
    """Core objects against the Kubernetes OpenAPI schemas, strict (unknown fields rejected)."""
    import kubernetes_validate

    for version in versions:
        for doc in docs:
            ident = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.add(f"{ident}: {e.message} at {'/'.join(str(p) for p in e.path)}")
            except Exception as e:  # unknown kind, schema not found, ...
                failures.add(f"{ident}: {type(e).__name__}: {e}")


def validate_crs(docs, failures, where):
    for doc in docs:
        kind = doc.get("kind")
        ident = f"{where}: {kind}/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion") != "monitoring.coreos.com/v1":
            failures.add(f"{ident}: apiVersion {doc.get('apiVersion')!r}, want monitoring.coreos.com/v1")
        if not (doc.get("metadata") or {}).get("name"):
            failures.add(f"{ident}: no metadata.name")
        try:
            validator = crd_validator(kind)
        except FileNotFoundError:
            failures.add(f"{ident}: no schema for kind {kind}")
            continue
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            failures.add(f"{ident}: {err.message[:300]} at /{'/'.join(str(p) for p in err.path)}")


def prometheus_job_names(prom_dir):
    path = os.path.join(prom_dir, "prometheus.yml")
    if not os.path.isfile(path):
        return None
    config = yaml.safe_load(open(path, encoding="utf-8")) or {}
    return {sc.get("job_name") for sc in config.get("scrape_configs") or []}


def cross_check(docs, exporter_names, failures, prom_dir):
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), {})[doc["metadata"]["name"]] = doc
    jobs = prometheus_job_names(prom_dir) if prom_dir else None
    for name in exporter_names:
        ds = by_kind.get("DaemonSet", {}).get(name)
        svc = by_kind.get("Service", {}).get(name)
        sm = by_kind.get("ServiceMonitor", {}).get(name)
        for kind, obj in (("DaemonSet", ds), ("Service", svc), ("ServiceMonitor", sm)):
            if obj is None:
                failures.add(f"kubernetes: no {kind} named {name}")
        if not (ds and svc and sm):
            continue
        pod = ds["spec"]["template"]
        pod_labels = pod["metadata"].get("labels", {})
        sel = ds["spec"]["selector"].get("matchLabels", {})
        if any(pod_labels.get(k) != v for k, v in sel.items()):
            failures.add(f"kubernetes: DaemonSet {name}: selector {sel} does not match its pod labels")
        if any(pod_labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
            failures.add(f"kubernetes: Service {name} selects {svc['spec'].get('selector')}, not the DaemonSet's pods")
        svc_labels = svc["metadata"].get("labels", {})
        if any(svc_labels.get(k) != v for k, v in sm["spec"]["selector"].get("matchLabels", {}).items()):
            failures.add(f"kubernetes: ServiceMonitor {name} does not select Service {name}")
        ns = svc["metadata"].get("namespace")
        if ns not in (sm["spec"].get("namespaceSelector") or {}).get("matchNames", [ns]):
            failures.add(f"kubernetes: ServiceMonitor {name} does not look in namespace {ns}")
        port_names = {p.get("name") for p in svc["spec"].get("ports", [])}
        container_ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("port") not in port_names:
                failures.add(f"kubernetes: ServiceMonitor {name} scrapes port {ep.get('port')!r}, not a port of the Service")
        for p in svc["spec"].get("ports", []):
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in container_ports:
                failures.add(f"kubernetes: Service {name} targets port {p['targetPort']!r}, not a container port")
        job_label = sm["spec"].get("jobLabel")
        job = svc_labels.get(job_label) if job_label else svc["metadata"]["name"]
        if jobs is not None and job not in jobs:
            failures.add(f"kubernetes: {name} is scraped as job {job!r}, but the compose stack's prometheus.yml has jobs {sorted(j for j in jobs if j)}: the rules would not match")
        # GPU exporters only where that GPU is.
        terms = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
        keys = [e.get("key", "") for t in terms for e in t.get("matchExpressions", [])]
        keys += list((pod["spec"].get("nodeSelector") or {}).keys())
        if name == "nvidia-exporter":
            if "nvidia.com/gpu.present" not in keys or any("1002" in k or "amd" in k for k in keys):
                failures.add(f"kubernetes: DaemonSet {name} is not limited to NVIDIA nodes (nvidia.com/gpu.present): {keys}")
            if any(not t.get("matchExpressions") for t in terms):
                failures.add(f"kubernetes: DaemonSet {name}: an empty node selector term matches every node")
        if name == "rocm-exporter":
            if not any("amd" in k or "1002" in k for k in keys) or any("nvidia" in k or "10de" in k for k in keys):
                failures.add(f"kubernetes: DaemonSet {name} is not limited to AMD nodes: {keys}")
            if any(not t.get("matchExpressions") for t in terms):
                failures.add(f"kubernetes: DaemonSet {name}: an empty node selector term matches every node")
        for c in pod["spec"]["containers"]:
            sc = c.get("securityContext") or {}
            if sc.get("privileged") or sc.get("allowPrivilegeEscalation", True):
                failures.add(f"kubernetes: {name}/{c['name']}: privileged or allowPrivilegeEscalation not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                failures.add(f"kubernetes: {name}/{c['name']}: capabilities not dropped")
        if not ((pod["spec"].get("securityContext") or {}).get("runAsNonRoot")):
            failures.add(f"kubernetes: {name}: runAsNonRoot not set")
    extra = set(by_kind.get("DaemonSet", {})) - set(exporter_names)
    if extra:
        failures.add(f"kubernetes: DaemonSets for no exporter crate: {sorted(extra)}")


def k8s(root, promrule_json, exporter_names=None, failures=None, kdir=None, prom_dir=None, versions=K8S_VERSIONS):
    own = failures is None
    failures = Failures() if own else failures
    kdir = kdir or os.path.join(root, "deploy", "kubernetes")
    prom_dir = prom_dir or os.path.join(root, "prometheus")
    if exporter_names is None:
        exporter_names = [l.split()[0] for l in subprocess.run(
            [sys.executable, __file__, "exporters", root], check=True, capture_output=True, text=True).stdout.splitlines()]
    docs = kustomize_docs(kdir)
    core = [d for d in docs if not str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    crs = [d for d in docs if str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    validate_core(core, failures, kdir, versions)
    if promrule_json:
        with open(promrule_json, encoding="utf-8") as f:
            crs.append(json.load(f))
    validate_crs(crs, failures, kdir)
    cross_check(docs, exporter_names, failures, prom_dir)
    return failures.report() if own else None


# ---------------------------------------------------------------------------- rules


def rule_groups_of_dir(prom_dir):
    """The rules of prometheus/, read independently of the generator: every YAML file there
    with a top-level `groups` list, whatever prometheus.yml says."""
    groups = []
    for path in sorted(glob.glob(os.path.join(prom_dir, "**", "*.y*ml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if isinstance(doc, dict) and isinstance(doc.get("groups"), list):
            groups.extend((os.path.relpath(path, prom_dir), g) for g in doc["groups"])
    return groups


def canonical(obj):
    return json.dumps(obj, sort_keys=True)


def rules_equal(promrule_json, prom_dir, failures=None):
    own = failures is None
    failures = Failures() if own else failures
    with open(promrule_json, encoding="utf-8") as f:
        rule = json.load(f)
    if rule.get("kind") != "PrometheusRule":
        failures.add(f"{promrule_json}: kind {rule.get('kind')!r}, not PrometheusRule")
        return failures.report() if own else None
    carried = (rule.get("spec") or {}).get("groups") or []
    expected = rule_groups_of_dir(prom_dir)
    if not expected:
        failures.add(f"{prom_dir}: no rule files (nothing to compare)")
    want = {}
    for path, g in expected:
        want.setdefault(g.get("name"), []).append((path, g))
    have = {}
    for g in carried:
        have.setdefault(g.get("name"), []).append(g)
    for gname in sorted(set(want) | set(have), key=str):
        w, h = want.get(gname, []), have.get(gname, [])
        if len(w) != len(h):
            failures.add(f"group {gname!r}: {len(w)} in {prom_dir} ({', '.join(p for p, _ in w) or 'none'}), {len(h)} in the PrometheusRule")
            continue
        for (path, wg), hg in zip(w, h):
            if canonical(wg) != canonical(hg):
                wr = [canonical(r) for r in wg.get("rules") or []]
                hr = [canonical(r) for r in hg.get("rules") or []]
                missing = [json.loads(r).get("alert") or json.loads(r).get("record") for r in wr if r not in hr]
                extra = [json.loads(r).get("alert") or json.loads(r).get("record") for r in hr if r not in wr]
                failures.add(f"group {gname!r} ({path}) differs: missing or changed {missing}, extra {extra}"
                             + ("" if missing or extra else " (group settings or rule order)"))
    n_rules = sum(len(g.get("rules") or []) for g in carried)
    if own and not failures:
        print(f"PrometheusRule carries exactly the {len(expected)} groups / {n_rules} rules of {prom_dir}")
    return failures.report() if own else None


def rules_to_file(promrule_json, out):
    with open(promrule_json, encoding="utf-8") as f:
        rule = json.load(f)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f, sort_keys=False, allow_unicode=True)
    return 0


# ---------------------------------------------------------------------------- self-test


def self_test(root):
    """Every check above must reject a broken input: run each on a mutated copy."""
    problems = []

    def expect_fail(label, fn):
        f = Failures()
        try:
            fn(f)
        except Exception as e:  # a crash is not a detection
            problems.append(f"self-test {label}: crashed instead of reporting: {type(e).__name__}: {e}")
            return
        if not f:
            problems.append(f"self-test {label}: the broken input passed")
        else:
            print(f"self-test: {label}: caught: {f[0][:160]}")

    def expect_pass(label, fn):
        f = Failures()
        fn(f)
        if f:
            problems.append(f"self-test {label}: the good input failed: {f[:3]}")

    tmp = tempfile.mkdtemp(prefix="check-packaging-selftest-")
    try:
        # Unit policy: drop one hardening line at a time.
        src = os.path.join(root, "packaging", "systemd", "rocm-exporter.service")
        text = open(src, encoding="utf-8").read()
        expect_pass("unit policy (rocm-exporter as shipped)", lambda f: unit_policy(src, "rocm-exporter", f))
        for needle, repl in (
            ("ProtectSystem=strict", "ProtectSystem=full"),
            ("ProtectHome=yes", ""),
            ("NoNewPrivileges=yes", "NoNewPrivileges=no"),
            ("PrivateTmp=yes", ""),
            ("Restart=on-failure", "Restart=no"),
            ("User=rocm-exporter", "User=root"),
            ("DeviceAllow=char-drm rw", "DeviceAllow=char-drm rw\nDeviceAllow=/dev/mem r"),
            ("DevicePolicy=closed", "DevicePolicy=auto"),
            ("CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_SYS_ADMIN\n"),
        ):
            assert needle in text, needle
            bad = os.path.join(tmp, "rocm-exporter.service")
            open(bad, "w", encoding="utf-8").write(text.replace(needle, repl))
            expect_fail(f"unit policy without {needle!r}", lambda f, bad=bad: unit_policy(bad, "rocm-exporter", f))

        # Kubernetes: a copy of deploy/kubernetes with one defect at a time.
        kdir = os.path.join(root, "deploy", "kubernetes")
        names = ["host-exporter", "nvidia-exporter", "rocm-exporter", "llm-exporter"]
        good_rule = os.path.join(tmp, "rule.json")
        mini_prom = os.path.join(tmp, "prometheus")
        os.makedirs(os.path.join(mini_prom, "rules"))
        with open(os.path.join(mini_prom, "rules", "a.yml"), "w", encoding="utf-8") as f:
            f.write(MINI_RULES)
        gen = os.path.join(kdir, "generate-prometheusrule.py")
        subprocess.run([sys.executable, gen, "--prometheus-dir", mini_prom, "-o", good_rule], check=True)

        def mutated(label, edit, kind, name):
            mdir = os.path.join(tmp, "k-" + str(abs(hash(label))))
            subprocess.run(["cp", "-r", kdir, mdir], check=True)
            for fname in os.listdir(mdir):
                if not fname.endswith(".yaml") or fname == "kustomization.yaml":
                    continue
                path = os.path.join(mdir, fname)
                docs = load_docs(path)
                for d in docs:
                    if d.get("kind") == kind and d["metadata"]["name"] == name:
                        edit(d)
                with open(path, "w", encoding="utf-8") as f:
                    yaml.safe_dump_all(docs, f)
            return mdir

        expect_pass("kubernetes manifests as shipped",
                    lambda f: k8s(root, good_rule, names, f, kdir=kdir, prom_dir=mini_prom))
        cases = [
            ("unknown DaemonSet field", lambda d: d["spec"].__setitem__("nodeSelectr", {}), "DaemonSet", "host-exporter"),
            ("wrong type in a container", lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("args", "x"), "DaemonSet", "llm-exporter"),
            ("unknown ServiceMonitor field", lambda d: d["spec"]["endpoints"][0].__setitem__("intervall", "15s"), "ServiceMonitor", "host-exporter"),
            ("ServiceMonitor on a missing port", lambda d: d["spec"]["endpoints"][0].__setitem__("port", "web"), "ServiceMonitor", "rocm-exporter"),
            ("nvidia on every node", lambda d: d["spec"]["template"]["spec"].pop("affinity"), "DaemonSet", "nvidia-exporter"),
            ("rocm on NVIDIA nodes", lambda d: d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].append({"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}), "DaemonSet", "rocm-exporter"),
            ("Service selecting nothing", lambda d: d["spec"].__setitem__("selector", {"app": "nope"}), "Service", "llm-exporter"),
            ("privileged container", lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].__setitem__("privileged", True), "DaemonSet", "host-exporter"),
        ]
        for label, edit, kind, name in cases:
            mdir = mutated(label, edit, kind, name)
            expect_fail(f"kubernetes: {label}", lambda f, mdir=mdir: k8s(root, good_rule, names, f, kdir=mdir, prom_dir=mini_prom, versions=K8S_VERSIONS[-1:]))
        # A job name the compose stack does not have.
        with open(os.path.join(mini_prom, "prometheus.yml"), "w", encoding="utf-8") as f:
            f.write("scrape_configs:\n  - job_name: node\n")
        expect_fail("kubernetes: job names unlike prometheus.yml's",
                    lambda f: k8s(root, good_rule, names, f, kdir=kdir, prom_dir=mini_prom))
        os.remove(os.path.join(mini_prom, "prometheus.yml"))
        # A PrometheusRule with an unknown rule field.
        bad_rule = os.path.join(tmp, "bad-rule.json")
        rule = json.load(open(good_rule, encoding="utf-8"))
        rule["spec"]["groups"][0]["rules"][0]["severity"] = "critical"
        json.dump(rule, open(bad_rule, "w", encoding="utf-8"))
        expect_fail("PrometheusRule schema: unknown rule field", lambda f: validate_crs([rule], f, "self-test"))

        # Rules: the generated rule equals the files; each drift is caught.
        expect_pass("rules equal (generated)", lambda f: rules_equal(good_rule, mini_prom, f))
        for label, edit in (
            ("a rule dropped", lambda r: r["spec"]["groups"][1]["rules"].pop()),
            ("an expression changed", lambda r: r["spec"]["groups"][0]["rules"][0].__setitem__("expr", "vector(2)")),
            ("a group dropped", lambda r: r["spec"]["groups"].pop()),
            ("a group duplicated", lambda r: r["spec"]["groups"].append(copy.deepcopy(r["spec"]["groups"][0]))),
            ("a label added", lambda r: r["spec"]["groups"][1]["rules"][0]["labels"].__setitem__("team", "x")),
            ("rules reordered", lambda r: r["spec"]["groups"][1]["rules"].reverse()),
        ):
            rule = json.load(open(good_rule, encoding="utf-8"))
            edit(rule)
            path = os.path.join(tmp, "mut.json")
            json.dump(rule, open(path, "w", encoding="utf-8"))
            expect_fail(f"rules: {label}", lambda f, path=path: rules_equal(path, mini_prom, f))
        # A rule file added after generation: the stale PrometheusRule no longer matches.
        with open(os.path.join(mini_prom, "rules", "b.yml"), "w", encoding="utf-8") as f:
            f.write("groups:\n  - name: extra\n    rules:\n      - record: x:y\n        expr: vector(1)\n")
        expect_fail("rules: a rule file added after generation", lambda f: rules_equal(good_rule, mini_prom, f))
        # ...and regenerating picks it up.
        subprocess.run([sys.executable, gen, "--prometheus-dir", mini_prom, "-o", good_rule], check=True)
        expect_pass("rules equal (regenerated)", lambda f: rules_equal(good_rule, mini_prom, f))
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
    for p in problems:
        print("FAIL: " + p)
    if not problems:
        print("self-test: every check rejected each broken input and accepted the good ones")
    return 1 if problems else 0


MINI_RULES = """\
groups:
  - name: mini-recording
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
  - name: mini-alerts
    rules:
      - alert: ExporterDown
        expr: up == 0
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: 'Exporter {{ $labels.instance }} is down'
      - alert: ExporterFlapping
        expr: changes(up[10m]) > 4
        keep_firing_for: 5m
        labels: {severity: info}
"""


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "exporters":
        return exporters(*args)
    if cmd == "unit-policy":
        return unit_policy(*args)
    if cmd == "k8s":
        return k8s(args[0], args[1] if len(args) > 1 and args[1] else None)
    if cmd == "rules-equal":
        return rules_equal(*args)
    if cmd == "rules-to-file":
        return rules_to_file(*args)
    if cmd == "self-test":
        return self_test(*args)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
