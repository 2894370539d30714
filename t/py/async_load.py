"""async_load.py - load and audit for t/crash.sh: async sagas started
through sagad's Run at a steady rate by python3-grpcio, then every accepted
saga checked against sagad (Get) and against the participants' own records
(List).

  async_load.py load SECS RATE PREFIX OUT
      Runs AsyncBooking sagas PREFIX-<n> at RATE per second for SECS
      seconds; every 5th carries fault=payment (it must be compensated).
      Writes the id of every saga Run accepted to OUT, one a line, and
      prints "accepted N rejected M" (rejected: an error status, e.g.
      UNAVAILABLE while NATS or Redis is away), and the refused ids to
      OUT.refused.

  async_load.py check OUT SECS
      Gets every saga of OUT until all are final or SECS pass, then checks
      them: COMPLETED or COMPENSATED and as their fault asks, no record
      ACTIVE for a compensated saga, an ACTIVE order and payment for a
      completed one. Counts the steps a participant answered more Creates
      for than the saga records as started (a redelivery that raced the
      worker still holding the message: harmless, participants are
      idempotent per saga id). Prints a summary. With
      REFUSED (a load's OUT.refused), each saga whose Run was refused must
      be unknown to sagad with nothing ACTIVE at the participants, or be
      final like the accepted ones (a create Redis applied after the Run
      gave up is driven to its end by a sweeper).
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import Orch, Participant, R, S, SC, fail, ok  # noqa: E402

FLOW = os.environ.get("LOAD_FLOW", "AsyncBooking")
WINDOW = 256    # Runs in flight at most


def faulty(saga_id):
    return int(saga_id.rsplit("-", 1)[1]) % 5 == 4


def load(secs, rate, prefix, out):
    o = Orch(int(os.environ["SAGAD_PORT"]))
    lock = threading.Lock()
    slots = threading.Semaphore(WINDOW)
    accepted, rejected, codes, refused = [], [0], {}, []

    def done(fut, saga_id):
        try:
            fut.result()
            with lock:
                accepted.append(saga_id)
        except Exception as e:  # grpc.RpcError
            code = e.code() if hasattr(e, "code") else SC.UNKNOWN
            with lock:
                rejected[0] += 1
                refused.append(saga_id)
                codes[code] = codes.get(code, 0) + 1
        slots.release()

    t0 = time.time()
    n = 0
    while True:
        now = time.time()
        if now - t0 >= secs:
            break
        due = int((now - t0) * rate)
        while n < due:
            saga_id = "%s-%d" % (prefix, n)
            ctx = {"amount": "7"}
            if faulty(saga_id):
                ctx["fault"] = "payment"
            slots.acquire()
            f = o.run_rpc.future(o.request(FLOW, ctx, saga_id), timeout=10)
            f.add_done_callback(lambda fut, i=saga_id: done(fut, i))
            n += 1
        time.sleep(0.005)
    for _ in range(WINDOW):
        slots.acquire()
    took = time.time() - t0
    with open(out, "w") as f:
        f.write("".join(i + "\n" for i in accepted))
    with open(out + ".refused", "w") as f:
        f.write("".join(i + "\n" for i in refused))
    print("accepted %d rejected %d in %.1fs (%.0f/s) %s" % (
        len(accepted), rejected[0], took, len(accepted) / took,
        {str(k): v for k, v in codes.items()}), flush=True)


def check_refused(o, refused, participants, secs):
    """Refused Runs: unknown with nothing ACTIVE, or final and consistent."""
    unknown = known = 0
    deadline = time.time() + secs
    sagas = {}
    for i in refused:
        while True:
            try:
                s = o.get(i)
            except Exception as e:  # grpc.RpcError
                if hasattr(e, "code") and e.code() == SC.NOT_FOUND:
                    s = None
                    break
                if time.time() > deadline:
                    fail("refused saga %s: Get fails: %s" % (i, e))
                time.sleep(0.5)
                continue
            if s.state >= S.STATE_COMPLETED or time.time() > deadline:
                break
            time.sleep(0.5)
        if s is not None and s.state < S.STATE_COMPLETED:
            fail("refused saga %s was created and is not final after %ds: "
                 "%s" % (i, secs, S.Name(s.state)))
        sagas[i] = s
    recs = {name: p.records() for name, p in participants.items()}
    for i, s in sagas.items():
        if s is None:
            unknown += 1
            for name, rs in recs.items():
                r = rs.get(i)
                if r is not None and r.state == R.RECORD_STATE_ACTIVE:
                    fail("refused saga %s is unknown to sagad, yet its %s "
                         "record is ACTIVE" % (i, name))
            continue
        known += 1
        for name, rs in recs.items():
            r = rs.get(i)
            act = r is not None and r.state == R.RECORD_STATE_ACTIVE
            if s.state == S.STATE_COMPLETED and not act:
                fail("refused saga %s COMPLETED without an ACTIVE %s" % (
                    i, name))
            if s.state != S.STATE_COMPLETED and act:
                fail("refused saga %s ended %s with its %s ACTIVE" % (
                    i, S.Name(s.state), name))
    print("refused Runs: %d unknown with nothing ACTIVE, %d created and "
          "driven to a consistent end" % (unknown, known), flush=True)


def check(out, secs, refused_file=None):
    o = Orch(int(os.environ["SAGAD_PORT"]))
    order = Participant(int(os.environ["ORDER_PORT"]), "order")
    payment = Participant(int(os.environ["PAYMENT_PORT"]), "payment")
    with open(out) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        fail("no saga was accepted")
    pending = set(ids)
    sagas = {}
    t0 = time.time()
    deadline = t0 + secs
    while pending and time.time() < deadline:
        for i in list(pending):
            try:
                s = o.get(i)
            except Exception:  # grpc.RpcError: Redis coming back
                continue
            if s.state >= S.STATE_COMPLETED:
                sagas[i] = s
                pending.discard(i)
        if pending:
            time.sleep(0.5)
    if pending:
        ex = sorted(pending)[:5]
        states = []
        for i in ex:
            try:
                states.append(S.Name(o.get(i).state))
            except Exception as e:
                states.append(str(e))
        fail("%d of %d sagas not final after %ds, e.g. %s %s" % (
            len(pending), len(ids), secs, ex, states))
    print("all %d sagas final %.1fs after the load" % (
        len(ids), time.time() - t0), flush=True)
    first = min(s.created_unix_ms for s in sagas.values())
    last = max(s.updated_unix_ms for s in sagas.values())
    span = max(last - first, 1) / 1000.0
    print("first created to last ended: %.1fs, %.0f sagas/s completed" % (
        span, len(ids) / span), flush=True)

    recs = {"CreateOrder": order.records(), "CreatePayment": payment.records()}
    counts = {}
    again = raced = 0
    for i, s in sagas.items():
        counts[S.Name(s.state)] = counts.get(S.Name(s.state), 0) + 1
        if s.state not in (S.STATE_COMPLETED, S.STATE_COMPENSATED):
            fail("saga %s ended %s: %s" % (i, S.Name(s.state), s.error))
        if faulty(i) and s.state != S.STATE_COMPENSATED:
            fail("saga %s with fault=payment ended %s" % (
                i, S.Name(s.state)))
        for st in s.steps:
            r = recs[st.name].get(i)
            if s.state == S.STATE_COMPLETED:
                if r is None or r.state != R.RECORD_STATE_ACTIVE:
                    fail("completed saga %s: %s record %s" % (
                        i, st.name, None if r is None else
                        R.Name(r.state)))
            elif r is not None and r.state == R.RECORD_STATE_ACTIVE:
                fail("compensated saga %s: %s record still ACTIVE "
                     "(a compensation is missing)" % (i, st.name))
            if r is not None and r.creates > st.attempts:
                # At-least-once: a redelivery raced the worker that still
                # held the message, both called, the first write won. The
                # participants are idempotent per saga id, and the records'
                # states above are what must hold; counted, not failed.
                raced += 1
            if r is not None and r.creates > 1:
                again += 1
    for name, rs in recs.items():
        active = sum(1 for i in sagas if i in rs and
                     rs[i].state == R.RECORD_STATE_ACTIVE)
        print("%s: %d records of these sagas, %d ACTIVE" % (
            name, sum(1 for i in sagas if i in rs), active), flush=True)
    print("states %s; %d steps called more than once (killed mid-call), "
          "%d more often than recorded (a redelivery raced its first "
          "worker)" % (counts, again, raced), flush=True)
    if refused_file is not None:
        with open(refused_file) as f:
            refused = [line.strip() for line in f if line.strip()]
        check_refused(o, refused, {"CreateOrder": order,
                                   "CreatePayment": payment}, secs)
    ok("%d accepted sagas ended COMPLETED or COMPENSATED, as their faults "
       "ask, with every compensation done" % len(ids))


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "check":
        check(sys.argv[2], float(sys.argv[3]),
              sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        fail("usage: async_load.py load|check ...")
