#!/usr/bin/env python3
"""Writes crd-schemas/{servicemonitor,prometheusrule}.json: JSON schemas of the Prometheus
Operator's monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule, vendored so that the
manifests validate offline.

Source: PyPI's `cloudcoil-models-prometheus-operator` (0.80.1.0 = prometheus-operator v0.80.1),
pydantic models generated from the operator's CRD definitions. Pydantic writes their JSON
schema; this script then makes it strict as kubectl's server-side field validation is (an
unknown field is an error: `additionalProperties: false` on every object with known
properties) and keeps only what validation needs (no titles or descriptions; Go's leading "^(?i)" in
patterns written as "(?i)^" for Python's re). Run it again to move to another version:

    python3 -m venv /tmp/cc && /tmp/cc/bin/pip install 'cloudcoil-models-prometheus-operator==0.80.1.0'
    /tmp/cc/bin/python tools/check_packaging/vendor_crd_schemas.py
"""
import json
import os
import sys

from cloudcoil.models.prometheus_operator import v1

try:
    from importlib.metadata import version
    SOURCE = "cloudcoil-models-prometheus-operator " + version("cloudcoil-models-prometheus-operator")
except Exception:  # pragma: no cover
    SOURCE = "cloudcoil-models-prometheus-operator"


def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        # Go's regexp takes "^(?i)..."; Python's re wants global flags first.
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            node["pattern"] = "(?i)^" + pattern[len("^(?i)"):]
        for key in ("title", "description"):
            if isinstance(node.get(key), str):
                del node[key]
        for value in list(node.values()):
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")
    os.makedirs(out, exist_ok=True)
    for cls, kind in ((v1.ServiceMonitor, "servicemonitor"), (v1.PrometheusRule, "prometheusrule")):
        schema = strict(cls.model_json_schema(by_alias=True, mode="validation"))
        schema["$comment"] = f"monitoring.coreos.com/v1 {cls.__name__}, from {SOURCE}; strict (tools/check_packaging/vendor_crd_schemas.py)"
        path = os.path.join(out, kind + ".json")
        with open(path, "w") as f:
            json.dump(schema, f, indent=1, sort_keys=True)
            f.write("\n")
        print(path, os.path.getsize(path), file=sys.stderr)


if __name__ == "__main__":
    main()
