"""sync_lib.py - what t/py/sync_test.py and t/py/sync_recovery.py share:
the generated stubs, python3-grpcio clients of sagad (Orchestrator, Health),
of the booking participants (List) and of t/py/raw_server.py, and the
check helpers. Every client is a plain grpc channel with the messages'
SerializeToString/FromString, so sagad is driven by a gRPC implementation
nobody here wrote.
"""

import json
import os
import sys
import time

import grpc

GEN = os.environ["SYNC_GEN"]
sys.path.insert(0, GEN)
from saga.v1 import saga_pb2  # noqa: E402
import booking_pb2  # noqa: E402
import health_pb2  # noqa: E402

S = saga_pb2.State
R = booking_pb2.RecordState
SC = grpc.StatusCode


def fail(what):
    print("FAIL: " + what, file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def equal(got, want, what):
    check(got == want, "%s: got %r, want %r" % (what, got, want))


def ok(what):
    print("ok - " + what, flush=True)


def now_ms():
    return int(time.time() * 1000)


def state_name(v):
    return S.Name(v)


def env_port(name):
    return int(os.environ[name])


def rpc_error(fn, *args, **kw):
    """Calls fn; returns (code, details), (OK, reply) when it succeeded."""
    try:
        return SC.OK, fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


def expect_error(code, fn, *args, **kw):
    got, details = rpc_error(fn, *args, **kw)
    equal(got, code, "status of %s" % getattr(fn, "__name__", "the call"))
    return details


class Orch:
    """saga.v1.Orchestrator and grpc.health.v1.Health of one sagad."""

    def __init__(self, port):
        self.port = port
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        p = "/saga.v1.Orchestrator/"
        self.run_rpc = self.channel.unary_unary(
            p + "Run", request_serializer=saga_pb2.RunRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString)
        self.get_rpc = self.channel.unary_unary(
            p + "Get", request_serializer=saga_pb2.GetRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString)
        self.watch_rpc = self.channel.unary_stream(
            p + "Watch",
            request_serializer=saga_pb2.GetRequest.SerializeToString,
            response_deserializer=saga_pb2.SagaEvent.FromString)
        self.flows_rpc = self.channel.unary_unary(
            p + "ListFlows",
            request_serializer=saga_pb2.ListFlowsRequest.SerializeToString,
            response_deserializer=saga_pb2.ListFlowsResponse.FromString)
        self.list_rpc = self.channel.unary_unary(
            p + "List", request_serializer=saga_pb2.ListRequest.SerializeToString,
            response_deserializer=saga_pb2.ListResponse.FromString)
        self.cancel_rpc = self.channel.unary_unary(
            p + "Cancel",
            request_serializer=saga_pb2.CancelRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString)
        self.retry_rpc = self.channel.unary_unary(
            p + "Retry",
            request_serializer=saga_pb2.RetryRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString)
        self.resolve_rpc = self.channel.unary_unary(
            p + "Resolve",
            request_serializer=saga_pb2.ResolveRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString)
        h = "/grpc.health.v1.Health/"
        self.check_rpc = self.channel.unary_unary(
            h + "Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        self.hwatch_rpc = self.channel.unary_stream(
            h + "Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def raw(self, method):
        """A bytes-in, bytes-out stub of any path on this server."""
        return self.channel.unary_unary(method)

    @staticmethod
    def request(flow, ctx=None, request_id="", mode=0):
        return saga_pb2.RunRequest(
            flow=flow, request_id=request_id, mode=mode,
            context={k: (v if isinstance(v, bytes) else str(v).encode())
                     for k, v in (ctx or {}).items()})

    def run(self, flow, ctx=None, request_id="", metadata=None, timeout=20,
            mode=0):
        return self.run_rpc(self.request(flow, ctx, request_id, mode),
                            metadata=metadata, timeout=timeout)

    def run_future(self, flow, ctx=None, request_id="", metadata=None,
                   timeout=30, mode=0):
        return self.run_rpc.future(self.request(flow, ctx, request_id, mode),
                                   metadata=metadata, timeout=timeout)

    def get(self, saga_id, timeout=10):
        return self.get_rpc(saga_pb2.GetRequest(id=saga_id), timeout=timeout)

    def watch(self, saga_id, timeout=20):
        """Every event until the stream ends (raises on an error status)."""
        return list(self.watch_rpc(saga_pb2.GetRequest(id=saga_id),
                                   timeout=timeout))

    def list(self, states=(), flow="", since=0, until=0, page_size=0,
             page_token="", timeout=10):
        return self.list_rpc(saga_pb2.ListRequest(
            states=list(states), flow=flow, since_unix_ms=since,
            until_unix_ms=until, page_size=page_size,
            page_token=page_token), timeout=timeout)

    def list_all(self, page_size=0, **kw):
        """Every page of a List; returns the sagas and the page count."""
        out, token, pages = [], "", 0
        while True:
            r = self.list(page_size=page_size, page_token=token, **kw)
            out.extend(r.sagas)
            pages += 1
            token = r.next_page_token
            if not token:
                return out, pages

    def cancel(self, saga_id, reason="", timeout=10):
        return self.cancel_rpc(saga_pb2.CancelRequest(id=saga_id,
                                                      reason=reason),
                               timeout=timeout)

    def retry(self, saga_id, timeout=10):
        return self.retry_rpc(saga_pb2.RetryRequest(id=saga_id),
                              timeout=timeout)

    def resolve(self, saga_id, note, timeout=10):
        return self.resolve_rpc(saga_pb2.ResolveRequest(id=saga_id,
                                                        note=note),
                                timeout=timeout)

    def health(self, service, timeout=5):
        return self.check_rpc(
            health_pb2.HealthCheckRequest(service=service),
            timeout=timeout).status

    def wait_final(self, saga_id, secs):
        """Get until the saga is in a final state; returns it (or the last
        answer, or the last error code)."""
        deadline = time.time() + secs
        last = None
        while time.time() < deadline:
            code, s = rpc_error(self.get, saga_id)
            last = s if code == SC.OK else code
            if code == SC.OK and s.state >= S.STATE_COMPLETED:
                return s
            time.sleep(0.1)
        return last


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Participant:
    """The List method of a booking participant (order or payment)."""

    def __init__(self, port, name):
        self.name = name
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.list_rpc = self.channel.unary_unary(
            "/booking.%s/List" % name.capitalize(),
            request_serializer=booking_pb2.ListRequest.SerializeToString,
            response_deserializer=booking_pb2.ListResponse.FromString)

    def list(self, saga_id="", reset=False, counters_only=False):
        return self.list_rpc(booking_pb2.ListRequest(
            saga_id=saga_id, reset=reset, counters_only=counters_only),
            timeout=10)

    def record(self, saga_id):
        """The participant's record of one saga, or None."""
        recs = self.list(saga_id).records
        check(len(recs) <= 1, "%s: %d records for saga %s" %
              (self.name, len(recs), saga_id))
        return recs[0] if recs else None

    def records(self):
        return {r.saga_id: r for r in self.list().records}

    def calls(self, method):
        """Calls received by method ("Create", "Cancel") since the last
        reset."""
        full = "/booking.%s/%s" % (self.name.capitalize(), method)
        for m in self.list(counters_only=True).methods:
            if m.method == full:
                return m.calls
        return 0


class RawService:
    """t/py/raw_server.py's record of the calls it got."""

    def __init__(self, port):
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.calls_rpc = self.channel.unary_unary("/shop.Stock/Calls")

    def calls(self):
        return json.loads(self.calls_rpc(b"", timeout=5).decode())
