"""quote_server.py - a python3-grpcio participant whose action always fails
with an error message holding a quote and a newline, for t/json.sh.

usage: quote_server.py PORT

  /quote.Card/Charge   -> ABORTED 'card "4242"\\nrefused' (a business failure)
  /quote.Card/Refund   -> OK, an empty saga.v1.StepReply

Requests and replies are bytes (no serializers). SIGTERM stops it.
"""

import signal
import sys
from concurrent import futures

import grpc

MESSAGE = 'card "4242"\nrefused'


def charge(request, context):
    context.abort(grpc.StatusCode.ABORTED, MESSAGE)


def refund(request, context):
    return b""


def main():
    port = int(sys.argv[1])
    handlers = {
        "Charge": grpc.unary_unary_rpc_method_handler(charge),
        "Refund": grpc.unary_unary_rpc_method_handler(refund),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("quote.Card", handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
