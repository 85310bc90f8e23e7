#!/usr/bin/env python3
"""Prints a PrometheusRule (monitoring.coreos.com/v1) carrying the compose stack's rules.

The rule files are the ones prometheus/prometheus.yml loads (its `rule_files`, globs relative
to prometheus/), read when this runs, so the Kubernetes rules cannot drift from the compose
stack's: there is no copy in the repository. Without a prometheus.yml (or with no
`rule_files` in it), every YAML file under the directory with a top-level `groups` list is
taken. Groups are copied as they are, file by file in the order loaded; a group name used
twice is an error (the Prometheus Operator loads one PrometheusRule as one rule file).

    python3 deploy/kubernetes/generate-prometheusrule.py | kubectl apply -f -
    python3 deploy/kubernetes/generate-prometheusrule.py --prometheus-dir DIR --namespace NS \
        --label release=kube-prometheus-stack    # labels the operator's ruleSelector wants

Output is JSON (which kubectl and YAML readers take); needs PyYAML to read the rule files.
"""
import argparse
import glob
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "prometheus"))


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_files(prom_dir):
    """The rule files, in the order Prometheus loads them."""
    config_path = os.path.join(prom_dir, "prometheus.yml")
    patterns = None
    if os.path.isfile(config_path):
        config = load_yaml(config_path) or {}
        patterns = config.get("rule_files") or None
    if patterns:
        files = []
        for pattern in patterns:
            full = pattern if os.path.isabs(pattern) else os.path.join(prom_dir, pattern)
            matches = sorted(glob.glob(full))
            if not matches:
                raise SystemExit(f"generate-prometheusrule: {config_path}: rule_files entry {pattern!r} matches no file")
            files.extend(m for m in matches if m not in files)
        return files
    files = []
    for dirpath, dirnames, filenames in os.walk(prom_dir):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith((".yml", ".yaml")):
                path = os.path.join(dirpath, name)
                doc = load_yaml(path)
                if isinstance(doc, dict) and isinstance(doc.get("groups"), list):
                    files.append(path)
    return files


def build(prom_dir, name, namespace, labels):
    files = rule_files(prom_dir)
    if not files:
        raise SystemExit(f"generate-prometheusrule: no rule files under {prom_dir}")
    groups, seen = [], {}
    for path in files:
        doc = load_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            raise SystemExit(f"generate-prometheusrule: {path}: not a rule file (no top-level groups list)")
        for group in doc["groups"]:
            gname = group.get("name")
            if gname in seen:
                raise SystemExit(f"generate-prometheusrule: group {gname!r} is in both {seen[gname]} and {path}")
            seen[gname] = path
            groups.append(group)
    rel = [os.path.relpath(p, os.path.dirname(prom_dir)) for p in files]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "llm-host-exporters", **labels},
            "annotations": {"llm-host-exporters/rule-files": ",".join(rel)},
        },
        "spec": {"groups": groups},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prometheus-dir", default=DEFAULT_DIR, help="the compose stack's prometheus/ (default: the repository's)")
    ap.add_argument("--name", default="llm-host-exporters")
    ap.add_argument("--namespace", default="monitoring")
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra metadata label (repeatable)")
    ap.add_argument("-o", "--output", help="write here instead of stdout")
    args = ap.parse_args()
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    rule = build(os.path.abspath(args.prometheus_dir), args.name, args.namespace, labels)
    text = json.dumps(rule, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
