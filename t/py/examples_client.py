"""examples_client.py - drives the booking example's participants
(examples/booking: order and payment) with python3-grpcio, a gRPC
implementation nobody here wrote, and checks every answer exactly.

usage: examples_client.py GENDIR SCENARIO ARGS...
GENDIR holds the protoc --python_out output for saga/v1/saga.proto and
booking.proto. Each scenario exits 0 when every check passed and prints the
first mismatch otherwise. t/examples.sh starts the services and calls this.
"""

import os
import signal
import sys
import time

import grpc

sys.path.insert(0, sys.argv[1])
from saga.v1 import saga_pb2  # noqa: E402
import booking_pb2  # noqa: E402

ST = booking_pb2.RecordState


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)


def equal(got, want, what):
    check(got == want, "%s: got %r, want %r" % (what, got, want))


class Service:
    def __init__(self, port, name):
        self.name = name
        svc = "booking." + name.capitalize()
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        step = dict(request_serializer=saga_pb2.StepRequest.SerializeToString,
                    response_deserializer=saga_pb2.StepReply.FromString)
        self.create_rpc = self.channel.unary_unary("/%s/Create" % svc, **step)
        self.cancel_rpc = self.channel.unary_unary("/%s/Cancel" % svc, **step)
        self.list_rpc = self.channel.unary_unary(
            "/%s/List" % svc,
            request_serializer=booking_pb2.ListRequest.SerializeToString,
            response_deserializer=booking_pb2.ListResponse.FromString)

    @staticmethod
    def req(saga_id, step, compensate, attempt, ctx):
        return saga_pb2.StepRequest(
            saga_id=saga_id, flow="Booking", step=step, compensate=compensate,
            attempt=attempt,
            context={k: v.encode() for k, v in (ctx or {}).items()})

    def call(self, rpc, saga_id, compensate, ctx=None, attempt=1,
             metadata=None, timeout=10):
        """Returns (status code, reply context as str dict, details)."""
        r = self.req(saga_id, "Create" + self.name.capitalize(), compensate,
                     attempt, ctx)
        try:
            rep = rpc(r, metadata=metadata, timeout=timeout)
            return (grpc.StatusCode.OK,
                    {k: v.decode() for k, v in rep.context.items()}, "")
        except grpc.RpcError as e:
            return (e.code(), None, e.details())

    def create(self, saga_id, ctx=None, **kw):
        return self.call(self.create_rpc, saga_id, False, ctx, **kw)

    def cancel(self, saga_id, ctx=None, **kw):
        return self.call(self.cancel_rpc, saga_id, True, ctx, **kw)

    def create_future(self, saga_id, ctx=None, timeout=10):
        r = self.req(saga_id, "Create", False, 1, ctx)
        return self.create_rpc.future(r, timeout=timeout)

    def list(self, saga_id="", reset=False, counters_only=False):
        return self.list_rpc(booking_pb2.ListRequest(
            saga_id=saga_id, reset=reset, counters_only=counters_only),
            timeout=10)

    def record(self, saga_id):
        recs = self.list(saga_id).records
        check(len(recs) <= 1, "List %s: %d records" % (saga_id, len(recs)))
        return recs[0] if recs else None

    def stats(self, resp, method):
        for m in resp.methods:
            if m.method.endswith("/" + method):
                return m
        check(False, "List: no counters for %s" % method)


OK = grpc.StatusCode.OK


def code_of(fut):
    try:
        fut.result()
        return OK
    except grpc.RpcError as e:
        return e.code()


def scenario_basic(order_port, payment_port):
    order = Service(int(order_port), "order")
    pay = Service(int(payment_port), "payment")

    # The action creates a record and answers its id in the reply context.
    equal(order.create("s1", {"amount": "42"}), (OK, {"order_id": "ord-1"}, ""),
          "order Create s1")
    equal(pay.create("s1", {"amount": "42", "order_id": "ord-1"}),
          (OK, {"payment_id": "pay-1"}, ""), "payment Create s1")
    rec = order.record("s1")
    equal((rec.saga_id, rec.id, rec.state, rec.amount, rec.creates,
           rec.step), ("s1", "ord-1", ST.RECORD_STATE_ACTIVE, "42", 1,
                       "CreateOrder"), "order record s1")
    check(abs(rec.created_unix_ms - time.time() * 1000) < 60000,
          "created_unix_ms is now: %d" % rec.created_unix_ms)

    # Idempotent: a second Create answers the same, creates nothing.
    equal(order.create("s1", {"amount": "42"}, attempt=2),
          (OK, {"order_id": "ord-1"}, ""), "order Create s1 again")
    lst = order.list()
    equal(len(lst.records), 1, "order records after a repeated Create")
    equal((lst.active, lst.records[0].creates), (1, 2),
          "order active and creates after a repeated Create")

    # Cancel: the record is cancelled, a second Cancel changes nothing.
    equal(order.cancel("s1"), (OK, {}, ""), "order Cancel s1")
    rec = order.record("s1")
    equal((rec.state, rec.cancels), (ST.RECORD_STATE_CANCELLED, 1),
          "order s1 after Cancel")
    equal(order.cancel("s1"), (OK, {}, ""), "order Cancel s1 again")
    equal(order.record("s1").cancels, 2, "order s1 cancels")
    equal(order.record("s1").state, ST.RECORD_STATE_CANCELLED,
          "order s1 after a second Cancel")

    # A Create that comes after its saga's Cancel does not revive it.
    code, ctx, _ = order.create("s1", attempt=3)
    equal(code, grpc.StatusCode.ABORTED, "Create after Cancel")
    equal(order.record("s1").state, ST.RECORD_STATE_CANCELLED,
          "order s1 after a late Create")

    # Nothing to undo: OK and a tombstone; a late Create is refused.
    equal(order.cancel("s2"), (OK, {}, ""), "Cancel of an unknown saga")
    rec = order.record("s2")
    equal((rec.state, rec.id), (ST.RECORD_STATE_TOMBSTONE, ""),
          "order s2 after Cancel of nothing")
    code, _, details = order.create("s2", {"amount": "7"})
    equal(code, grpc.StatusCode.ABORTED, "Create after a tombstone")
    equal(details, "saga s2 already cancelled", "its message")
    rec = order.record("s2")
    equal((rec.state, rec.id, rec.creates, rec.cancels),
          (ST.RECORD_STATE_TOMBSTONE, "", 1, 1), "order s2 after a late Create")
    equal(order.list(counters_only=True).active, 0,
          "active orders after s1 and s2 were cancelled")

    # Injected business failure: ABORTED, only in the service named.
    equal(order.create("s3", {"fault": "order"}),
          (grpc.StatusCode.ABORTED, None, "injected fault"), "fault=order")
    equal(order.record("s3").state, ST.RECORD_STATE_FAILED, "order s3")
    equal(pay.create("s3", {"fault": "order"}),
          (OK, {"payment_id": "pay-2"}, ""), "payment with fault=order")
    equal(pay.create("s3b", {"fault": "order,payment"})[0],
          grpc.StatusCode.ABORTED, "payment with fault=order,payment")
    # Compensating the failed step leaves a tombstone.
    equal(order.cancel("s3"), (OK, {}, ""), "Cancel after a failed Create")
    equal(order.record("s3").state, ST.RECORD_STATE_TOMBSTONE, "order s3")

    # Flaky: the first N Creates of the saga are UNAVAILABLE.
    got = [order.create("s4", {"flaky": "order:2"}, attempt=i + 1)
           for i in range(4)]
    want = [(grpc.StatusCode.UNAVAILABLE, None, "injected flaky failure 1"),
            (grpc.StatusCode.UNAVAILABLE, None, "injected flaky failure 2"),
            (OK, {"order_id": "ord-2"}, ""), (OK, {"order_id": "ord-2"}, "")]
    equal(got, want, "flaky=order:2")
    equal(pay.create("s4", {"flaky": "order:2"})[0], OK,
          "payment with flaky=order:2")

    # fault_undo: Cancel is UNAVAILABLE (N times, or always).
    equal(order.create("s5")[0], OK, "order Create s5")
    equal(order.cancel("s5", {"fault_undo": "order:1"}),
          (grpc.StatusCode.UNAVAILABLE, None, "injected undo failure 1"),
          "fault_undo=order:1 first Cancel")
    equal(order.record("s5").state, ST.RECORD_STATE_ACTIVE,
          "s5 after a failed Cancel")
    equal(order.cancel("s5", {"fault_undo": "order:1"}), (OK, {}, ""),
          "fault_undo=order:1 second Cancel")
    equal(order.record("s5").state, ST.RECORD_STATE_CANCELLED, "s5")
    equal(order.create("s6")[0], OK, "order Create s6")
    for i in range(3):
        equal(order.cancel("s6", {"fault_undo": "order"})[0],
              grpc.StatusCode.UNAVAILABLE, "fault_undo=order Cancel %d" % i)
    equal(order.record("s6").state, ST.RECORD_STATE_ACTIVE,
          "s6 after failed Cancels")

    # The saga id may come from x-request-id alone.
    equal(order.create("", metadata=[("x-request-id", "s7")]),
          (OK, {"order_id": "ord-5"}, ""), "Create keyed by x-request-id")
    equal(order.record("s7").state, ST.RECORD_STATE_ACTIVE, "s7")
    equal(order.create("")[0], grpc.StatusCode.INVALID_ARGUMENT,
          "Create without a saga id")
    equal(order.create("s8", {"flaky": "order:x"})[0],
          grpc.StatusCode.INVALID_ARGUMENT, "malformed flaky")
    equal(order.record("s8"), None, "no record for a malformed request")

    # Counters and per-state totals, exactly.
    lst = order.list()
    equal((lst.service, lst.active, lst.cancelled, lst.tombstones,
           lst.failed, lst.evicted, lst.inflight, lst.peak_inflight,
           lst.max_inflight),
          ("order", 3, 2, 2, 0, 0, 0, 1, 0), "order totals")
    equal(sorted(r.saga_id for r in lst.records),
          ["s1", "s2", "s3", "s4", "s5", "s6", "s7"], "order saga ids")
    c = order.stats(lst, "Create")
    equal((c.calls, c.ok, c.rejected), (14, 7, 0), "order Create counters")
    c = order.stats(lst, "Cancel")
    equal((c.calls, c.ok, c.rejected), (9, 5, 0), "order Cancel counters")
    active = sorted((r.saga_id, r.id) for r in lst.records
                    if r.state == ST.RECORD_STATE_ACTIVE)
    equal(active, [("s4", "ord-2"), ("s6", "ord-4"), ("s7", "ord-5")],
          "active orders")

    # reset zeroes the counters after answering them.
    equal(order.stats(order.list(reset=True), "Create").calls, 14,
          "Create calls in the reset reply")
    lst = order.list()
    equal((order.stats(lst, "Create").calls, order.stats(lst, "List").calls,
           lst.peak_inflight, lst.active), (0, 1, 0, 3), "after reset")

    # An unknown method is the server's UNIMPLEMENTED.
    rpc = order.channel.unary_unary(
        "/booking.Order/Nope",
        request_serializer=saga_pb2.StepRequest.SerializeToString,
        response_deserializer=saga_pb2.StepReply.FromString)
    try:
        rpc(saga_pb2.StepRequest(saga_id="x"), timeout=5)
        check(False, "unknown method answered OK")
    except grpc.RpcError as e:
        equal(e.code(), grpc.StatusCode.UNIMPLEMENTED, "unknown method")


def scenario_latency(port, pid):
    """The service runs with --latency 200."""
    order = Service(int(port), "order")
    t0 = time.monotonic()
    equal(order.create("l1")[0], OK, "Create with latency")
    took = time.monotonic() - t0
    check(took >= 0.2, "latency 200 ms honoured: took %.3f s" % took)

    # Ten calls at once are served side by side, not one after another:
    # the latency is a timer, not a sleep of the loop.
    t0 = time.monotonic()
    futs = [order.create_future("c%d" % i) for i in range(10)]
    codes = [code_of(f) for f in futs]
    took = time.monotonic() - t0
    equal(codes, [OK] * 10, "ten concurrent Creates")
    check(0.2 <= took < 1.5, "ten 200 ms calls took %.3f s" % took)
    lst = order.list()
    equal((lst.peak_inflight, lst.inflight, lst.active), (10, 0, 11),
          "peak in flight of ten concurrent calls")

    # A per-call delay overrides --latency.
    t0 = time.monotonic()
    equal(order.create("l2", {"delay": "order:600"})[0], OK, "delay=order:600")
    took = time.monotonic() - t0
    check(took >= 0.6, "delay 600 ms honoured: took %.3f s" % took)

    # A client that gives up does not stop the work: the record is made,
    # only the answer is lost.
    equal(order.create("l3", timeout=0.05)[0],
          grpc.StatusCode.DEADLINE_EXCEEDED, "Create past its deadline")
    time.sleep(0.4)
    rec = order.record("l3")
    check(rec is not None and rec.state == ST.RECORD_STATE_ACTIVE,
          "the work of an abandoned call went on: %r" % rec)

    # SIGTERM while a call is in flight: the call is answered, then the
    # process exits (t/examples.sh checks the exit code).
    fut = order.create_future("l4")
    time.sleep(0.05)
    os.kill(int(pid), signal.SIGTERM)
    equal(code_of(fut), OK, "a call in flight across SIGTERM")


def scenario_reject(port):
    """The service runs with --latency 1000 --max-inflight 5 --overload
    reject."""
    order = Service(int(port), "order")
    futs = [order.create_future("r%d" % i) for i in range(20)]
    codes = [code_of(f) for f in futs]
    equal(codes.count(OK), 5, "calls served with --max-inflight 5")
    equal(codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED), 15,
          "calls refused with RESOURCE_EXHAUSTED")
    lst = order.list()
    c = order.stats(lst, "Create")
    equal((lst.peak_inflight, lst.max_inflight, lst.active, c.calls, c.ok,
           c.rejected), (5, 5, 5, 20, 5, 15), "counters after overload")
    # Once the load is gone, calls are served again.
    equal(order.create("r-after")[0], OK, "a Create after the overload")


def scenario_crash(port, name):
    """The service runs with --latency 1000 --max-inflight 2 --overload
    crash: the third call at once kills it."""
    svc = Service(int(port), name)
    futs = [svc.create_future("k%d" % i, timeout=5) for i in range(3)]
    codes = [code_of(f) for f in futs]
    equal(codes, [grpc.StatusCode.UNAVAILABLE] * 3,
          "calls to a participant that died under load")


def scenario_evict(port):
    """The service runs with --max-records 3 --latency 10 --jitter 20."""
    order = Service(int(port), "order")
    for i in range(5):
        t0 = time.monotonic()
        equal(order.create("e%d" % i), (OK, {"order_id": "ord-%d" % (i + 1)},
                                         ""), "Create e%d" % i)
        took = time.monotonic() - t0
        check(took >= 0.01, "latency 10 + jitter: took %.3f s" % took)
    # A Cancel uses e2: it becomes the most recently used.
    equal(order.cancel("e2"), (OK, {}, ""), "Cancel e2")
    equal(order.create("e5")[0], OK, "Create e5")
    lst = order.list()
    equal([r.saga_id for r in lst.records], ["e4", "e2", "e5"],
          "the records kept, least recently used first")
    equal((lst.evicted, lst.active, lst.cancelled), (3, 2, 1),
          "evicted and kept")


def main():
    scenarios = {"basic": scenario_basic, "latency": scenario_latency,
                 "evict": scenario_evict,
                 "reject": scenario_reject, "crash": scenario_crash}
    scenarios[sys.argv[2]](*sys.argv[3:])
    print("ok - examples_client %s" % sys.argv[2])


if __name__ == "__main__":
    main()
