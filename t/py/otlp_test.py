"""otlp_test.py - t/trace.sh's checks: sagas run through a real sagad with
tracing on, the spans a real OTLP receiver got (t/py/otlp_receiver.py,
SPANS) and the metadata the participant got (t/py/otlp_participant.py,
CALLS).

usage: otlp_test.py main|dead
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import Orch, S, equal, check, ok, fail  # noqa: E402

SPANS = os.environ["SPANS"]
CALLS = os.environ["CALLS"]
SERVER, CLIENT, INTERNAL = 2, 3, 1


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def spans_of(trace_id, want, secs=15):
    """The spans of trace_id, once there are at least want of them."""
    deadline = time.time() + secs
    while True:
        got = [s for s in lines(SPANS) if s["trace_id"] == trace_id]
        if len(got) >= want or time.time() > deadline:
            return got
        time.sleep(0.1)


def calls_of(saga_id):
    return [c for c in lines(CALLS)
            if c["metadata"].get("x-request-id") == saga_id]


def tp(trace_id, span_id, flags="01"):
    return "00-%s-%s-%s" % (trace_id, span_id, flags)


def wait_state(o, saga_id, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        s = o.get(saga_id)
        if s.state >= S.STATE_COMPLETED:
            return s
        time.sleep(0.05)
    fail("saga %s did not end in %ds" % (saga_id, secs))


def check_tree(saga_id, trace_id, caller_span, spans, steps, worker=False):
    """One Run span (child of caller_span), one saga span (its child), one
    client span per step call (children of the saga span), in order."""
    runs = [s for s in spans if s["kind"] == SERVER]
    sagas = [s for s in spans if s["kind"] == INTERNAL]
    calls = sorted([s for s in spans if s["kind"] == CLIENT],
                   key=lambda s: s["start"])
    equal(len(runs), 1, "%s: Run spans" % saga_id)
    equal(len(sagas), 1, "%s: saga spans" % saga_id)
    run, saga = runs[0], sagas[0]
    equal(run["name"], "saga.v1.Orchestrator/Run", "Run span name")
    equal(run["parent_span_id"], caller_span, "Run span's parent")
    equal(run["attrs"].get("saga.id"), saga_id, "Run span saga.id")
    equal(run["resource"].get("sagad.process"), "master", "Run's process")
    equal(run["resource"].get("service.name"), "sagad", "service.name")
    equal(saga["parent_span_id"], run["span_id"], "saga span's parent")
    equal(saga["attrs"].get("saga.id"), saga_id, "saga span saga.id")
    proc = saga["resource"].get("sagad.process", "")
    check(proc.startswith("worker ") if worker else proc == "master",
          "saga span made by %s, got %s" % ("a worker" if worker else
                                            "the master", proc))
    equal([c["name"] for c in calls], steps, "%s: step spans" % saga_id)
    for c in calls:
        equal(c["parent_span_id"], saga["span_id"], "step span's parent")
        equal(c["attrs"].get("saga.id"), saga_id, "step span saga.id")
        if worker:
            check(c["resource"].get("sagad.process", "").startswith(
                "worker "), "step span made by a worker")
    # What the participant received: each call's own span as its parent.
    got = [c["metadata"].get("traceparent") for c in calls_of(saga_id)]
    equal(sorted(got), sorted(tp(trace_id, c["span_id"]) for c in calls),
          "%s: traceparents the participant received" % saga_id)
    return run, saga, calls


def main():
    o = Orch(int(os.environ["SAGAD_PORT"]))

    # 1. A sync saga, parented on the caller's traceparent.
    tid, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    md = (("traceparent", tp(tid, caller)), ("tracestate", "vendor=opaque"),
          ("baggage", "user=alice,region=eu"))
    s = o.run("Trip", request_id="tr-sync", metadata=md)
    equal(s.state, S.STATE_COMPLETED, "tr-sync state")
    spans = spans_of(tid, 4)
    check_tree("tr-sync", tid, caller, spans, ["t.Svc/A", "t.Svc/B"])
    for c in calls_of("tr-sync"):
        equal(c["metadata"].get("tracestate"), "vendor=opaque", "tracestate")
        equal(c["metadata"].get("baggage"), "user=alice,region=eu", "baggage")
    check(all(sp["trace_state"] == "vendor=opaque" for sp in spans),
          "spans carry the tracestate")
    ok("sync: the Run span (child of the caller's traceparent), the saga "
       "span and one client span per step call, all of one trace; each "
       "participant call got its own span as traceparent, with tracestate "
       "and baggage")

    # 2. A sync saga that fails and compensates: compensations are calls.
    tid2 = "0af7651916cd43dd8448eb211c80319c"
    s = o.run("TripFail", request_id="tr-fail",
              metadata=(("traceparent", tp(tid2, "b7ad6b7169203331")),))
    equal(s.state, S.STATE_COMPENSATED, "tr-fail state")
    spans = spans_of(tid2, 6)
    _, saga, calls = check_tree("tr-fail", tid2, "b7ad6b7169203331", spans,
                                ["t.Svc/A", "t.Svc/BFail", "t.Svc/UndoB",
                                 "t.Svc/UndoA"])
    equal(saga["status"], 2, "a compensated saga's span is an error")
    equal(saga["attrs"].get("saga.state"), "COMPENSATED", "saga.state")
    equal([c["status"] for c in calls], [0, 2, 0, 0], "step spans' status")
    equal([c["attrs"].get("saga.kind") for c in calls],
          ["action", "action", "compensate", "compensate"], "saga.kind")
    ok("sync: a failed step and each compensation get a span of their own")

    # 3. An async saga: the workers' spans join the Run's trace.
    tid3 = "11112222333344445555666677778888"
    s = o.run("AsyncTrip", request_id="tr-async",
              metadata=(("traceparent", tp(tid3, "1234567890abcdef")),
                        ("baggage", "k=v")))
    equal(s.state, S.STATE_PENDING, "tr-async answered PENDING")
    equal(wait_state(o, "tr-async").state, S.STATE_COMPLETED,
          "tr-async state")
    spans = spans_of(tid3, 4)
    check_tree("tr-async", tid3, "1234567890abcdef", spans,
               ["t.Svc/A", "t.Svc/B"], worker=True)
    for c in calls_of("tr-async"):
        equal(c["metadata"].get("baggage"), "k=v", "baggage through the bus")
    ok("async: the master's Run span, the worker's saga span and the "
       "workers' step spans in one trace; the context travelled in the "
       "bus message")

    # 4. An invalid traceparent is never forwarded: a fresh trace instead.
    bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
    s = o.run("Trip", request_id="tr-bad",
              metadata=(("traceparent", bad), ("tracestate", "x=1")))
    equal(s.state, S.STATE_COMPLETED, "tr-bad state")
    got = [c["metadata"] for c in calls_of("tr-bad")]
    equal(len(got), 2, "tr-bad calls")
    for m in got:
        p = m.get("traceparent", "")
        check(p != bad and len(p) == 55 and p.startswith("00-") and
              p == p.lower(), "a fresh valid traceparent, got %r" % p)
        check("tracestate" not in m, "no tracestate with an invalid parent")
    fresh = got[0]["traceparent"][3:35]
    spans = spans_of(fresh, 4)
    check_tree("tr-bad", fresh, "", spans, ["t.Svc/A", "t.Svc/B"])
    ok("an invalid incoming traceparent is not forwarded: a fresh trace, "
       "a root Run span")

    # 5. A caller's unsampled trace: propagated, never exported.
    tid5 = "aaaabbbbccccddddeeeeffff00001111"
    s = o.run("Trip", request_id="tr-unsampled",
              metadata=(("traceparent", tp(tid5, "0102030405060708", "00")),))
    equal(s.state, S.STATE_COMPLETED, "tr-unsampled state")
    for c in calls_of("tr-unsampled"):
        p = c["metadata"].get("traceparent", "")
        check(p.startswith("00-" + tid5 + "-") and p.endswith("-00") and
              p != tp(tid5, "0102030405060708", "00"),
              "unsampled: the trace and its flag go on, got %r" % p)
    tid6 = "99998888777766665555444433332222"
    o.run("Trip", request_id="tr-after",
          metadata=(("traceparent", tp(tid6, "0102030405060708")),))
    spans_of(tid6, 4)
    equal(spans_of(tid5, 1, secs=0), [], "spans of an unsampled trace")
    ok("the caller's sampled flag is honoured: an unsampled trace is "
       "propagated (flag 00) and not exported")

    # 6. A Run through the HTTP JSON API: its traceparent header counts.
    import urllib.request
    tid8 = "abcdefabcdefabcdefabcdefabcdef01"
    req = urllib.request.Request(
        "http://127.0.0.1:%s/api/v1/sagas" % os.environ["HTTP_PORT"],
        data=json.dumps({"flow": "Trip", "requestId": "tr-http"}).encode(),
        headers={"Content-Type": "application/json",
                 "traceparent": tp(tid8, "fedcba9876543210")}, method="POST")
    with urllib.request.urlopen(req, timeout=20) as r:
        equal(json.loads(r.read())["state"], "STATE_COMPLETED", "tr-http")
    check_tree("tr-http", tid8, "fedcba9876543210", spans_of(tid8, 4),
               ["t.Svc/A", "t.Svc/B"])
    ok("a Run through POST /api/v1/sagas: the same spans, parented on its "
       "traceparent header")

    # 7. No traceparent: the saga's trace derives from its id, so an
    # operator's Retry (no context stored) goes on in the same trace.
    s = o.run("TripStock", request_id="tr-retry")
    equal(s.state, S.STATE_FAILED, "tr-retry state")
    first = calls_of("tr-retry")
    tid7 = first[0]["metadata"]["traceparent"][3:35]
    check(all(c["metadata"]["traceparent"][3:35] == tid7 for c in first),
          "one trace for the first calls")
    spans = spans_of(tid7, 6)
    runs = [x for x in spans if x["kind"] == SERVER]
    equal(len(runs), 1, "tr-retry Run spans")
    equal(runs[0]["parent_span_id"], "", "a Run without traceparent is a root")
    with open(CALLS + ".heal", "w") as f:
        f.write("healed\n")
    s = o.retry("tr-retry")
    equal(wait_state(o, "tr-retry").state, S.STATE_COMPENSATED,
          "tr-retry after Retry")
    later = calls_of("tr-retry")[len(first):]
    equal([c["method"] for c in later], ["/t.Svc/UndoFlaky"],
          "the retried compensation")
    check(later[0]["metadata"]["traceparent"][3:35] == tid7,
          "the retried call is in the saga's trace")
    spans = spans_of(tid7, 9)
    undo = [x for x in spans if x["name"] == "t.Svc/UndoFlaky"]
    equal(len(undo), 2, "spans of UndoFlaky: failed, then retried")
    equal([x["status"] for x in sorted(undo, key=lambda x: x["start"])],
          [2, 0], "UndoFlaky spans' status")
    ok("a saga without traceparent gets a trace derived from its id: the "
       "operator's Retry goes on in it")

    posts = int(open(SPANS + ".posts").read()) if os.path.exists(
        SPANS + ".posts") else 0
    conns = int(open(SPANS + ".conns").read())
    check(conns < posts, "connections reused: %d connections for %d "
          "POSTs" % (conns, posts))
    ok("the exporter keeps its HTTP/1.1 connection: %d connections for %d "
       "batches" % (conns, posts))


def dead():
    """The collector is gone: every saga still ends, and none is slow."""
    o = Orch(int(os.environ["SAGAD_PORT"]))
    t0 = time.time()
    futs = [o.run_future("Trip", request_id="dead-%d" % i) for i in range(40)]
    for f in futs:
        equal(f.result().state, S.STATE_COMPLETED, "state, collector down")
    for i in range(5):
        o.run("AsyncTrip", request_id="dead-async-%d" % i)
    for i in range(5):
        equal(wait_state(o, "dead-async-%d" % i).state, S.STATE_COMPLETED,
              "async state, collector down")
    ok("a dead collector costs no saga: 40 sync and 5 async sagas "
       "completed in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    {"main": main, "dead": dead}[sys.argv[1]]()
