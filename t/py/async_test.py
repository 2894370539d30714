"""async_test.py - async sagas end to end, driven by python3-grpcio against
a real sagad whose sagad-worker processes consume NATS JetStream and keep
the sagas in Redis (t/async.sh starts everything): completion, rollback,
retries delayed through the bus, business failures not retried, and
callbacks (the JSON, retried on 5xx, given up on a dead receiver, sent on
keep-alive connections).

Usage: async_test.py main|reload
"""

import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import (  # noqa: E402
    Orch, Participant, R, S, check, equal, fail, ok)

FLOW = "AsyncBooking"


def orch():
    return Orch(int(os.environ["SAGAD_PORT"]))


def final(o, saga_id, secs=20):
    s = o.wait_final(saga_id, secs)
    check(hasattr(s, "state") and s.state >= S.STATE_COMPLETED,
          "saga %s did not end in %ds: %r" % (saga_id, secs, s))
    return s


def step(s, name):
    for st in s.steps:
        if st.name == name:
            return st
    fail("saga %s has no step %s" % (s.id, name))
    return None


def start(o, saga_id, ctx=None, callback=""):
    req = o.request(FLOW, ctx or {"amount": "10"}, saga_id)
    req.callback_url = callback
    s = o.run_rpc(req, timeout=10)
    equal(s.id, saga_id, "Run answers with the saga's id")
    equal(s.mode, 2, "Run answers MODE_ASYNC")
    return s


def test_completion(o, order, payment):
    t0 = time.time()
    s = start(o, "as-ok")
    check(time.time() - t0 < 5, "Run of an async saga answers at once")
    check(s.state in (S.STATE_PENDING, S.STATE_RUNNING),
          "Run answers before the saga ends: %s" % S.Name(s.state))
    s = final(o, "as-ok")
    equal(s.state, S.STATE_COMPLETED, "async saga state")
    equal([st.state for st in s.steps], [S.STATE_COMPLETED] * 2,
          "step states")
    equal([st.attempts for st in s.steps], [1, 1], "attempts")
    check(s.context["order_id"].startswith(b"ord-"), "order_id in context")
    check(s.context["payment_id"].startswith(b"pay-"),
          "payment_id in context")
    r = order.record("as-ok")
    equal(r.state, R.RECORD_STATE_ACTIVE, "order record")
    equal(r.creates, 1, "order Creates")
    equal(payment.record("as-ok").creates, 1, "payment Creates")
    ev = o.watch("as-ok")
    equal(ev[-1].step, "", "the last event is the saga's")
    equal(ev[-1].state, S.STATE_COMPLETED, "the last event's state")
    ok("an async saga completes through the workers; Run answered at once")


def test_rollback(o, order, payment):
    start(o, "as-rb", {"amount": "10", "fault": "payment"})
    s = final(o, "as-rb")
    equal(s.state, S.STATE_COMPENSATED, "rolled back saga")
    equal([st.state for st in s.steps], [S.STATE_COMPENSATED] * 2,
          "both steps compensated, the failed one too")
    check("ABORTED" in s.error, "saga error names the status: %r" % s.error)
    equal(order.record("as-rb").state, R.RECORD_STATE_CANCELLED,
          "order record after the rollback")
    r = payment.record("as-rb")
    equal(r.creates, 1, "a business failure is not retried")
    equal(step(s, "CreatePayment").attempts, 2,
          "CreatePayment: one action and one compensation")
    # Compensation in reverse: payment's undo before order's.
    undo = [e.step for e in o.watch("as-rb")
            if e.state == S.STATE_COMPENSATED and e.step]
    equal(undo, ["CreatePayment", "CreateOrder"], "compensation order")
    ok("a failed async saga is compensated in reverse; order CANCELLED")

    start(o, "as-rb0", {"amount": "10", "fault": "order"})
    s = final(o, "as-rb0")
    equal(s.state, S.STATE_COMPENSATED, "first step failed")
    equal(step(s, "CreatePayment").state, S.STATE_PENDING,
          "a step never started stays PENDING")
    check(payment.record("as-rb0") is None, "payment never called")
    check(order.record("as-rb0").state != R.RECORD_STATE_ACTIVE,
          "no active order")
    ok("a failed first step compensates only itself")


def test_retries(o, payment):
    start(o, "as-flaky", {"amount": "10", "flaky": "payment:2"})
    s = final(o, "as-flaky")
    equal(s.state, S.STATE_COMPLETED, "flaky saga")
    equal(step(s, "CreatePayment").attempts, 3, "CreatePayment attempts")
    equal(payment.record("as-flaky").creates, 3, "payment Creates")
    ev = [e for e in o.watch("as-flaky") if e.step == "CreatePayment"]
    fails = [e for e in ev if e.error]
    equal([e.attempt for e in fails], [1, 2], "failed attempts")
    check(all("UNAVAILABLE" in e.error for e in fails), "their errors")
    # Each retry came back from the bus after its backoff (50 ms base,
    # never less than half).
    runs = [e for e in ev if e.state == S.STATE_RUNNING and not e.error]
    equal([e.attempt for e in runs], [1, 2, 3], "attempts started")
    for f, r in zip(fails, runs[1:]):
        check(r.unix_ms - f.unix_ms >= 20,
              "retry %d came %d ms after the failure" %
              (r.attempt, r.unix_ms - f.unix_ms))
    ok("a transient failure is retried through the bus with a delay, "
       "3 attempts")

    start(o, "as-exhaust", {"amount": "10", "flaky": "payment:5"})
    s = final(o, "as-exhaust")
    equal(s.state, S.STATE_COMPENSATED, "retries spent")
    equal(payment.record("as-exhaust").creates, 3,
          "1 + retries Creates, then compensation")
    ok("spent retries compensate the saga")


def callbacks_of(saga_id, secs, n=1):
    path = os.environ["RECEIVER_LOG"]
    deadline = time.time() + secs
    while True:
        with open(path) as f:
            got = [json.loads(line) for line in f if line.strip()]
        got = [c for c in got if c["id"] == saga_id]
        if len(got) >= n or time.time() >= deadline:
            return got
        time.sleep(0.1)


def test_callbacks(o):
    port = int(os.environ["RECEIVER_PORT"])
    url = "http://127.0.0.1:%d/ok/cb-1" % port
    start(o, "as-cb", {"amount": "12"}, callback=url)
    s = final(o, "as-cb")
    got = callbacks_of("as-cb", 15)
    equal(len(got), 1, "callbacks received")
    c = got[0]
    equal(c["path"], "/ok/cb-1", "callback path")
    equal(c["content_type"], "application/json", "Content-Type")
    j = json.loads(c["body"])
    equal(j["id"], "as-cb", "json id")
    equal(j["flow"], FLOW, "json flow")
    equal(j["mode"], "MODE_ASYNC", "json mode")
    equal(j["state"], "STATE_COMPLETED", "json state")
    equal(base64.b64decode(j["context"]["amount"]), b"12",
          "json context is base64")
    equal(base64.b64decode(j["context"]["order_id"]), s.context["order_id"],
          "json order_id")
    equal([x["name"] for x in j["steps"]], ["CreateOrder", "CreatePayment"],
          "json steps")
    equal([x["state"] for x in j["steps"]], ["STATE_COMPLETED"] * 2,
          "json step states")
    equal([x["attempts"] for x in j["steps"]], [1, 1], "json attempts")
    equal(j["error"], "", "json error")
    equal(j["createdUnixMs"], str(s.created_unix_ms), "json createdUnixMs")
    equal(j["updatedUnixMs"], str(s.updated_unix_ms), "json updatedUnixMs")
    ok("the callback POSTs the final saga as application/json")

    url = "http://127.0.0.1:%d/ok/cb-rb" % port
    start(o, "as-cb-rb", {"amount": "1", "fault": "payment"}, callback=url)
    got = callbacks_of("as-cb-rb", 15)
    equal(len(got), 1, "callbacks of a rolled back saga")
    j = json.loads(got[0]["body"])
    equal(j["state"], "STATE_COMPENSATED", "json state of a rollback")
    check("ABORTED" in j["error"], "json error of a rollback")
    ok("a compensated saga's callback carries its state and error")

    url = "http://127.0.0.1:%d/flaky/x" % port
    start(o, "as-cb-flaky", callback=url)
    got = callbacks_of("as-cb-flaky", 20, 3)
    equal([c["status"] for c in got], [500, 500, 200],
          "answers to the callback's tries")
    time.sleep(1)
    equal(len(callbacks_of("as-cb-flaky", 0, 3)), 3,
          "no try after the 200")
    ok("a callback answered 500 twice is delivered on the 3rd try")

    url = "http://127.0.0.1:%d/reject/x" % port
    start(o, "as-cb-400", callback=url)
    got = callbacks_of("as-cb-400", 15)
    time.sleep(1)
    equal(len(callbacks_of("as-cb-400", 0, 1)), 1,
          "a 4xx answer is not retried")
    ok("a callback answered 400 is not retried")

    dead = int(os.environ["DEAD_PORT"])
    start(o, "as-cb-dead", callback="http://127.0.0.1:%d/cb" % dead)
    final(o, "as-cb-dead")
    log = os.path.join(os.environ["LIB_TMP"], "sagad.log")
    deadline = time.time() + 20
    line = None
    while time.time() < deadline and line is None:
        with open(log, errors="replace") as f:
            for ln in f:
                if "as-cb-dead" in ln and "giving up" in ln:
                    line = ln
        time.sleep(0.2)
    check(line is not None, "no give-up line for a dead receiver")
    check("after 3 tries" in line, "gave up after retries+1 tries: %s" % line)
    ok("a dead receiver: the callback gives up after callbacks.retries "
       "with a log line")


def connections():
    try:
        with open(os.environ["RECEIVER_LOG"] + ".conns") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def test_keepalive(o):
    """N callbacks to one receiver reuse their connections (keep-alive:
    far fewer connections than callbacks; the workers of the last step make
    each callback's first try); a receiver that closes after each answer
    still gets every callback, once.

    The sagas go in waves of 10, each after the last one's callbacks: a
    pool opens a connection only when none of its own is idle, so the two
    ending workers' pools hold at most 10 each, whatever the timing (one
    burst of 60 made the count a measure of how many POSTs overlapped)."""
    port = int(os.environ["RECEIVER_PORT"])
    n, wave = 60, 10
    before = connections()
    for w in range(0, n, wave):
        ids = ["as-ka-%d" % i for i in range(w, w + wave)]
        for i in ids:
            start(o, i, callback="http://127.0.0.1:%d/ok/ka" % port)
        for i in ids:
            equal(len(callbacks_of(i, 20)), 1, "callback of %s" % i)
        time.sleep(0.2)         # the answers read: the connections idle
    opened = connections() - before
    check(1 <= opened <= n // 3, "%d callbacks came on %d connections, "
          "expected reuse (at most %d)" % (n, opened, n // 3))
    ok("%d callbacks to one receiver came on %d keep-alive connections"
       % (n, opened))

    ids = ["as-close-%d" % i for i in range(5)]
    for i in ids:
        start(o, i, callback="http://127.0.0.1:%d/close/x" % port)
    for i in ids:
        got = callbacks_of(i, 20)
        equal(len(got), 1, "callback of %s" % i)
        equal(got[0]["status"], 200, "status of %s" % i)
    time.sleep(1)
    for i in ids:
        equal(len(callbacks_of(i, 0, 2)), 1, "one POST for %s" % i)
    ok("a receiver answering Connection: close gets each callback once")


def main():
    o = orch()
    order = Participant(int(os.environ["ORDER_PORT"]), "order")
    payment = Participant(int(os.environ["PAYMENT_PORT"]), "payment")
    test_completion(o, order, payment)
    test_rollback(o, order, payment)
    test_retries(o, payment)
    test_callbacks(o)
    test_keepalive(o)


def reload():
    """After a SIGHUP that set CreatePayment's retries to 0."""
    o = orch()
    payment = Participant(int(os.environ["PAYMENT_PORT"]), "payment")
    start(o, "as-hup", {"amount": "10", "flaky": "payment:1"})
    s = final(o, "as-hup")
    equal(s.state, S.STATE_COMPENSATED, "flaky saga after retries = 0")
    equal(payment.record("as-hup").creates, 1, "payment Creates")
    ok("SIGHUP: the workers apply a node's new retries to new sagas")


if __name__ == "__main__":
    {"main": main, "reload": reload}[sys.argv[1]]()
