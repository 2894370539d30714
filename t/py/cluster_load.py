"""cluster_load.py - the load and the audit of t/cluster.sh: sync and async
sagas sent through several sagad pods while the servers under them fail.

  cluster_load.py load SECS RATE PREFIX OUT PORT[,PORT...]
      Runs sagas PREFIX-<n> at RATE per second for SECS seconds, taking
      turns between the pods and between the flows Booking (sync) and
      AsyncBooking (async); every 5th carries fault=payment (it must be
      compensated). Writes every id sent to OUT ("id flow ok|CODE" a
      line) and every answer to OUT.lat ("sent_unix latency_s ok|CODE").

  cluster_load.py phases OUT MARKS
      MARKS holds "name start_unix end_unix" lines; prints, for the Runs
      sent within each window, how many succeeded and the p50 and p99 of
      their latency.

  cluster_load.py check OUT SECS PORT
      Every saga sent, accepted or not, is checked once all are final or
      SECS pass: an accepted one must exist; each that exists must be
      COMPLETED or COMPENSATED as its fault asks, the participants'
      records ACTIVE iff it COMPLETED, and no participant answered more
      Creates than its step records as called (or FAILED without a step
      called when its Run was refused: an async Run the bus would not
      queue); one that does not exist
      must have no ACTIVE record at any participant.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import Orch, Participant, R, S, SC, fail, ok  # noqa: E402

FLOWS = ("Booking", "AsyncBooking")
WINDOW = 128


def faulty(saga_id):
    return int(saga_id.rsplit("-", 1)[1]) % 5 == 4


def load(secs, rate, prefix, out, ports):
    pods = [Orch(int(p)) for p in ports.split(",")]
    lock = threading.Lock()
    slots = threading.Semaphore(WINDOW)
    sent, lat = [], []

    def done(fut, saga_id, flow, t):
        took = time.time() - t
        try:
            fut.result()
            res = "ok"
        except Exception as e:  # grpc.RpcError
            res = str(e.code().name) if hasattr(e, "code") else "UNKNOWN"
        with lock:
            sent.append("%s %s %s\n" % (saga_id, flow, res))
            lat.append("%.3f %.4f %s\n" % (t, took, res))
        slots.release()

    t0 = time.time()
    n = 0
    while time.time() - t0 < secs:
        due = int((time.time() - t0) * rate)
        while n < due:
            saga_id = "%s-%d" % (prefix, n)
            flow = FLOWS[n % 2]
            o = pods[(n // 2) % len(pods)]
            ctx = {"amount": "7"}
            if faulty(saga_id):
                ctx["fault"] = "payment"
            slots.acquire()
            t = time.time()
            f = o.run_rpc.future(o.request(flow, ctx, saga_id), timeout=10)
            f.add_done_callback(
                lambda fut, i=saga_id, fl=flow, t=t: done(fut, i, fl, t))
            n += 1
        time.sleep(0.005)
    for _ in range(WINDOW):
        slots.acquire()
    with open(out, "w") as f:
        f.write("".join(sent))
    with open(out + ".lat", "w") as f:
        f.write("".join(lat))
    good = sum(1 for s in sent if s.endswith(" ok\n"))
    print("sent %d, %d accepted, in %.1fs" % (len(sent), good,
                                              time.time() - t0), flush=True)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def phases(out, marks):
    rows = []
    with open(out + ".lat") as f:
        for line in f:
            t, took, res = line.split()
            rows.append((float(t), float(took), res))
    with open(marks) as f:
        for line in f:
            name, a, b = line.split()
            a, b = float(a), float(b)
            w = [r for r in rows if a <= r[0] < b]
            good = [r[1] for r in w if r[2] == "ok"]
            print("%-22s %5.1fs  %4d runs  %5.1f%% ok  p50 %6.1f ms  "
                  "p99 %7.1f ms" % (
                      name, b - a, len(w),
                      100.0 * len(good) / len(w) if w else 0.0,
                      1000 * pct(good, 0.50), 1000 * pct(good, 0.99)),
                  flush=True)


def check(out, secs, port):
    o = Orch(int(port))
    order = Participant(int(os.environ["ORDER_PORT"]), "order")
    payment = Participant(int(os.environ["PAYMENT_PORT"]), "payment")
    sent = {}
    with open(out) as f:
        for line in f:
            i, flow, res = line.split()
            sent[i] = (flow, res)
    if not any(r == "ok" for _, r in sent.values()):
        fail("no saga was accepted")
    pending = set(sent)
    sagas, absent = {}, set()
    t0 = time.time()
    while pending and time.time() < t0 + secs:
        for i in list(pending):
            try:
                s = o.get(i)
            except Exception as e:  # grpc.RpcError
                if hasattr(e, "code") and e.code() == SC.NOT_FOUND and \
                        sent[i][1] != "ok":
                    absent.add(i)
                    pending.discard(i)
                continue
            if s.state >= S.STATE_COMPLETED:
                sagas[i] = s
                pending.discard(i)
        if pending:
            time.sleep(0.5)
    if pending:
        ex = sorted(pending)[:5]
        fail("%d of %d sagas not final (or accepted and missing) after "
             "%ds, e.g. %s" % (len(pending), len(sent), secs, ex))
    recs = {"CreateOrder": order.records(), "CreatePayment": payment.records()}
    counts = {}
    for i, s in sagas.items():
        counts[S.Name(s.state)] = counts.get(S.Name(s.state), 0) + 1
        if s.state == S.STATE_FAILED and sent[i][1] != "ok" and \
                all(st.attempts == 0 for st in s.steps):
            # An async Run whose work the bus refused: the caller got
            # the error, nothing ran; its record says so.
            for name, rs in recs.items():
                if i in rs:
                    fail("saga %s never ran but %s has a record" % (i, name))
            continue
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
                fail("saga %s: %s answered %d Creates, the saga records "
                     "%d calls: an action ran without being recorded" % (
                         i, st.name, r.creates, st.attempts))
    for i in absent:
        for name, rs in recs.items():
            r = rs.get(i)
            if r is not None and r.state == R.RECORD_STATE_ACTIVE:
                fail("saga %s has no record but %s holds an ACTIVE one "
                     "(never compensated)" % (i, name))
    ok("all %d sagas sent are accounted for: %d final (%s), %d never "
       "created (their Run refused) and nothing left ACTIVE for them" % (
           len(sent), len(sagas), counts, len(absent)))


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4],
             sys.argv[5], sys.argv[6])
    elif sys.argv[1] == "phases":
        phases(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        fail("usage: cluster_load.py load|phases|check ...")
