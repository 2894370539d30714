"""otlp_participant.py - a saga participant for the tracing test, in
python3-grpcio: any method of any service answers an empty StepReply and
appends {"method", "metadata"} of the call to OUT as one JSON line, so the
test sees the traceparent, tracestate and baggage each call carried. A
method whose name ends in "Fail" answers FAILED_PRECONDITION (the saga
compensates); one ending in "Slow" answers after 6 s; one ending in "Flaky"
answers UNAVAILABLE until the file OUT.heal exists (a compensation that
fails until an operator's Retry, t/dashboard.sh).

usage: otlp_participant.py PORT OUT
"""

import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

OUT = sys.argv[2]
lock = threading.Lock()


class Any(grpc.GenericRpcHandler):
    def service(self, details):
        method = details.method

        def call(request, context):
            md = {k: v for k, v in context.invocation_metadata()
                  if not k.endswith("-bin")}
            with lock, open(OUT, "a") as f:
                f.write(json.dumps({"method": method, "metadata": md}) + "\n")
            if method.endswith("Fail"):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")
            if method.endswith("Slow"):
                time.sleep(6)
            if method.endswith("Flaky") and not os.path.exists(OUT + ".heal"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "stock service down")
            return b""
        return grpc.unary_unary_rpc_method_handler(call)


def main():
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    srv.add_generic_rpc_handlers((Any(),))
    srv.add_insecure_port("127.0.0.1:%d" % int(sys.argv[1]))
    srv.start()
    signal.signal(signal.SIGTERM, lambda *a: srv.stop(0))
    srv.wait_for_termination()


if __name__ == "__main__":
    main()
