"""throttling_test.py - throttling and async sagas end to end against two
sagad pods with their real workers (t/throttling.sh). One scenario per
argument."""

import os
import signal
import subprocess
import sys
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import (S, SC, Orch, Participant, RawService, check,  # noqa
                      equal, ok, rpc_error)


def pods():
    return Orch(int(os.environ["A_PORT"])), Orch(int(os.environ["B_PORT"]))


def pod_a():
    return Orch(int(os.environ["A_PORT"]))


def redis_pod(saga_id):
    out = subprocess.run(
        ["redis-cli", "-p", os.environ["REDIS_PORT"], "HGET",
         "saga:{%s}" % saga_id, "pod"], capture_output=True, text=True,
        timeout=10)
    return out.stdout.strip()


def timed_run(o, flow, rid, ctx=None, timeout=30):
    """(status, saga or details, seconds)."""
    t0 = time.time()
    code, r = rpc_error(o.run, flow, ctx or {}, request_id=rid,
                        timeout=timeout)
    return code, r, time.time() - t0


def bounded():
    o = pod_a()
    slow = Participant(int(os.environ["SLOW_PORT"]), "order")
    slow.list(reset=True, counters_only=True)
    n = 40
    with futures.ThreadPoolExecutor(n) as ex:
        res = list(ex.map(lambda i: timed_run(o, "Throttled", "tb-%d" % i),
                          range(n)))
    for code, s, _ in res:
        equal(code, SC.OK, "throttling Run")
        equal(s.state, S.STATE_COMPLETED, "state of %s" % s.id)
        equal(s.mode, 3, "mode")
    st = slow.list(counters_only=True)
    check(st.peak_inflight <= 4, "peak in flight upstream %d, above the "
          "node's 1 worker x concurrency 4" % st.peak_inflight)
    check(st.peak_inflight >= 2, "peak in flight %d: the 4 slots were not "
          "used" % st.peak_inflight)
    equal(slow.calls("Create"), n, "Creates upstream")
    longest = max(t for _, _, t in res)
    ok("40 concurrent throttling Runs: all COMPLETED, held until the end "
       "(longest %.2f s); upstream peak in flight %d <= 4"
       % (longest, st.peak_inflight))

    again = o.run("Throttled", {}, request_id="tb-0")
    equal(again.state, S.STATE_COMPLETED, "a second Run of an ended saga")
    equal(slow.calls("Create"), n, "Creates after the second Run")
    ok("a second Run of an ended throttling saga returns it, runs nothing")


def shed():
    o = pod_a()
    n = 30
    with futures.ThreadPoolExecutor(n) as ex:
        res = list(ex.map(lambda i: timed_run(o, "Shed", "ts-%d" % i),
                          range(n)))
    done = [r for r in res if r[0] == SC.OK]
    refused = [r for r in res if r[0] == SC.RESOURCE_EXHAUSTED]
    equal(len(done) + len(refused), n, "answers OK or RESOURCE_EXHAUSTED")
    check(len(refused) >= 1, "max_queue 5 refused none of 30")
    check(5 <= len(done) < n, "%d completed" % len(done))
    for _, s, _ in done:
        equal(s.state, S.STATE_COMPLETED, "state of %s" % s.id)
    for _, d, t in refused:
        check("max_queue" in d, "refusal message: %r" % d)
        check(t < 1.0, "refused after %.2f s, not at once" % t)
    for i in range(n):
        code, _ = rpc_error(o.get, "ts-%d" % i)
        check(code in (SC.OK, SC.NOT_FOUND), "Get ts-%d: %s" % (i, code))
    stored = sum(1 for i in range(n) if rpc_error(o.get, "ts-%d" % i)[0]
                 == SC.OK)
    equal(stored, len(done), "sagas stored: only the accepted ones")
    ok("max_queue 5, 30 concurrent Runs: %d RESOURCE_EXHAUSTED at once "
       "(nothing stored), %d COMPLETED" % (len(refused), len(done)))


def gone():
    o = pod_a()
    t0 = time.time()
    code, _ = rpc_error(o.run, "Shed", {}, request_id="tg-1", timeout=0.1)
    equal(code, SC.DEADLINE_EXCEEDED, "a held Run past its deadline")
    check(time.time() - t0 < 1, "the deadline was not kept")
    s = o.wait_final("tg-1", 10)
    check(hasattr(s, "state"), "Get tg-1: %r" % s)
    equal(s.state, S.STATE_COMPLETED, "the saga whose caller went away")
    # A second caller of a saga under way is held like the first.
    f1 = o.run_rpc.future(Orch.request("Shed", {}, "tg-2"), timeout=10)
    time.sleep(0.05)
    f2 = o.run_rpc.future(Orch.request("Shed", {}, "tg-2"), timeout=10)
    s1, s2 = f1.result(), f2.result()
    equal((s1.state, s2.state), (S.STATE_COMPLETED,) * 2,
          "both callers of one saga")
    rec = Participant(int(os.environ["SHED_PORT"]), "order").record("tg-2")
    equal(rec.creates, 1, "Creates for a saga run twice")
    ok("a caller that goes away (deadline) does not stop its saga; a "
       "second caller is held until the end with the first")


def two_pods():
    a, b = pods()
    raw = RawService(int(os.environ["STOCK_PORT"]))
    n = 20
    jobs = [(a, "pod-a", "t2a-%d" % i) for i in range(n)] + \
        [(b, "pod-b", "t2b-%d" % i) for i in range(n)]
    with futures.ThreadPoolExecutor(2 * n) as ex:
        res = list(ex.map(lambda j: (j, timed_run(
            j[0], "TShop", j[2], {"reserve_req": j[2]})), jobs))
    for (o, pod, rid), (code, s, _) in res:
        equal(code, SC.OK, "Run %s on %s" % (rid, pod))
        equal(s.id, rid, "the saga answered")
        equal(s.state, S.STATE_COMPLETED, "state of %s" % rid)
        equal(s.context["reserve_resp"], b"reserved:" + rid.encode()[::-1],
              "raw reply of %s" % rid)
        equal(redis_pod(rid), pod, "the pod that queued %s" % rid)
    seen = {}
    for c in raw.calls():
        if c["method"] == "Reserve":
            req = bytes.fromhex(c["request"]).decode()
            seen.setdefault(req, []).append(c["metadata"].get("x-request-id"))
    for _, _, rid in jobs:
        equal(seen.get(rid), [rid], "x-request-id of the Reserve of %s" % rid)
    ok("two pods, 20 throttling Runs each at once: every call answered by "
       "the pod that holds it with its own saga, run by that pod's "
       "workers; upstream saw x-request-id = saga id")


def async_shared():
    a, b = pods()
    n = 40
    t0 = time.time()
    # All queued through pod-a: the work is shared by subject, not by pod.
    for i in range(n):
        s = a.run("AsyncBooking", {"amount": str(i)},
                  request_id="async-%d" % i)
        equal(s.state, S.STATE_PENDING, "async Run")
    took = time.time() - t0
    for i in range(n):
        s = a.wait_final("async-%d" % i, 20)
        check(hasattr(s, "state"), "async-%d: %r" % (i, s))
        equal(s.state, S.STATE_COMPLETED, "async-%d" % i)
        equal(s.context["amount"], str(i).encode(), "its context")
        check(s.context["payment_id"].startswith(b"pay-"),
              "payment_id of async-%d" % i)
    ok("40 async Runs on pod-a: answered PENDING (%.0f ms each), all "
       "COMPLETED by the workers" % (took * 1000 / n))


def held_at_stop():
    o = pod_a()
    pid = int(sys.argv[2])
    fs = [o.run_rpc.future(Orch.request("Shed", {}, "th-%d" % i),
                           timeout=20) for i in range(5)]
    time.sleep(0.3)
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)
    codes = []
    for f in fs:
        try:
            f.result()
            codes.append((SC.OK, time.time() - t0, ""))
        except Exception as e:  # grpc.RpcError
            codes.append((e.code(), time.time() - t0, e.details()))
    unavail = [c for c in codes if c[0] == SC.UNAVAILABLE]
    check(unavail, "no held call answered UNAVAILABLE: %r" % codes)
    for _, t, d in unavail:
        check(t >= 1.3, "UNAVAILABLE %.2f s after SIGTERM, before "
              "shutdown_timeout_ms (1.5 s)" % t)
        check("stopping" in d, "message %r" % d)
    ok("SIGTERM with held calls: %d answered UNAVAILABLE after "
       "shutdown_timeout_ms, %d completed before" %
       (len(unavail), len(codes) - len(unavail)))


if __name__ == "__main__":
    globals()[sys.argv[1]]()
