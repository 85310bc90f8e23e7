#!/usr/bin/env python3
"""Fake llama-server and Ollama for the live stack run, serving the recorded answers checked in
under llm-exporter/tests/fixtures (llama-server b11312 captures with their headers; Ollama's
documented shapes). Streams go out one event at a time with a short gap, as the real servers
send them, so the measuring proxy sees a time to first token and inter-token gaps.

  check_stack_fake_llm.py --fixtures DIR --llama-port N --ollama-port M

A model named "nope" is not installed (Ollama 404, llama-server 404), to make failed requests.

The headers are the servers' own: the llama-server answers carry exactly their recorded headers
(`Server: llama.cpp`, no `Date`), the Ollama answers Go's (`Date`, no `Server`). Python's
`send_response` would add `Server: BaseHTTP/0.6 Python/3.x` and a `Date` to both; the exporter
tells llama-server by its `Server` header, so that header would label llama models the Ollama way.
Only the framing headers (`Content-Length`, `Transfer-Encoding`) are the fake's own.
"""

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GAP = 0.02  # seconds between streamed events


def read(path):
    with open(path, "rb") as f:
        return f.read()


FRAMING = ("content-length", "transfer-encoding", "connection", "keep-alive")


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fixtures = ""
    sends_date = False  # Go's net/http (Ollama) dates its answers; llama-server does not

    def send_response(self, code, message=None):
        # The status line only: no Python `Server` header, and a `Date` only where the real
        # server sends one.
        self.send_response_only(code, message)
        if self.sends_date:
            self.send_header("Date", self.date_time_string())

    def log_message(self, *args):
        pass

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def send(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in FRAMING:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, status, headers, events):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in FRAMING:
                self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, ev in enumerate(events):
            if i:
                time.sleep(GAP)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Llama(Base):
    def recorded(self, stem):
        head = read(os.path.join(self.fixtures, "llama-server", stem + ".headers")).decode()
        lines = [l for l in head.splitlines() if l.strip()]
        status = int(lines[0].split()[1])
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
        return status, headers, read(os.path.join(self.fixtures, "llama-server", stem + ".body"))

    def answer(self, stem):
        self.send(*self.recorded(stem))

    def answer_stream(self, stem):
        status, headers, body = self.recorded(stem)
        events = [e + b"\n\n" for e in body.split(b"\n\n") if e.strip()]
        self.stream(status, headers, events)

    def do_GET(self):
        path = self.path.split("?")[0]
        table = {"/health": "health", "/v1/health": "health", "/props": "props", "/slots": "slots-busy",
                 "/metrics": "metrics-after-4-requests", "/v1/models": "v1-models", "/models": "v1-models"}
        self.answer(table.get(path, "unknown-path-404"))

    def do_POST(self):
        path = self.path.split("?")[0]
        req = self.body_json()
        if req.get("model") == "nope":
            return self.answer("unknown-path-404")
        stream = req.get("stream") is True
        if path in ("/v1/chat/completions", "/chat/completions"):
            return self.answer_stream("v1-chat-completions-stream") if stream else self.answer("v1-chat-completions")
        if path in ("/completion", "/completions"):
            return self.answer_stream("completion-stream") if stream else self.answer("completion")
        if path == "/v1/completions":
            return self.answer("v1-completions")
        self.answer("unknown-path-404")


class Ollama(Base):
    sends_date = True

    def json_answer(self, status, stem):
        body = read(os.path.join(self.fixtures, "ollama", stem + ".body"))
        self.send(status, [("Content-Type", "application/json; charset=utf-8")], body)

    def do_HEAD(self):
        self.send(200, [("Content-Type", "text/plain; charset=utf-8")], b"")

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/":
            return self.send(200, [("Content-Type", "text/plain; charset=utf-8")], b"Ollama is running")
        table = {"/api/version": "version", "/api/tags": "tags", "/api/ps": "ps"}
        if path in table:
            return self.json_answer(200, table[path])
        self.send(404, [("Content-Type", "text/plain")], b"404 page not found")

    def do_POST(self):
        path = self.path.split("?")[0]
        req = self.body_json()
        if req.get("model") == "nope":
            return self.json_answer(404, "not-found-404")
        stream = req.get("stream", True) is not False  # Ollama streams unless told not to
        if path == "/api/chat":
            if stream:
                body = read(os.path.join(self.fixtures, "ollama", "chat-stream.body"))
                events = [l + b"\n" for l in body.split(b"\n") if l.strip()]
                return self.stream(200, [("Content-Type", "application/x-ndjson")], events)
            return self.json_answer(200, "chat")
        if path == "/api/generate" and stream:
            body = read(os.path.join(self.fixtures, "ollama", "generate-stream.body"))
            events = [l + b"\n" for l in body.split(b"\n") if l.strip()]
            return self.stream(200, [("Content-Type", "application/x-ndjson")], events)
        if path == "/api/embed":
            return self.json_answer(200, "embed")
        self.send(404, [("Content-Type", "text/plain")], b"404 page not found")


def serve(handler, port, fixtures, address="127.0.0.1"):
    handler.fixtures = fixtures
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--llama-port", type=int, required=True)
    ap.add_argument("--ollama-port", type=int, required=True)
    # The compose live run listens on the Docker bridge's address, where the containers'
    # host.docker.internal leads; never on all interfaces.
    ap.add_argument("--address", default="127.0.0.1")
    a = ap.parse_args()
    serve(Llama, a.llama_port, a.fixtures, a.address)
    serve(Ollama, a.ollama_port, a.fixtures, a.address)
    print("fake model servers ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
