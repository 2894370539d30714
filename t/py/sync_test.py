"""sync_test.py - sync sagas end to end, driven by python3-grpcio against a
real sagad, real participants (examples/booking) and t/py/raw_server.py.
t/sync.sh starts them, exports their ports and calls one phase at a time:

  main        every scenario with Redis up (one "ok - ..." line per check)
  redis_down  Redis stopped: Run and Get UNAVAILABLE, Health NOT_SERVING
  redis_back  Redis restarted: SERVING again, Run works, old sagas kept
  drain       SIGTERM to sagad (SAGAD_PID): Health Watch sees NOT_SERVING,
              the saga in flight still completes

Each check compares exact values and exits 1 at the first mismatch.
"""

import os
import re
import signal
import sys
import time

from sync_lib import (GEN, NOT_SERVING, R, S, SC, SERVING, Orch, Participant,
                      RawService, check, env_port, equal, expect_error, fail,
                      now_ms, ok, rpc_error, saga_pb2)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BOOKING = ["CreateOrder", "CreatePayment"]


def steps_of(s):
    return [(st.name, st.state, st.attempts) for st in s.steps]


def events_of(evs):
    return [(e.step, e.state, e.attempt) for e in evs]


def ctx_of(s):
    return dict(s.context)


class T:
    def __init__(self):
        self.o = Orch(env_port("SAGAD_PORT"))
        self.order = Participant(env_port("ORDER_PORT"), "order")
        self.payment = Participant(env_port("PAYMENT_PORT"), "payment")
        self.slow = Participant(env_port("SLOW_PORT"), "order")
        self.stock = RawService(env_port("STOCK_PORT"))

    # --- 1 -------------------------------------------------------------------
    def completion(self):
        o = self.o
        t0 = now_ms()
        s = o.run("Booking", {"amount": "42"}, request_id="t1-complete")
        t1 = now_ms()
        equal(s.id, "t1-complete", "saga id")
        equal(s.flow, "Booking", "flow")
        equal(s.mode, saga_pb2.MODE_SYNC, "mode")
        equal(s.state, S.STATE_COMPLETED, "state")
        equal(s.error, "", "saga error")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPLETED, 1),
                            ("CreatePayment", S.STATE_COMPLETED, 1)],
              "steps (name, state, attempts)")
        equal([st.error for st in s.steps], ["", ""], "step errors")
        ok("Booking amount=42: COMPLETED, both steps COMPLETED in order "
           "with 1 attempt each")
        ctx = ctx_of(s)
        equal(sorted(ctx), ["amount", "order_id", "payment_id"],
              "context keys")
        equal(ctx["amount"], b"42", "context amount")
        check(re.fullmatch(rb"ord-[0-9]+", ctx["order_id"]) is not None,
              "order_id %r" % ctx["order_id"])
        check(re.fullmatch(rb"pay-[0-9]+", ctx["payment_id"]) is not None,
              "payment_id %r" % ctx["payment_id"])
        ok("the context holds amount and the order_id and payment_id the "
           "participants returned")
        a, b = s.steps
        times = [s.created_unix_ms, a.started_unix_ms, a.finished_unix_ms,
                 b.started_unix_ms, b.finished_unix_ms, s.updated_unix_ms]
        check(t0 <= times[0] and times[-1] <= t1,
              "timestamps %r outside the call [%d, %d]" % (times, t0, t1))
        equal(times, sorted(times), "created <= step times <= updated")
        ok("created, started, finished and updated are in order and within "
           "the Run call")
        for p, key, step in ((self.order, "order_id", "CreateOrder"),
                             (self.payment, "payment_id", "CreatePayment")):
            r = p.record(s.id)
            check(r is not None, "%s has no record of t1" % p.name)
            equal((r.state, r.id, r.step, r.amount, r.creates, r.cancels),
                  (R.RECORD_STATE_ACTIVE, ctx[key].decode(), step, "42", 1,
                   0), "%s record (state, id, step, amount, creates, "
                  "cancels)" % p.name)
        ok("order and payment each hold one ACTIVE record of the saga, with "
           "the ids sagad kept")
        got = o.get(s.id)
        equal(got, s, "Get after Run")
        ok("Get answers the saga exactly as Run did")
        flows = {f.name: (f.mode, list(f.steps))
                 for f in o.flows_rpc(saga_pb2.ListFlowsRequest()).flows}
        equal(flows["Booking"], (saga_pb2.MODE_SYNC, BOOKING),
              "ListFlows Booking")
        equal(sorted(flows), ["Booking", "Limited", "Queued", "Shop",
                              "ShopByOrder", "ShopOnce"],
              "ListFlows names")
        ok("ListFlows lists the configured flows with modes and steps")

    # --- 2 -------------------------------------------------------------------
    def rollback(self):
        o = self.o
        s = o.run("Booking", {"amount": "7", "fault": "payment"},
                  request_id="t2-rollback")
        equal(s.state, S.STATE_COMPENSATED, "state")
        equal(s.error, "CreatePayment: ABORTED: injected fault", "error")
        # attempts counts the calls of a step, action and compensation.
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("CreatePayment", S.STATE_COMPENSATED, 2)],
              "steps")
        check(b"payment_id" not in s.context, "payment_id in context")
        ok("fault=payment: COMPENSATED, error names CreatePayment and "
           "ABORTED, both steps COMPENSATED")
        r = self.order.record(s.id)
        equal((r.state, r.creates, r.cancels),
              (R.RECORD_STATE_CANCELLED, 1, 1), "order record")
        r = self.payment.record(s.id)
        equal((r.state, r.creates, r.cancels),
              (R.RECORD_STATE_TOMBSTONE, 1, 1), "payment record")
        ok("order's record is CANCELLED; payment was asked to undo its "
           "failed step once (TOMBSTONE)")
        evs = o.watch(s.id)
        equal(events_of(evs), [
            ("", S.STATE_RUNNING, 0),
            ("CreateOrder", S.STATE_RUNNING, 1),
            ("CreateOrder", S.STATE_COMPLETED, 1),
            ("CreatePayment", S.STATE_RUNNING, 1),
            ("CreatePayment", S.STATE_FAILED, 1),
            ("", S.STATE_COMPENSATING, 0),
            ("CreatePayment", S.STATE_COMPENSATING, 1),
            ("CreatePayment", S.STATE_COMPENSATED, 1),
            ("CreateOrder", S.STATE_COMPENSATING, 1),
            ("CreateOrder", S.STATE_COMPENSATED, 1),
            ("", S.STATE_COMPENSATED, 0)], "Watch events")
        equal(evs[4].error, "ABORTED: injected fault", "failed step event")
        equal(evs[-1].error, "CreatePayment: ABORTED: injected fault",
              "last event error")
        check(all(e.saga_id == s.id for e in evs), "event saga ids")
        ms = [e.unix_ms for e in evs]
        equal(ms, sorted(ms), "event times in order")
        check(ms[0] >= s.created_unix_ms and ms[-1] <= s.updated_unix_ms,
              "event times within the saga's")
        ok("Watch: the failed CreatePayment is compensated, and before "
           "CreateOrder (reverse order)")

    # --- 3 -------------------------------------------------------------------
    def retries(self):
        o = self.o
        s = o.run("Booking", {"flaky": "payment:2"}, request_id="t3-flaky2")
        equal(s.state, S.STATE_COMPLETED, "flaky=payment:2 state")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPLETED, 1),
                            ("CreatePayment", S.STATE_COMPLETED, 3)],
              "flaky=payment:2 steps")
        r = self.payment.record(s.id)
        equal((r.state, r.creates, r.cancels),
              (R.RECORD_STATE_ACTIVE, 3, 0), "payment record")
        runs = [(e.attempt, e.error) for e in o.watch(s.id)
                if e.step == "CreatePayment"]
        equal(runs, [(1, ""), (1, "UNAVAILABLE: injected flaky failure 1"),
                     (2, ""), (2, "UNAVAILABLE: injected flaky failure 2"),
                     (3, ""), (3, "")], "CreatePayment events")
        ok("flaky=payment:2: UNAVAILABLE retried, COMPLETED on attempt 3")

        s = o.run("Booking", {"flaky": "payment:3"}, request_id="t3-flaky3")
        equal(s.state, S.STATE_COMPENSATED, "flaky=payment:3 state")
        equal(s.error, "CreatePayment: UNAVAILABLE: injected flaky failure 3",
              "flaky=payment:3 error")
        # retries = 2: 3 calls of the action, then 1 compensation.
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("CreatePayment", S.STATE_COMPENSATED, 4)],
              "flaky=payment:3 steps")
        r = self.payment.record(s.id)
        equal((r.state, r.creates, r.cancels),
              (R.RECORD_STATE_TOMBSTONE, 3, 1), "payment record")
        actions = [e.attempt for e in o.watch(s.id)
                   if e.step == "CreatePayment" and e.state == S.STATE_RUNNING
                   and e.error == ""]
        equal(actions, [1, 2, 3], "CreatePayment action attempts")
        ok("flaky beyond retries=2: 3 calls (retries+1), then COMPENSATED")

        s = o.run("Booking", {"fault": "payment"}, request_id="t3-fault")
        r = self.payment.record(s.id)
        equal((s.state, r.creates, r.cancels), (S.STATE_COMPENSATED, 1, 1),
              "fault=payment (state, creates, cancels)")
        s = o.run("Booking", {"fault": "order"}, request_id="t3-fault-order")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("CreatePayment", S.STATE_PENDING, 0)],
              "fault=order steps")
        r = self.order.record(s.id)
        equal((s.state, r.creates, r.cancels), (S.STATE_COMPENSATED, 1, 1),
              "fault=order (state, creates, cancels)")
        check(self.payment.record(s.id) is None,
              "payment was called for fault=order")
        ok("business failures (ABORTED) are not retried; steps never "
           "started are neither called nor compensated")

    # --- 4 -------------------------------------------------------------------
    def timeouts(self):
        o = self.o
        t0 = time.time()
        s = o.run("Booking", {"delay": "payment:1000"},
                  request_id="t4-timeout")
        took = time.time() - t0
        equal(s.state, S.STATE_COMPENSATED, "state")
        equal(s.error, "CreatePayment: DEADLINE_EXCEEDED: deadline exceeded",
              "error")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("CreatePayment", S.STATE_COMPENSATED, 4)],
              "steps")
        errs = [(e.attempt, e.error) for e in o.watch(s.id)
                if e.step == "CreatePayment" and e.error]
        equal(errs, [(a, "DEADLINE_EXCEEDED: deadline exceeded")
                     for a in (1, 2, 3)], "CreatePayment failures")
        # Three calls of timeout_ms = 300 each, well short of the delay.
        check(0.9 <= took < 2.0, "Run took %.2f s, want 0.9..2" % took)
        ok("delay=payment:1000 > timeout_ms 300: DEADLINE_EXCEEDED retried "
           "twice, then COMPENSATED (%.2f s)" % took)
        # The participant applies a Create whose caller gave up when its
        # delay ends; the compensation must leave nothing ACTIVE.
        time.sleep(1.2)
        r = self.payment.record(s.id)
        check(r.state in (R.RECORD_STATE_CANCELLED, R.RECORD_STATE_TOMBSTONE),
              "payment record %s after the late Creates" %
              R.Name(r.state))
        equal((r.creates, r.cancels), (3, 1), "payment (creates, cancels)")
        ok("the timed-out Creates that landed late found the saga "
           "compensated: no payment left ACTIVE")

    # --- 5 -------------------------------------------------------------------
    def compensate_retries(self):
        o = self.o
        s = o.run("Booking", {"fault": "payment", "fault_undo": "order"},
                  request_id="t5-undo")
        equal(s.state, S.STATE_FAILED, "state")
        equal(s.error, "CreatePayment: ABORTED: injected fault; compensation "
              "of CreateOrder failed: UNAVAILABLE: injected undo failure 3",
              "error")
        equal(steps_of(s), [("CreateOrder", S.STATE_FAILED, 4),
                            ("CreatePayment", S.STATE_COMPENSATED, 2)],
              "steps")
        equal(s.steps[0].error, "UNAVAILABLE: injected undo failure 3",
              "CreateOrder step error")
        # Issue 11: the step that failed keeps its failure once undone.
        equal(s.steps[1].error, "ABORTED: injected fault",
              "CreatePayment step error")
        r = self.order.record(s.id)
        equal((r.state, r.creates, r.cancels), (R.RECORD_STATE_ACTIVE, 1, 3),
              "order record")
        evs = o.watch(s.id)
        equal((evs[-1].step, evs[-1].state, evs[-1].error),
              ("", S.STATE_FAILED, s.error), "last event")
        ok("fault_undo=order: Cancel called compensate_retries+1 = 3 times, "
           "then the saga is FAILED naming the compensation")

    # --- 6 -------------------------------------------------------------------
    def idempotency(self):
        o = self.o
        first = o.get("t1-complete")
        creates = (self.order.calls("Create"), self.payment.calls("Create"))
        again = o.run("Booking", {"amount": "99"}, request_id="t1-complete")
        equal(again, first, "second Run with a known id")
        equal((self.order.calls("Create"), self.payment.calls("Create")),
              creates, "participants' Create calls after the second Run")
        again = o.run("Booking", {"fault": "order"},
                      request_id="t2-rollback")
        equal(again, o.get("t2-rollback"), "second Run of a compensated saga")
        equal((self.order.calls("Create"), self.payment.calls("Create")),
              creates, "participants' Create calls")
        ok("a second Run with the same request_id runs nothing and returns "
           "the saga as it is")

        s = o.run("Booking", {"amount": "5"},
                  metadata=(("x-request-id", "t6-from-metadata"),))
        equal((s.id, s.state), ("t6-from-metadata", S.STATE_COMPLETED),
              "saga id from x-request-id")
        equal(self.order.record("t6-from-metadata").creates, 1,
              "order creates")
        s2 = o.run("Booking", {"amount": "5"}, request_id="t6-field",
                   metadata=(("x-request-id", "t6-ignored"),))
        equal(s2.id, "t6-field", "request_id wins over x-request-id")
        s3 = o.run("Booking", {"amount": "5"})
        check(re.fullmatch(r"[0-9a-f]{32}", s3.id) is not None,
              "generated id %r" % s3.id)
        equal(s3.state, S.STATE_COMPLETED, "generated-id saga state")
        ok("x-request-id names the saga when request_id is empty; without "
           "either, a 128-bit hex id is generated")

        fa = o.run_future("Booking", {"delay": "order:400"},
                          request_id="t6-concurrent")
        time.sleep(0.15)
        fb = o.run_future("Booking", {"amount": "1"},
                          request_id="t6-concurrent")
        a, b = fa.result(), fb.result()
        equal(a.state, S.STATE_COMPLETED, "first caller's state")
        equal(b, a, "the second caller's saga")
        check("amount" not in a.context, "the joining Run's context was used")
        r = self.order.record("t6-concurrent")
        equal((r.creates, self.payment.record("t6-concurrent").creates),
              (1, 1), "creates of the joined saga")
        ok("a concurrent second Run of a running saga waits and gets the "
           "same final saga; nothing runs twice")

    # --- 7 -------------------------------------------------------------------
    def get_watch(self):
        o = self.o
        d = expect_error(SC.NOT_FOUND, o.get, "t7-nobody")
        check("no saga" in d, "NOT_FOUND details %r" % d)
        ok("Get of an unknown id: NOT_FOUND")
        expect_error(SC.NOT_FOUND, o.watch, "t7-nobody")
        ok("Watch of an unknown id: NOT_FOUND")
        expect_error(SC.INVALID_ARGUMENT, o.get, "")
        ok("Get without an id: INVALID_ARGUMENT")

        evs = o.watch("t1-complete")
        equal(events_of(evs), [
            ("", S.STATE_RUNNING, 0),
            ("CreateOrder", S.STATE_RUNNING, 1),
            ("CreateOrder", S.STATE_COMPLETED, 1),
            ("CreatePayment", S.STATE_RUNNING, 1),
            ("CreatePayment", S.STATE_COMPLETED, 1),
            ("", S.STATE_COMPLETED, 0)], "replayed events")
        ok("Watch of a finished saga replays all its events and ends OK")

        f = o.run_future("Booking", {"delay": "order:500"},
                         request_id="t7-live")
        time.sleep(0.15)
        t0 = time.time()
        live = o.watch("t7-live")
        took = time.time() - t0
        s = f.result()
        equal(s.state, S.STATE_COMPLETED, "state")
        check(took >= 0.2, "the live Watch ended after %.2f s, before the "
              "saga" % took)
        equal(live, o.watch("t7-live"), "live events vs replay")
        equal(events_of(live)[-1], ("", S.STATE_COMPLETED, 0), "last event")
        ok("Watch started while the saga runs follows it to its end "
           "(%.2f s) with the same events as a replay" % took)

    # --- 8 -------------------------------------------------------------------
    def bad_input(self):
        o = self.o
        d = expect_error(SC.NOT_FOUND, o.run, "Nope")
        check("Nope" in d, "details %r" % d)
        ok("unknown flow: NOT_FOUND")
        expect_error(SC.INVALID_ARGUMENT, o.run, "")
        ok("empty flow: INVALID_ARGUMENT")
        expect_error(SC.INVALID_ARGUMENT, o.run, "Booking", mode=7)
        ok("mode 7: INVALID_ARGUMENT")
        expect_error(SC.INVALID_ARGUMENT, o.run, "Booking",
                     request_id="has spaces")
        expect_error(SC.INVALID_ARGUMENT, o.run, "Booking",
                     request_id="x" * 129)
        ok("request_id with spaces, or longer than 128 bytes: "
           "INVALID_ARGUMENT")
        expect_error(SC.INVALID_ARGUMENT, o.run, "Booking",
                     metadata=(("x-request-id", "a{b}"),))
        ok("x-request-id with braces: INVALID_ARGUMENT")
        garbage = o.raw("/saga.v1.Orchestrator/Run")
        expect_error(SC.INTERNAL, garbage, b"\xff\xff\xff\xff", timeout=5)
        ok("unparsable request bytes: INTERNAL")
        before = self.order.calls("Create")
        big = b"x" * (4 * 1024 * 1024 + 16)
        expect_error(SC.RESOURCE_EXHAUSTED, o.run, "Booking", {"big": big},
                     request_id="t8-big")
        equal(self.order.calls("Create"), before, "order Creates")
        expect_error(SC.NOT_FOUND, o.get, "t8-big")
        ok("a request over 4 MiB: RESOURCE_EXHAUSTED, nothing started")
        expect_error(SC.UNIMPLEMENTED, o.raw("/saga.v1.Orchestrator/Nope"),
                     b"", timeout=5)
        ok("unknown method: UNIMPLEMENTED")
        expect_error(SC.UNIMPLEMENTED, o.raw("/shop.Nope/Run"), b"",
                     timeout=5)
        ok("unknown service: UNIMPLEMENTED")
        # Still serving after all that.
        equal(o.run("Booking", request_id="t8-after").state,
              S.STATE_COMPLETED, "a Run after the bad ones")

        t0 = time.time()
        d = expect_error(SC.DEADLINE_EXCEEDED, o.run, "Booking",
                         {"delay": "order:600"}, request_id="t8-deadline",
                         timeout=0.2)
        took = time.time() - t0
        check(took < 0.5, "the deadline answer came after %.2f s" % took)
        s = o.wait_final("t8-deadline", 5)
        check(not isinstance(s, SC) and s is not None,
              "Get t8-deadline: %r" % (s,))
        equal(s.state, S.STATE_COMPLETED, "state after the deadline")
        equal(self.payment.record("t8-deadline").state, R.RECORD_STATE_ACTIVE,
              "payment record")
        ok("client deadline passed: DEADLINE_EXCEEDED, and the saga went "
           "on to COMPLETED (Get)")

    # --- 9 -------------------------------------------------------------------
    def health(self):
        o = self.o
        equal(o.health(""), SERVING, "Check \"\"")
        equal(o.health("saga.v1.Orchestrator"), SERVING, "Check Orchestrator")
        ok("Health Check \"\" and saga.v1.Orchestrator: SERVING")
        expect_error(SC.NOT_FOUND, o.health, "shop.Nope")
        ok("Health Check of an unknown service: NOT_FOUND")

    # --- 10, 12 --------------------------------------------------------------
    def raw_mode(self):
        o = self.o
        body = b"\x00\x01sku-7\xff\x80\n"
        s = o.run("Shop", {"reserve_req": body}, request_id="t10-raw",
                  metadata=(("traceparent", TRACEPARENT),))
        equal(s.state, S.STATE_COMPLETED, "state")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPLETED, 1),
                            ("Reserve", S.STATE_COMPLETED, 1)], "steps")
        equal(s.context["reserve_resp"], b"reserved:" + body[::-1],
              "reserve_resp")
        equal(s.context["reserve_req"], body, "reserve_req")
        calls = self.stock.calls()
        equal([(c["method"], bytes.fromhex(c["request"])) for c in calls],
              [("Reserve", body)], "calls of the raw service")
        ok("raw mode: context[reserve_req] sent verbatim, the reply's "
           "bytes kept exactly in context[reserve_resp]")
        md = calls[0]["metadata"]
        equal(md.get("x-request-id"), "t10-raw", "x-request-id upstream")
        equal(md.get("traceparent"), TRACEPARENT, "traceparent upstream")
        ok("the upstream call carries x-request-id = saga id and the "
           "caller's traceparent")

        s = o.run("ShopByOrder", {"amount": "4"}, request_id="t10-byorder")
        equal(s.state, S.STATE_COMPLETED, "ShopByOrder state")
        new = self.stock.calls()[len(calls):]
        equal([(c["method"], bytes.fromhex(c["request"])) for c in new],
              [("Reserve", s.context["order_id"])], "calls of ShopByOrder")
        equal(s.context["reserve_resp"],
              b"reserved:" + s.context["order_id"][::-1], "reserve_resp")
        ok("context passing: the second step was sent the order_id the "
           "first step's reply put in the context")
        calls = self.stock.calls()

        s = o.run("ShopOnce", {"amount": "3"}, request_id="t10-missing")
        equal(s.state, S.STATE_COMPENSATED, "missing key state")
        equal(s.error, "ReserveOnce: INVALID_ARGUMENT: raw request: the "
              "context has no \"reserve_req\" (not sent)", "missing key error")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("ReserveOnce", S.STATE_COMPENSATED, 1)],
              "steps")
        equal(self.order.record(s.id).state, R.RECORD_STATE_CANCELLED,
              "order record")
        equal(self.stock.calls()[len(calls):], [],
              "raw service calls for the missing key")
        ok("raw request key missing: the step fails without a call and the "
           "saga is compensated")

        # The same with a compensation: nothing was sent, so its undo is
        # not called either (it would be sent the same missing entry).
        s = o.run("Shop", {"amount": "3"}, request_id="t10-missing-undo")
        equal(s.state, S.STATE_COMPENSATED, "unsent step's saga state")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("Reserve", S.STATE_COMPENSATED, 1)],
              "unsent step with a compensation")
        equal(self.stock.calls()[len(calls):], [],
              "raw service calls for an unsent step")
        ok("raw request key missing on a node with a compensation: no call, "
           "no undo of it, the earlier steps compensated")

        s = o.run("Shop", {"reserve_req": b"fail-9"}, request_id="t10-fail",
                  metadata=(("traceparent", TRACEPARENT),))
        equal((s.state, s.error), (S.STATE_COMPENSATED,
              "Reserve: FAILED_PRECONDITION: out of stock"), "refused raw")
        check("reserve_resp" not in s.context, "reserve_resp kept")
        equal(steps_of(s), [("CreateOrder", S.STATE_COMPENSATED, 2),
                            ("Reserve", S.STATE_COMPENSATED, 2)], "steps")
        new = self.stock.calls()[len(calls):]
        # sagad.conf(5): a raw node's compensation is sent
        # context[compensate_request], by default its request's key.
        equal([(c["method"], bytes.fromhex(c["request"])) for c in new],
              [("Reserve", b"fail-9"), ("Release", b"fail-9")],
              "raw service calls of the refusal")
        equal([(c["metadata"].get("x-request-id"),
                c["metadata"].get("traceparent")) for c in new],
              [("t10-fail", TRACEPARENT)] * 2, "their metadata")
        ok("a raw service's business failure: its compensation gets the raw "
           "request, with x-request-id and traceparent")
        calls = self.stock.calls()
        o.run("Shop", {"reserve_req": b"abc"}, request_id="t12-notrace")
        md = self.stock.calls()[len(calls)]["metadata"]
        equal((md.get("x-request-id"), md.get("traceparent")),
              ("t12-notrace", None), "metadata without a traceparent")
        ok("no traceparent is sent upstream when the caller sent none")

    # --- 11 ------------------------------------------------------------------
    def max_inflight(self):
        o = self.o
        self.slow.list(reset=True)
        t0 = time.time()
        fs = [o.run_future("Limited", {"amount": str(i)}, "t11-limited-%d" % i)
              for i in range(30)]
        got = [f.result() for f in fs]
        took = time.time() - t0
        equal([s.state for s in got], [S.STATE_COMPLETED] * 30, "states")
        lst = self.slow.list(counters_only=True)
        equal(lst.peak_inflight, 3, "peak_inflight of the slow order")
        # 30 calls of 100 ms, 3 at a time, take at least 1 s.
        check(took >= 0.95, "30 Runs took %.2f s with 3 slots" % took)
        ok("max_inflight = 3: 30 concurrent Runs all COMPLETED, the "
           "service saw at most and exactly 3 calls at once (%.2f s)" % took)

        self.slow.list(reset=True)
        # grpcio's own threads send all 30 within milliseconds, long before
        # the first 100 ms call ends: 1 in the slot + 5 waiting get in.
        fs = [o.run_future("Queued", {"amount": str(i)}, "t11-queued-%d" % i)
              for i in range(30)]
        got = []
        for f in fs:
            try:
                got.append((SC.OK, f.result()))
            except Exception as e:
                got.append((e.code(), e.details()))
        codes = [c for c, _ in got]
        done = [s for c, s in got if c == SC.OK]
        shed = ["t11-queued-%d" % i for i, (c, _) in enumerate(got)
                if c != SC.OK]
        equal(codes, [SC.OK] * 6 + [SC.RESOURCE_EXHAUSTED] * 24,
              "status codes of 30 Runs at once")
        equal([s.state for s in done], [S.STATE_COMPLETED] * 6,
              "states of the admitted")
        lst = self.slow.list(counters_only=True)
        equal(lst.peak_inflight, 1, "peak_inflight with max_inflight 1")
        creates = [m.calls for m in lst.methods
                   if m.method == "/booking.Order/Create"]
        equal(creates, [len(done)], "Creates the slow order got")
        for i in shed:
            expect_error(SC.NOT_FOUND, o.get, i)
        ok("max_inflight = 1, max_queue = 5: of 30 Runs at once 6 COMPLETED "
           "and 24 RESOURCE_EXHAUSTED, none of which started")

    def main(self):
        self.health()
        self.completion()
        self.rollback()
        self.retries()
        self.timeouts()
        self.compensate_retries()
        self.idempotency()
        self.get_watch()
        self.bad_input()
        self.raw_mode()
        self.max_inflight()

    # --- Redis away and back -------------------------------------------------
    def redis_down(self):
        o = self.o
        d = expect_error(SC.UNAVAILABLE, o.run, "Booking",
                         request_id="t8-redis-down", timeout=10)
        check("Redis" in d or "redis" in d or "store" in d,
              "UNAVAILABLE details %r" % d)
        ok("Redis down: Run is UNAVAILABLE")
        check(self.order.record("t8-redis-down") is None,
              "a step ran while Redis was down")
        ok("Redis down: nothing was called upstream")
        expect_error(SC.UNAVAILABLE, o.get, "t1-complete")
        ok("Redis down: Get is UNAVAILABLE")
        deadline = time.time() + 5
        while (o.health("saga.v1.Orchestrator") != NOT_SERVING
               and time.time() < deadline):
            time.sleep(0.1)
        equal(o.health("saga.v1.Orchestrator"), NOT_SERVING,
              "Health of saga.v1.Orchestrator")
        ok("Redis down: Health says NOT_SERVING for saga.v1.Orchestrator")

    def redis_back(self):
        o = self.o
        deadline = time.time() + 10
        while (o.health("saga.v1.Orchestrator") != SERVING
               and time.time() < deadline):
            time.sleep(0.1)
        equal(o.health("saga.v1.Orchestrator"), SERVING, "Health")
        ok("Redis back: Health SERVING again")
        s = o.run("Booking", {"amount": "8"}, request_id="t8-redis-back")
        equal(s.state, S.STATE_COMPLETED, "state")
        ok("Redis back: Run works again")
        equal(o.get("t1-complete").state, S.STATE_COMPLETED, "old saga")
        ok("Redis back: sagas from before the restart are still there")

    # --- SIGTERM -------------------------------------------------------------
    def drain(self):
        o = self.o
        pid = int(os.environ["SAGAD_PID"])
        f = o.run_future("Booking", {"delay": "order:600"},
                         request_id="t9-drain")
        stream = o.hwatch_rpc(
            __import__("health_pb2").HealthCheckRequest(
                service="saga.v1.Orchestrator"), timeout=10)
        first = next(stream)
        equal(first.status, SERVING, "first Health Watch status")
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        seen = []
        try:
            for m in stream:
                seen.append(m.status)
                if m.status == NOT_SERVING:
                    break
        except Exception as e:  # the stream may end once NOT_SERVING is out
            if NOT_SERVING not in seen:
                fail("Health Watch ended with %r before NOT_SERVING" % e)
        equal(seen[-1:], [NOT_SERVING], "Health Watch after SIGTERM")
        ok("SIGTERM: Health Watch sees NOT_SERVING")
        s = f.result()
        equal(s.state, S.STATE_COMPLETED, "saga in flight at SIGTERM")
        equal(self.payment.record("t9-drain").state, R.RECORD_STATE_ACTIVE,
              "its payment")
        ok("SIGTERM: the saga in flight ran to COMPLETED before the exit")


def main():
    t = T()
    getattr(t, sys.argv[1])()


if __name__ == "__main__":
    main()
