"""capture_corpus.py - records what Debian's python3-grpcio sends for a few
calls, as seeds for t/fuzz/fuzz_server (the HTTP/2 preface stripped, since
the fuzz target prepends it). A tiny socket server answers with an empty
SETTINGS frame and a SETTINGS ACK and records the rest.

Usage: /usr/bin/python3 t/fuzz/capture_corpus.py OUTDIR
"""
import os
import socket
import sys
import threading
import time

import grpc

OUT = sys.argv[1]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
os.makedirs(OUT, exist_ok=True)


def record(name, call):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = bytearray()

    def serve():
        c, _ = srv.accept()
        c.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                  b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
        c.settimeout(0.2)
        end = time.time() + 1.0
        while time.time() < end:
            try:
                b = c.recv(65536)
            except socket.timeout:
                continue
            if not b:
                break
            got.extend(b)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        call(ch)
    except grpc.RpcError:
        pass
    t.join()
    ch.close()
    srv.close()
    data = bytes(got)
    if data.startswith(PREFACE):
        data = data[len(PREFACE):]
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print("%s: %d bytes" % (name, len(data)))


def u(path, req, **kw):
    return lambda ch: ch.unary_unary(path)(req, timeout=0.5, **kw)


def s(path, req, **kw):
    return lambda ch: list(ch.unary_stream(path)(req, timeout=0.5, **kw))


record("health-check", u("/grpc.health.v1.Health/Check", b""))
record("health-check-svc", u("/grpc.health.v1.Health/Check", b"\x0a\x03abc"))
record("health-watch", s("/grpc.health.v1.Health/Watch", b""))
record("echo-md", u("/t.E/Echo", b"hello",
                    metadata=(("k", "v"), ("k-bin", b"\x00\x01"))))
record("echo-status", u("/t.E/Echo", b"status"))
record("stream", s("/t.E/Stream", b"x"))
record("hold-deadline", u("/t.E/Hold", b"x"))
record("unknown", u("/no.Such/Method", b""))
record("two-messages", lambda ch: ch.stream_unary("/t.E/Echo")(
    iter([b"a", b"b"]), timeout=0.5))
