"""raw_server.py - a python3-grpcio service that knows nothing of sagad's
StepRequest, behind a raw-mode node (t/conf/sync.conf.in: Reserve).

usage: raw_server.py PORT

  /shop.Stock/Reserve   any bytes -> b"reserved:" + the request's bytes
                        reversed; a request starting with b"fail" is
                        answered FAILED_PRECONDITION.
  /shop.Stock/Release   any bytes (sagad sends a saga.v1.StepRequest) ->
                        empty reply.
  /shop.Stock/Calls     -> JSON: every call so far, in order, as
                        {"method", "request" (hex), "metadata" {key: value}};
                        this method itself is not recorded.

Requests and replies are bytes both ways (no serializers), so what sagad
sends and stores is compared byte for byte. SIGTERM stops it.
"""

import json
import signal
import sys
import threading
from concurrent import futures

import grpc

calls = []
lock = threading.Lock()


def record(method, request, context):
    md = {k: v for k, v in context.invocation_metadata()
          if not k.endswith("-bin")}
    with lock:
        calls.append({"method": method, "request": request.hex(),
                      "metadata": md})


def reserve(request, context):
    record("Reserve", request, context)
    if request.startswith(b"fail"):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "out of stock")
    return b"reserved:" + request[::-1]


def release(request, context):
    record("Release", request, context)
    return b""


def list_calls(request, context):
    with lock:
        return json.dumps(calls).encode()


def main():
    port = int(sys.argv[1])
    handlers = {
        "Reserve": grpc.unary_unary_rpc_method_handler(reserve),
        "Release": grpc.unary_unary_rpc_method_handler(release),
        "Calls": grpc.unary_unary_rpc_method_handler(list_calls),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("shop.Stock", handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
