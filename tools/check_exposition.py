#!/usr/bin/env python3
"""Parses an exposition from stdin with the Prometheus project's own Python parsers.

Usage: check_exposition.py text|openmetrics < body
Prints one line per family (name type samples) and exits 1 with the parser's message when the
body is not valid in that format. The tests use it as an independent check of our encoders.
"""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text


def main() -> int:
    fmt = sys.argv[1]
    body = sys.stdin.read()
    parser = {"text": parse_text, "openmetrics": parse_openmetrics}[fmt]
    try:
        families = list(parser(body))
    except Exception as exc:  # the parsers raise ValueError and friends
        print(f"invalid {fmt}: {exc}", file=sys.stderr)
        return 1
    for family in families:
        print(family.name, family.type, len(family.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
