"""A python3-grpcio server for t/grpc_client_interop.sh: generic handlers on
raw bytes (no protobuf), so the C client is checked against a gRPC
implementation nobody here wrote. Prints "READY <port>" once it serves.

SIGUSR1 stops it gracefully: GOAWAY, then in-flight calls finish.

Methods of the service test.Interop:
  Echo     returns the request; echoes x-* request metadata as trailers,
           and the user-agent and the time left (grpc-timeout) it saw
  Status   request "CODE|MESSAGE": ends with that status and message
  StatusH  as Status, but sends response headers first (no Trailers-Only)
  Sleep    request "MS": sleeps that long, then returns "slept"
  Big      request "N": returns N bytes
  Peers    returns how many distinct client peers (ip:port) have called
  Stream   request "N": streams "0", "1", ... "N-1"
"""

import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

PEERS = set()
LOCK = threading.Lock()


def note_peer(ctx):
    with LOCK:
        PEERS.add(ctx.peer())


def echo(req, ctx):
    note_peer(ctx)
    md = [(k, v) for k, v in ctx.invocation_metadata() if k.startswith("x-")]
    for k, v in ctx.invocation_metadata():
        if k == "user-agent":
            md.append(("x-seen-user-agent", v))
    left = ctx.time_remaining()
    if left is not None and left < 1e6:  # no deadline: a huge number
        md.append(("x-seen-timeout-ms", str(int(left * 1000))))
    ctx.set_trailing_metadata(md)
    return req


def status_of(req):
    code, _, msg = req.decode("utf-8").partition("|")
    for sc in grpc.StatusCode:
        if sc.value[0] == int(code):
            return sc, msg
    raise ValueError(code)


def status(req, ctx):
    note_peer(ctx)
    sc, msg = status_of(req)
    if sc == grpc.StatusCode.OK:
        return b"ok"
    ctx.abort(sc, msg)


def status_h(req, ctx):
    note_peer(ctx)
    ctx.send_initial_metadata([("x-early", "1")])
    sc, msg = status_of(req)
    if sc == grpc.StatusCode.OK:
        return b"ok"
    ctx.abort(sc, msg)


def sleep(req, ctx):
    note_peer(ctx)
    time.sleep(int(req) / 1000.0)
    return b"slept"


def big(req, ctx):
    note_peer(ctx)
    return b"x" * int(req)


def peers(req, ctx):
    with LOCK:
        return str(len(PEERS)).encode()


def stream(req, ctx):
    note_peer(ctx)
    for i in range(int(req)):
        yield str(i).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-streams", type=int, default=0)
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()

    ident = lambda b: b  # noqa: E731 - raw bytes both ways
    uu = lambda f: grpc.unary_unary_rpc_method_handler(  # noqa: E731
        f, request_deserializer=ident, response_serializer=ident)
    handlers = {
        "Echo": uu(echo), "Status": uu(status), "StatusH": uu(status_h),
        "Sleep": uu(sleep), "Big": uu(big), "Peers": uu(peers),
        "Stream": grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=ident, response_serializer=ident),
    }
    opts = [("grpc.max_send_message_length", 16 << 20),
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.so_reuseport", 0)]
    if args.max_streams > 0:
        opts.append(("grpc.max_concurrent_streams", args.max_streams))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=opts)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Interop", handlers),))
    if server.add_insecure_port("127.0.0.1:%d" % args.port) == 0:
        print("cannot bind 127.0.0.1:%d" % args.port, file=sys.stderr)
        sys.exit(1)
    server.start()
    # SIGUSR1: a graceful stop (GOAWAY, in-flight calls finish, no new ones).
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(
        target=lambda: server.stop(5)).start())
    print("READY %d" % args.port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
