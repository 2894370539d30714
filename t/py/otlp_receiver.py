"""otlp_receiver.py - a test OTLP/HTTP trace receiver (a collector that
keeps what it gets): POST /v1/traces with an ExportTraceServiceRequest in
protobuf, decoded with the stubs `protoc --python_out` made of sagad's own
proto/opentelemetry files (OTLP_GEN), one JSON line per span appended to
OUT. It answers 200 with an empty ExportTraceServiceResponse over a
persistent HTTP/1.1 connection, and counts the connections it accepted
(OUT.conns) and the POSTs (OUT.posts) so the test can see the exporter keeps one open.

usage: otlp_receiver.py PORT OUT [discard]

With "discard" it decodes nothing and keeps nothing (the benchmark's
collector that accepts and discards).
"""

import json
import os
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DISCARD = len(sys.argv) > 3 and sys.argv[3] == "discard"
if not DISCARD:
    sys.path.insert(0, os.environ["OTLP_GEN"])
    from opentelemetry.proto.collector.trace.v1 import \
        trace_service_pb2  # noqa: E402

OUT = sys.argv[2]
lock = threading.Lock()
conns = [0]
posts = [0]


def attr_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def span_json(res, sp):
    return {
        "trace_id": sp.trace_id.hex(),
        "span_id": sp.span_id.hex(),
        "parent_span_id": sp.parent_span_id.hex(),
        "trace_state": sp.trace_state,
        "flags": sp.flags,
        "name": sp.name,
        "kind": sp.kind,
        "start": sp.start_time_unix_nano,
        "end": sp.end_time_unix_nano,
        "status": sp.status.code,
        "status_message": sp.status.message,
        "attrs": {a.key: attr_value(a.value) for a in sp.attributes},
        "resource": res,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            conns[0] += 1
            with open(OUT + ".conns", "w") as f:
                f.write("%d\n" % conns[0])

    def log_message(self, *args):
        pass

    def do_POST(self):
        with lock:
            posts[0] += 1
            with open(OUT + ".posts", "w") as f:
                f.write("%d\n" % posts[0])
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        ctype = self.headers.get("Content-Type", "")
        if not DISCARD:
            if self.path != "/v1/traces" or ctype != "application/x-protobuf":
                self.answer(400)
                return
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(body)
            lines = []
            for rs in req.resource_spans:
                res = {a.key: attr_value(a.value)
                       for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        lines.append(json.dumps(span_json(res, sp)))
            with lock, open(OUT, "a") as f:
                for line in lines:
                    f.write(line + "\n")
        self.answer(200)

    def answer(self, code):
        self.send_response(code)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
