#!/usr/bin/env python3
"""A test OTLP/HTTP trace receiver that decodes with the official protobuf definitions.

The span exporter (llm-proxy/src/telemetry/) declares its OTLP messages by hand; this receiver checks
them against OpenTelemetry's own generated code (PyPI's `opentelemetry-proto`), so a wrong field
number or type shows up as a wrong or missing value here. It listens on 127.0.0.1 (a free port,
printed first as `listening PORT`), prints each POST as one JSON line on stdout, and stops by
itself when its standard input closes (the test ended) or after --lifetime seconds.

Options: --status CODE answers every POST with CODE (an error collector); --reject N answers
with an OTLP partial success that rejected N spans.
"""

import argparse
import http.server
import json
import os
import sys
import threading

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def any_value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind is None:
        return None
    return getattr(value, kind)


def attributes(key_values):
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_dict(span):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "flags": span.flags,
        "name": span.name,
        "kind": trace_pb2.Span.SpanKind.Name(span.kind),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "events": [
            {
                "name": e.name,
                "time_unix_nano": e.time_unix_nano,
                "attributes": attributes(e.attributes),
            }
            for e in span.events
        ],
        "status": {
            "code": trace_pb2.Status.StatusCode.Name(span.status.code),
            "message": span.status.message,
        },
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--reject", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args()
    out_lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            resource, scope, spans = {}, None, []
            for rs in request.resource_spans:
                resource.update(attributes(rs.resource.attributes))
                for ss in rs.scope_spans:
                    scope = ss.scope.name
                    spans.extend(span_dict(s) for s in ss.spans)
            record = {
                "path": self.path,
                "content_type": self.headers.get("content-type"),
                "resource": resource,
                "scope": scope,
                "spans": spans,
            }
            if args.status != 200:
                self.send_response(args.status)
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                answer = trace_service_pb2.ExportTraceServiceResponse()
                if args.reject:
                    answer.partial_success.rejected_spans = args.reject
                    answer.partial_success.error_message = "rejected by the test"
                payload = answer.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            with out_lock:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)

    def stop_when_stdin_closes():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
