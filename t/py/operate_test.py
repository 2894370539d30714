"""operate_test.py - the operator's calls against two real sagad pods (see
t/operate.sh): List, Cancel, Retry and Resolve, as the contract of
DESIGN.md ("Operator semantics") says. Each subcommand is one scenario.
"""

import os
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import (S, SC, Orch, Participant, check, equal,  # noqa: E402
                      expect_error, fail, ok, rpc_error)
from saga.v1 import saga_pb2  # noqa: E402

R = None  # booking RecordState, set in main


def pods():
    return Orch(int(os.environ["A_PORT"])), Orch(int(os.environ["B_PORT"]))


def parts():
    return (Participant(int(os.environ["ORDER_PORT"]), "order"),
            Participant(int(os.environ["PAYMENT_PORT"]), "payment"))


def wait_state(orch, saga_id, secs):
    s = orch.wait_final(saga_id, secs)
    check(not isinstance(s, SC) and s is not None,
          "%s: no final state in %ds (%r)" % (saga_id, secs, s))
    return s


def wait_running_call(orch, saga_id, secs=15):
    """Until the saga's first call is in flight: RUNNING with its first step
    started; a queued saga reads PENDING until its first result, so there,
    a little after it is stored (a worker takes its work in milliseconds)."""
    deadline = time.time() + secs
    while time.time() < deadline:
        code, s = rpc_error(orch.get, saga_id)
        if code == SC.OK and s.state == S.STATE_RUNNING and \
                s.steps[0].state == S.STATE_RUNNING:
            return s
        if code == SC.OK and s.mode != saga_pb2.MODE_SYNC and \
                s.state == S.STATE_PENDING:
            time.sleep(0.3)
            return s
        time.sleep(0.02)
    fail("%s: not RUNNING with a call in flight after %ds" % (saga_id, secs))


# --- List ----------------------------------------------------------------------


def t_list():
    a, b = pods()
    t0 = int(time.time() * 1000)
    want = {}
    pool = futures.ThreadPoolExecutor(64)

    def one(i):
        flow = "Booking2" if i % 5 == 0 else "Booking"
        ctx = {"fault": "payment"} if i % 4 == 0 else {}
        orch = a if i % 2 else b
        s = orch.run(flow, ctx, request_id="list-%05d" % i, timeout=60)
        return s

    for s in pool.map(one, range(5000)):
        want[s.id] = s
    pool.shutdown()
    t1 = int(time.time() * 1000) + 1
    equal(len(want), 5000, "sagas run")

    got, pages = a.list_all(page_size=137, since=t0, until=t1)
    ids = [s.id for s in got]
    equal(len(ids), 5000, "sagas listed over %d pages" % pages)
    equal(len(set(ids)), 5000, "distinct sagas listed (no duplicates)")
    equal(set(ids), set(want), "the sagas listed are the sagas run (no gaps)")
    check(pages == (5000 + 136) // 137, "pages: %d" % pages)
    for x, y in zip(got, got[1:]):
        check((x.created_unix_ms, x.id) > (y.created_unix_ms, y.id),
              "newest first, ties by id: %s then %s" % (x.id, y.id))
    for s in got:
        equal(s.state, want[s.id].state, "listed state of %s" % s.id)
    ok("List pages 5,000 sagas newest first: no duplicates, no gaps")

    # Each filter, against the same sagas filtered here.
    comp = [s.id for s in got if s.state == S.STATE_COMPENSATED]
    lst, _ = b.list_all(states=[S.STATE_COMPENSATED], since=t0, until=t1,
                        page_size=400)
    equal([s.id for s in lst], comp, "states=[COMPENSATED]")
    both, _ = a.list_all(states=[S.STATE_COMPENSATED, S.STATE_COMPLETED],
                         since=t0, until=t1, page_size=333)
    equal([s.id for s in both], ids, "states=[COMPENSATED, COMPLETED]")
    f2 = [s.id for s in got if s.flow == "Booking2"]
    lst, _ = a.list_all(flow="Booking2", since=t0, until=t1, page_size=99)
    equal([s.id for s in lst], f2, "flow=Booking2")
    f2c = [s.id for s in got if s.flow == "Booking2" and
           s.state == S.STATE_COMPENSATED]
    lst, _ = a.list_all(flow="Booking2", states=[S.STATE_COMPENSATED],
                        since=t0, until=t1, page_size=50)
    equal([s.id for s in lst], f2c, "flow=Booking2, states=[COMPENSATED]")
    check(len(f2c) > 0 and len(comp) > len(f2c), "the filters select")
    mid = got[2500].created_unix_ms
    lo = [s.id for s in got if s.created_unix_ms >= mid]
    lst, _ = a.list_all(since=mid, until=t1, page_size=1000)
    equal([s.id for s in lst], lo, "since (inclusive)")
    hi = [s.id for s in got if s.created_unix_ms < mid]
    lst, _ = a.list_all(since=t0, until=mid, page_size=1000)
    equal([s.id for s in lst], hi, "until (exclusive)")
    r = a.list(since=t0, until=t1)
    equal(len(r.sagas), 100, "page_size 0 means 100")
    r = a.list(since=t0, until=t1, page_size=5000)
    equal(len(r.sagas), 1000, "page_size is at most 1000")
    r = a.list(states=[S.STATE_RESOLVED], since=t0, until=t1)
    equal((len(r.sagas), r.next_page_token), (0, ""), "an empty page")
    ok("List filters by state, flow, since and until, paged")


def t_bad_input():
    a, _ = pods()
    for req, what in [
            (dict(states=[99]), "an unknown state"),
            (dict(states=[0]), "STATE_UNSPECIFIED"),
            (dict(page_token="garbage"), "a page token not given"),
            (dict(page_token="12.zz"), "a page token with bad hex"),
            (dict(page_size=-1), "a negative page size"),
            (dict(since=5, until=5), "since >= until"),
            (dict(since=-1), "a negative since"),
            (dict(flow="a b"), "a flow name with a space")]:
        expect_error(SC.INVALID_ARGUMENT, a.list, **req)
        ok("List refuses %s: INVALID_ARGUMENT" % what)
    expect_error(SC.NOT_FOUND, a.cancel, "no-such-saga", "x")
    expect_error(SC.NOT_FOUND, a.retry, "no-such-saga")
    expect_error(SC.NOT_FOUND, a.resolve, "no-such-saga", "fixed")
    ok("Cancel, Retry, Resolve of an unknown id: NOT_FOUND")
    expect_error(SC.INVALID_ARGUMENT, a.cancel, "", "x")
    expect_error(SC.INVALID_ARGUMENT, a.cancel, "bad id", "x")
    expect_error(SC.INVALID_ARGUMENT, a.cancel, "x", "r" * 2000)
    expect_error(SC.INVALID_ARGUMENT, a.retry, "")
    expect_error(SC.INVALID_ARGUMENT, a.resolve, "x", "")
    ok("a missing or bad id, an oversized reason, an empty note: "
       "INVALID_ARGUMENT")
    s = a.run("Booking", request_id="bad-done")
    equal(s.state, S.STATE_COMPLETED, "a completed saga")
    expect_error(SC.FAILED_PRECONDITION, a.cancel, "bad-done", "late")
    expect_error(SC.FAILED_PRECONDITION, a.retry, "bad-done")
    expect_error(SC.FAILED_PRECONDITION, a.resolve, "bad-done", "n/a")
    ok("Cancel, Retry, Resolve of a COMPLETED saga: FAILED_PRECONDITION")


# --- Cancel --------------------------------------------------------------------


def cancel_stuck(run_on, cancel_on, saga_id, flow="Booking"):
    """Runs saga_id with its order call taking 30 s; cancels it; the held
    Run must answer COMPENSATED long before that call could have ended
    (how soon is printed, not asserted: a loaded CI box is slow)."""
    order, payment = parts()
    fut = run_on.run_future(flow, {"delay": "order:30000"},
                            request_id=saga_id, timeout=40)
    wait_running_call(cancel_on, saga_id)
    t = time.time()
    c = cancel_on.cancel(saga_id, "stuck behind a slow order service")
    check(c.state in (S.STATE_PENDING, S.STATE_RUNNING,
                      S.STATE_COMPENSATING),
          "Cancel answers the saga as it stands: %s" % S.Name(c.state))
    s = fut.result(timeout=20)
    took = time.time() - t
    equal(S.Name(s.state), "STATE_COMPENSATED", "the held Run's answer")
    equal(s.error, "cancelled: stuck behind a slow order service", "error")
    equal(s.steps[0].state, S.STATE_COMPENSATED, "the step in flight "
          "counts as started and is compensated")
    equal(s.steps[1].state, S.STATE_PENDING, "no further action started")
    rec = order.record(saga_id)
    check(rec is None or rec.state != R.RECORD_STATE_ACTIVE,
          "order holds no ACTIVE record after the cancel")
    equal(payment.record(saga_id), None, "payment was never called")
    return took


def t_cancel_sync():
    a, _ = pods()
    took = cancel_stuck(a, a, "cancel-sync-1")
    ok("Cancel of a sync saga stuck on a 30 s call: the held Run answers "
       "COMPENSATED %.0f ms later" % (took * 1000))


def t_cancel_other_pod():
    a, b = pods()
    took = cancel_stuck(a, b, "cancel-sync-2")
    ok("Cancel on pod-b of a sync saga pod-a drives: COMPENSATED %.0f ms "
       "later" % (took * 1000))
    took = cancel_stuck(a, b, "cancel-throttling-1", "ThrottlingBooking")
    ok("Cancel on pod-b of a throttling saga held on pod-a: COMPENSATED "
       "%.0f ms later" % (took * 1000))
    order, payment = parts()
    s = a.run("AsyncBooking", {"delay": "order:30000"},
              request_id="cancel-async-1")
    check(s.state in (S.STATE_PENDING, S.STATE_RUNNING), "async accepted")
    wait_running_call(b, "cancel-async-1")
    t = time.time()
    b.cancel("cancel-async-1", "not wanted any more")
    s = wait_state(b, "cancel-async-1", 20)
    took = time.time() - t
    equal(S.Name(s.state), "STATE_COMPENSATED", "async saga after Cancel")
    equal(s.error, "cancelled: not wanted any more", "async error")
    equal(payment.record("cancel-async-1"), None, "payment never called")
    ok("Cancel on pod-b of an async saga a worker drives: COMPENSATED %.0f "
       "ms later" % (took * 1000))


def t_cancel_compensating():
    a, b = pods()
    fut = a.run_future("Booking", {"fault": "payment",
                                   "delay_undo": "order:2000"},
                       request_id="cancel-comp-1")
    deadline, s = time.time() + 5, None
    while time.time() < deadline:
        code, got = rpc_error(a.get, "cancel-comp-1")  # the Run may
        if code == SC.OK:  # not have landed
            s = got
            if s.state == S.STATE_COMPENSATING:
                break
        time.sleep(0.02)
    check(s is not None, "cancel-comp-1 never stored")
    equal(S.Name(s.state), "STATE_COMPENSATING", "saga compensating")
    c = b.cancel("cancel-comp-1", "twice")
    equal(S.Name(c.state), "STATE_COMPENSATING", "Cancel of a COMPENSATING "
          "saga answers it unchanged")
    s = fut.result(timeout=10)
    equal(S.Name(s.state), "STATE_COMPENSATED", "it ends as it would")
    check(not s.error.startswith("cancelled"), "its error is its own")
    ok("Cancel of a COMPENSATING saga answers it unchanged")


def t_cancel_race():
    """1,000 sagas each cancelled as it runs: each ends exactly once, in
    one state, and the participants agree with it."""
    a, b = pods()
    order, payment = parts()
    n = 1000
    pool = futures.ThreadPoolExecutor(48)
    lock = threading.Lock()
    answers = {}

    def one(i):
        sid = "race-%04d" % i
        run_on, cancel_on = (a, b) if i % 2 else (b, a)
        fut = run_on.run_future("Booking", request_id=sid, timeout=30)
        time.sleep((i % 7) * 0.001)
        code, c = rpc_error(cancel_on.cancel, sid, "race")
        s = fut.result(timeout=30)
        with lock:
            answers[sid] = (code, c, s)

    list(pool.map(one, range(n)))
    pool.shutdown()
    orders, payments = order.records(), payment.records()
    counts = {}
    for sid, (code, c, held) in answers.items():
        check(code in (SC.OK, SC.FAILED_PRECONDITION, SC.NOT_FOUND),
              "%s: Cancel answered %s" % (sid, code))
        s = wait_state(a, sid, 10)
        equal(s.state, held.state, "%s: the held Run and Get agree" % sid)
        counts[S.Name(s.state)] = counts.get(S.Name(s.state), 0) + 1
        o, p = orders.get(sid), payments.get(sid)
        if s.state == S.STATE_COMPLETED:
            check(o is not None and o.state == R.RECORD_STATE_ACTIVE and
                  p is not None and p.state == R.RECORD_STATE_ACTIVE,
                  "%s: COMPLETED, yet a participant record is not ACTIVE"
                  % sid)
            check(code != SC.OK or c.state == S.STATE_RUNNING,
                  "%s: completed after Cancel said compensating" % sid)
        else:
            equal(S.Name(s.state), "STATE_COMPENSATED", "%s: state" % sid)
            check(s.error == "cancelled: race", "%s: error %r" %
                  (sid, s.error))
            for name, r in (("order", o), ("payment", p)):
                check(r is None or r.state != R.RECORD_STATE_ACTIVE,
                      "%s: COMPENSATED, yet %s is ACTIVE" % (sid, name))
    for sid in list(answers)[:100]:
        finals = [e for e in a.watch(sid) if e.step == "" and
                  e.state >= S.STATE_COMPLETED]
        equal(len(finals), 1, "%s: final saga events" % sid)
    check(counts.get("STATE_COMPENSATED", 0) > 0,
          "some cancels won: %r" % counts)
    ok("Cancel racing completion %d times: each saga ended once %r, the "
       "participants agree" % (n, counts))


# --- FAILED: Retry and Resolve --------------------------------------------------


def t_make_failed(saga_id, flow):
    """A saga whose order compensation fails its first 3 calls: with
    compensate_retries = 1 it ends FAILED."""
    a, _ = pods()
    ctx = {"fault": "payment", "fault_undo": "order:3"}
    if flow == "AsyncBooking":
        a.run(flow, ctx, request_id=saga_id)
        s = wait_state(a, saga_id, 10)
    else:
        s = a.run(flow, ctx, request_id=saga_id)
    equal(S.Name(s.state), "STATE_FAILED", "%s: state" % saga_id)
    check("compensation of CreateOrder failed" in s.error,
          "%s: error %r" % (saga_id, s.error))
    lst = a.list(states=[S.STATE_FAILED], page_size=1000)
    check(saga_id in [x.id for x in lst.sagas], "List finds it FAILED")
    ok("%s (%s) FAILED, and List --state FAILED finds it" % (saga_id, flow))


def t_retry(saga_id):
    a, b = pods()
    order, _ = parts()
    s = b.retry(saga_id)
    equal(S.Name(s.state), "STATE_COMPENSATING", "Retry's answer")
    s = wait_state(a, saga_id, 10)
    equal(S.Name(s.state), "STATE_COMPENSATED", "after Retry")
    equal(s.steps[0].state, S.STATE_COMPENSATED, "CreateOrder undone")
    equal(order.record(saga_id).state, R.RECORD_STATE_CANCELLED, "order record")
    expect_error(SC.FAILED_PRECONDITION, a.retry, saga_id)
    ok("Retry of FAILED %s once order is back: COMPENSATED" % saga_id)


def t_resolved(saga_id):
    """After `sagactl resolve`: what every client sees."""
    a, b = pods()
    equal(S.Name(a.get(saga_id).state), "STATE_RESOLVED", "Get")
    last = a.watch(saga_id)[-1]
    equal((last.step, S.Name(last.state), last.error),
          ("", "STATE_RESOLVED", "order 17 refunded by hand, ticket OPS-4"),
          "the last event")
    expect_error(SC.FAILED_PRECONDITION, a.resolve, saga_id, "again")
    expect_error(SC.FAILED_PRECONDITION, a.retry, saga_id)
    lst = a.list(states=[S.STATE_RESOLVED], page_size=1000)
    check(saga_id in [x.id for x in lst.sagas], "List finds it RESOLVED")
    ok("Resolve of FAILED %s: RESOLVED with the note as its event" % saga_id)


def main():
    global R
    import booking_pb2
    R = booking_pb2.RecordState
    cmd, args = sys.argv[1], sys.argv[2:]
    {"list": t_list, "bad_input": t_bad_input, "cancel_sync": t_cancel_sync,
     "cancel_other_pod": t_cancel_other_pod,
     "cancel_compensating": t_cancel_compensating,
     "cancel_race": t_cancel_race, "make_failed": t_make_failed,
     "retry": t_retry, "resolved": t_resolved}[cmd](*args)


if __name__ == "__main__":
    main()
