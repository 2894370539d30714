"""sync_recovery.py - what t/recovery.sh checks with python3-grpcio: sync
sagas whose sagad died (kill -9) are finished by a sagad that lives, and
sagas survive Redis restarting under load. Phases, one per call:

  load PREFIX N KILL_MS   N Runs of Booking, one every 25 ms, against
                          SAGAD_PORT; SIGKILL to SAGAD_PID KILL_MS after
                          the first; every answer saved to $STATE/PREFIX
  verify PREFIX SECS      against SAGAD_PORT (another or a restarted sagad):
                          within SECS every saga is COMPLETED or COMPENSATED,
                          the ones that were answered before the kill as
                          they were answered, and no participant holds an
                          ACTIVE record of a compensated saga
  churn PREFIX SECS RATE  Runs at RATE per second for SECS while t/recovery.sh
                          restarts Redis: each answer is the final saga or
                          UNAVAILABLE, and none hangs
  settle PREFIX SECS      every churned saga that exists is final within
                          SECS and left no orphan

Each check compares exact values and exits 1 at the first mismatch.
"""

import json
import os
import signal
import sys
import time

from sync_lib import (R, S, SC, Orch, Participant, check, env_port, equal,
                      fail, ok, rpc_error)

STATE = os.environ["LIB_TMP"]
DIED = "the process running the saga died; compensated by recovery"


def save(prefix, answers):
    with open(os.path.join(STATE, prefix + ".json"), "w") as f:
        json.dump(answers, f)


def load_answers(prefix):
    with open(os.path.join(STATE, prefix + ".json")) as f:
        return json.load(f)


def answer_of(fut):
    try:
        s = fut.result()
        return {"code": "OK", "state": S.Name(s.state)}
    except Exception as e:  # grpc.RpcError and grpc.FutureTimeoutError
        code = e.code() if hasattr(e, "code") else None
        return {"code": code.name if code is not None else repr(e)}


def phase_load(prefix, n, kill_ms):
    o = Orch(env_port("SAGAD_PORT"))
    pid = int(os.environ["SAGAD_PID"])
    t0 = time.time()
    futs = {}
    killed = False
    for i in range(n):
        sid = "%s-%d" % (prefix, i)
        futs[sid] = o.run_future("Booking", {"amount": str(i)},
                                 request_id=sid, timeout=20)
        if not killed and (time.time() - t0) * 1000 >= kill_ms:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.025)
    if not killed:
        time.sleep(max(0, kill_ms / 1000 - (time.time() - t0)))
        os.kill(pid, signal.SIGKILL)
    answers = {sid: answer_of(f) for sid, f in futs.items()}
    codes = sorted({a["code"] for a in answers.values()})
    check(set(codes) <= {"OK", "UNAVAILABLE"},
          "answers around the kill: %r" % answers)
    done = [s for s, a in answers.items() if a["code"] == "OK"]
    check(len(done) < len(answers), "every saga ended before the kill: "
          "nothing to recover")
    for sid in done:
        equal(answers[sid]["state"], "STATE_COMPLETED", "answer of " + sid)
    save(prefix, answers)
    ok("%s: %d sagas started, %d answered COMPLETED before kill -9, %d "
       "cut off (UNAVAILABLE)" % (prefix, len(answers), len(done),
                                  len(answers) - len(done)))


def no_orphans(prefix, sagas, order, payment):
    orecs, precs = order.records(), payment.records()
    for sid, s in sagas.items():
        for name, recs in (("order", orecs), ("payment", precs)):
            r = recs.get(sid)
            if s.state == S.STATE_COMPLETED:
                check(r is not None and r.state == R.RECORD_STATE_ACTIVE,
                      "%s of COMPLETED %s: %r" % (name, sid, r))
            else:
                check(r is None or r.state != R.RECORD_STATE_ACTIVE,
                      "orphan: %s holds an ACTIVE record of %s %s" %
                      (name, S.Name(s.state), sid))


def phase_verify(prefix, secs):
    o = Orch(env_port("SAGAD_PORT"))
    order = Participant(env_port("ORDER_PORT"), "order")
    payment = Participant(env_port("PAYMENT_PORT"), "payment")
    answers = load_answers(prefix)
    t0 = time.time()
    sagas = {}
    for sid, a in answers.items():
        s = o.wait_final(sid, max(0.5, secs - (time.time() - t0)))
        check(s is not None and not isinstance(s, SC),
              "Get %s: %r" % (sid, s))
        check(s.state in (S.STATE_COMPLETED, S.STATE_COMPENSATED),
              "%s is %s after %.1f s: %s" % (sid, S.Name(s.state),
                                             time.time() - t0, s))
        if a["code"] == "OK":
            equal(s.state, S.STATE_COMPLETED, sid + " answered COMPLETED")
        sagas[sid] = s
    took = time.time() - t0
    comp = [s for s in sagas.values() if s.state == S.STATE_COMPENSATED]
    check(comp, "no saga was compensated by recovery")
    for s in comp:
        equal(s.error, DIED, "error of recovered " + s.id)
        equal([st.state for st in s.steps if st.state != S.STATE_PENDING],
              [S.STATE_COMPENSATED] * len([st for st in s.steps
                                           if st.state != S.STATE_PENDING]),
              "steps of " + s.id)
    ok("%s: within %.1f s all %d sagas are final: %d COMPLETED, %d "
       "COMPENSATED by recovery" % (prefix, took, len(sagas),
                                    len(sagas) - len(comp), len(comp)))
    # Cancels the dead sagad had in flight, or Creates that land late,
    # settle within one participant latency.
    time.sleep(0.5)
    no_orphans(prefix, sagas, order, payment)
    ok("%s: no participant holds an ACTIVE record of a compensated saga; "
       "every COMPLETED one has both" % prefix)


def phase_churn(prefix, secs, rate):
    o = Orch(env_port("SAGAD_PORT"))
    t0 = time.time()
    futs = {}
    i = 0
    while time.time() - t0 < secs:
        sid = "%s-%d" % (prefix, i)
        futs[sid] = (time.time(), o.run_future(
            "Booking", {"amount": str(i)}, request_id=sid, timeout=15))
        i += 1
        time.sleep(max(0, t0 + i / rate - time.time()))
    answers = {}
    for sid, (start, f) in futs.items():
        answers[sid] = answer_of(f)
    codes = {}
    for a in answers.values():
        codes[a["code"]] = codes.get(a["code"], 0) + 1
    check(set(codes) <= {"OK", "UNAVAILABLE"},
          "answers while Redis restarted: %r" % codes)
    check(codes.get("UNAVAILABLE", 0) > 0,
          "no Run saw the outage: %r" % codes)
    check(codes.get("OK", 0) > 0, "no Run succeeded: %r" % codes)
    for sid, a in answers.items():
        if a["code"] == "OK":
            check(a["state"] in ("STATE_COMPLETED", "STATE_COMPENSATED"),
                  "%s answered %s" % (sid, a["state"]))
    save(prefix, answers)
    ok("%s: %d Runs while Redis restarted: %d answered with the final saga, "
       "%d UNAVAILABLE, none hung" % (prefix, len(answers),
                                      codes.get("OK", 0),
                                      codes.get("UNAVAILABLE", 0)))


def phase_settle(prefix, secs):
    o = Orch(env_port("SAGAD_PORT"))
    order = Participant(env_port("ORDER_PORT"), "order")
    payment = Participant(env_port("PAYMENT_PORT"), "payment")
    answers = load_answers(prefix)
    t0 = time.time()
    sagas = {}
    missing = []
    for sid, a in answers.items():
        if a["code"] == "OK":
            s = o.wait_final(sid, max(0.5, secs - (time.time() - t0)))
        else:
            code, s = rpc_error(o.get, sid)
            if code == SC.NOT_FOUND:
                missing.append(sid)
                continue
            equal(code, SC.OK, "Get " + sid)
            if s.state < S.STATE_COMPLETED:
                s = o.wait_final(sid, max(0.5, secs - (time.time() - t0)))
        check(s is not None and not isinstance(s, SC),
              "Get %s: %r" % (sid, s))
        check(s.state in (S.STATE_COMPLETED, S.STATE_COMPENSATED),
              "%s stuck in %s after %.1f s" % (sid, S.Name(s.state),
                                               time.time() - t0))
        if a["code"] == "OK":
            equal(S.Name(s.state), a["state"], sid + " vs its answer")
        sagas[sid] = s
    ok("%s: every saga that exists is final within %.1f s (%d; %d refused "
       "before they started)" % (prefix, time.time() - t0, len(sagas),
                                 len(missing)))
    time.sleep(0.5)
    no_orphans(prefix, sagas, order, payment)
    orecs, precs = order.records(), payment.records()
    for sid in missing:
        check(sid not in orecs and sid not in precs,
              "%s was refused but reached a participant" % sid)
    ok("%s: no orphan upstream; refused Runs called nobody" % prefix)


def main():
    phase = sys.argv[1]
    if phase == "load":
        phase_load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif phase == "verify":
        phase_verify(sys.argv[2], float(sys.argv[3]))
    elif phase == "churn":
        phase_churn(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif phase == "settle":
        phase_settle(sys.argv[2], float(sys.argv[3]))
    else:
        fail("unknown phase " + phase)


if __name__ == "__main__":
    main()
