"""make_seeds.py - writes the seed corpora of the fuzz targets client, proto,
store and config into t/fuzz-corpus/TARGET (the server's seeds come from
t/fuzz/capture_corpus.py): well-formed inputs, each a starting point the
fuzzer mutates. Deterministic; run it again after a protocol change.

usage: /usr/bin/python3 t/fuzz/make_seeds.py TOP_SRCDIR
"""

import os
import shutil
import subprocess
import sys
import tempfile

from hpack import Encoder
from hyperframe.frame import (DataFrame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

TOP = sys.argv[1]
CORPUS = os.path.join(TOP, "t", "fuzz-corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def grpc_msg(b):
    return b"\0" + len(b).to_bytes(4, "big") + b


# --- client: what a participant's server sends ------------------------------

def headers(enc, sid, hdrs, end=False):
    f = HeadersFrame(sid)
    f.data = enc.encode(hdrs)
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def data(sid, b, end=False):
    f = DataFrame(sid)
    f.data = b
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


def client_seeds():
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    ok = [(":status", "200"), ("content-type", "application/grpc")]
    e = Encoder()
    write("client", "unary-ok", ack.serialize() +
          headers(e, 1, ok) + data(1, grpc_msg(b"\x0a\x03abc")) +
          headers(e, 1, [("grpc-status", "0")], end=True))
    e = Encoder()
    write("client", "trailers-only", ack.serialize() + headers(e, 1, ok + [
        ("grpc-status", "9"), ("grpc-message", "no%20stock%E2%9C%93"),
        ("x-bin", "AAEC")], end=True))
    e = Encoder()
    write("client", "stream-3-msgs", ack.serialize() +
          headers(e, 3, ok) + data(3, grpc_msg(b"1") + grpc_msg(b"22")) +
          data(3, grpc_msg(b"333")[:4]) + data(3, grpc_msg(b"333")[4:]) +
          headers(e, 3, [("grpc-status", "0")], end=True) +
          headers(e, 1, ok) + data(1, grpc_msg(b""), end=False) +
          headers(e, 1, [("grpc-status", "0")], end=True))
    e = Encoder()
    big = grpc_msg(b"x" * 70000)
    write("client", "too-big", ack.serialize() + headers(e, 1, ok) +
          data(1, big[:16000]) + data(1, big[16000:32000]))
    e = Encoder()
    ga = GoAwayFrame(0)
    ga.last_stream_id = 1
    ga.error_code = 0
    rst = RstStreamFrame(3)
    rst.error_code = 7
    write("client", "rst-goaway", ack.serialize() + rst.serialize() +
          headers(e, 1, ok) + ga.serialize())
    wu = WindowUpdateFrame(0)
    wu.window_increment = 1000
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    e = Encoder()
    write("client", "ping-window", ack.serialize() + wu.serialize() +
          ping.serialize() + headers(e, 1, [(":status", "503")], end=True))


# --- proto, store: messages --------------------------------------------------

def proto_modules(tmp):
    subprocess.check_call(["protoc", "-I" + os.path.join(TOP, "proto"),
                           "--python_out=" + tmp,
                           os.path.join(TOP, "proto/saga/v1/saga.proto"),
                           os.path.join(TOP, "proto/sagad/v1/work.proto")])
    sys.path.insert(0, tmp)
    from saga.v1 import saga_pb2
    from sagad.v1 import work_pb2
    return saga_pb2, work_pb2


def resp(*items):
    out = b"*%d\r\n" % len(items)
    for it in items:
        out += b"$%d\r\n%s\r\n" % (len(it), it)
    return out


def proto_store_seeds(saga_pb2, work_pb2):
    rr = saga_pb2.RunRequest(flow="Booking", request_id="r-1",
                             context={"amount": b"42", "k": b"\0\1"},
                             mode=1, callback_url="http://127.0.0.1/x")
    write("proto", "run-request", b"\0" + rr.SerializeToString())
    sr = saga_pb2.StepReply(context={"order_id": b"ord-1", "x": b""})
    write("proto", "step-reply", b"\1" + sr.SerializeToString())
    write("proto", "step-reply-raw", b"\1" + b"reserved:abc")
    names = [m for m in dir(work_pb2) if m[0].isupper() and
             hasattr(getattr(work_pb2, m), "SerializeToString")]
    for i, n in enumerate(sorted(names)):
        msg = getattr(work_pb2, n)()
        for f in msg.DESCRIPTOR.fields:
            if f.label == f.LABEL_REPEATED or f.message_type is not None:
                continue
            if f.type == f.TYPE_STRING:
                setattr(msg, f.name, "s-%s" % f.name)
            elif f.type == f.TYPE_BYTES:
                setattr(msg, f.name, b"b")
            elif f.type == f.TYPE_BOOL:
                setattr(msg, f.name, True)
            elif f.type in (f.TYPE_INT32, f.TYPE_INT64, f.TYPE_UINT32,
                            f.TYPE_UINT64, f.TYPE_ENUM):
                setattr(msg, f.name, 1)
        write("proto", "work-%d-%s" % (i, n), b"\2" + msg.SerializeToString())
    s = saga_pb2.Saga(id="s-1", flow="Booking", mode=1, state=2,
                      context={"amount": b"42"}, error="",
                      created_unix_ms=1, updated_unix_ms=2)
    s.steps.add(name="CreateOrder", state=4, attempts=1, started_unix_ms=1,
                finished_unix_ms=2)
    s.steps.add(name="CreatePayment", state=2, attempts=2, error="x")
    pb = s.SerializeToString()
    write("proto", "saga", b"\3" + pb)
    write("store", "hash", resp(b"pb", pb, b"rev", b"7", b"step", b"1",
                                b"undo", b"0", b"attempt", b"2", b"pod",
                                b"pod-a", b"owner", b"o/1",
                                b"callback", b"http://x/"))
    write("store", "hash-no-pb", resp(b"rev", b"1"))
    write("store", "mixed", b"+OK\r\n:12\r\n$-1\r\n*-1\r\n-ERR x\r\n" +
          b"*2\r\n$2\r\npb\r\n:1\r\n" + resp(b"pb", b"\xff\xff"))


# --- config --------------------------------------------------------------------

def config_seeds():
    shutil.copy(os.path.join(TOP, "etc", "sagad.conf"),
                os.path.join(CORPUS, "config", "sample.conf"))
    for name in ("sync.conf.in", "async.conf.in", "hostile.conf.in"):
        text = open(os.path.join(TOP, "t", "conf", name)).read()
        for k in ("@POD@", "@LISTEN@", "@ORDER@", "@PAYMENT@", "@SLOW@",
                  "@STOCK@", "@NATS_URL@"):
            text = text.replace(k, "127.0.0.1:1" if k != "@POD@" else "p")
        text = text.replace("@REDIS_PORT@", "6379")
        write("config", name.replace(".in", ""), text.encode())
    write("config", "errors.conf", b'nodes = { A = { service = "x"; '
          b'retries = 1000; timout_ms = 1; }; };\nflows = { F = { mode = '
          b'"sideways"; steps = [ "A", "A" ]; }; };\nlimits = { '
          b'memory_mb = 1; };\nredis = { port = 0x7fffffffff; };\n')


def main():
    os.makedirs(os.path.join(CORPUS, "config"), exist_ok=True)
    client_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        proto_store_seeds(*proto_modules(tmp))
    config_seeds()


if __name__ == "__main__":
    main()
