#!/usr/bin/python3
"""chaos_load.py - the load of t/chaos.sh: a mixed stream of sync, async and
throttling sagas sent with python3-grpcio to the pods of the chaos test, at
a steady rate, some made to fail and some made slow by the booking
participants' fault injection. Every Run's answer is written at once to OUT
as one JSON line, the input t/py/invariants.py reads:

    {"id": "c-17", "flow": "AsyncBooking", "pod": 1, "code": "OK",
     "state": "STATE_PENDING", "ctx": {"fault": "payment"},
     "sent_unix_ms": 1796141227363, "ms": 12}

("ms": how long the Run took to answer.)

  chaos_load.py --ports P1,P2 --secs S --rate R --out FILE [--prefix c]
                [--callback URL] [--window N]

Runs go to a pod picked at random; a pod that is down answers UNAVAILABLE
and the saga is recorded as refused. The load stops sending after S seconds
and waits for every Run still open (each has its own deadline). It prints
what it sent by flow and by answer.
"""

import argparse
import json
import os
import random
import sys
import threading
import time

import grpc

sys.path.insert(0, os.environ["SYNC_GEN"])
from saga.v1 import saga_pb2  # noqa: E402

# The answers a Run may get while faults are injected: accepted, refused
# because Redis or NATS (or the pod) is away, past its deadline, shed.
EXPECTED = ("OK", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
odd_example = []

# flow, share of the load, the Run's deadline (s)
FLOWS = (("Booking", 35, 20), ("AsyncBooking", 35, 10),
         ("ThrottlingBooking", 30, 30))


def context(rng):
    """A saga's context: mostly plain, some failing, some slow, some
    flaky, some whose compensation fails a few times."""
    ctx = {"amount": str(rng.randint(1, 999))}
    x = rng.random()
    if x < 0.08:
        ctx["fault"] = "payment"
    elif x < 0.12:
        ctx["fault"] = "order"
    elif x < 0.20:
        ctx["delay"] = "order:%d" % rng.choice((200, 400, 800))
    elif x < 0.23:
        ctx["delay"] = "payment:1500"   # over the 1000 ms timeout
    elif x < 0.28:
        ctx["flaky"] = "payment:1"
    elif x < 0.31:
        ctx["fault"] = "payment"
        ctx["fault_undo"] = "order:2"
    return ctx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix", default="c")
    ap.add_argument("--callback", default="")
    ap.add_argument("--window", type=int, default=600)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    ports = [int(p) for p in a.ports.split(",")]
    stubs = []
    for p in ports:
        ch = grpc.insecure_channel("127.0.0.1:%d" % p)
        stubs.append(ch.unary_unary(
            "/saga.v1.Orchestrator/Run",
            request_serializer=saga_pb2.RunRequest.SerializeToString,
            response_deserializer=saga_pb2.Saga.FromString))

    out = open(a.out, "a")
    lock = threading.Lock()
    slots = threading.Semaphore(a.window)
    codes, by_flow, states = {}, {}, {}
    t0 = time.time()

    def done(fut, d):
        try:
            s = fut.result()
            d["code"] = "OK"
            d["state"] = saga_pb2.State.Name(s.state)
        except grpc.RpcError as e:
            d["code"] = e.code().name
            d["state"] = ""
            d["details"] = (e.details() or "")[:160]
        except Exception as e:  # noqa: BLE001 - recorded, never lost
            d["code"] = "UNKNOWN"
            d["state"] = ""
            d["details"] = repr(e)[:160]
        d["ms"] = int((time.time() - t0) * 1000) - d["ms"]
        with lock:
            out.write(json.dumps(d) + "\n")
            out.flush()
            codes[d["code"]] = codes.get(d["code"], 0) + 1
            if d["code"] not in EXPECTED and not odd_example:
                odd_example.append("%s %s: %s" % (d["id"], d["code"],
                                                  d.get("details", "")))
            if d["state"]:
                states[d["state"]] = states.get(d["state"], 0) + 1
        slots.release()

    total_w = sum(w for _, w, _ in FLOWS)
    n = 0
    while True:
        now = time.time()
        if now - t0 >= a.secs:
            break
        due = int((now - t0) * a.rate)
        while n < due:
            x = rng.uniform(0, total_w)
            for flow, w, deadline in FLOWS:
                if x < w:
                    break
                x -= w
            ctx = context(rng)
            pod = rng.randrange(len(stubs))
            saga_id = "%s-%d" % (a.prefix, n)
            req = saga_pb2.RunRequest(
                flow=flow, request_id=saga_id,
                context={k: v.encode() for k, v in ctx.items()})
            if flow == "AsyncBooking" and a.callback and rng.random() < 0.3:
                req.callback_url = "%s/ok/%s" % (a.callback, saga_id)
            d = {"id": saga_id, "flow": flow, "pod": pod, "ctx": ctx,
                 "sent_unix_ms": int(time.time() * 1000),
                 "ms": int((time.time() - t0) * 1000)}
            slots.acquire()
            f = stubs[pod].future(req, timeout=deadline)
            f.add_done_callback(lambda fut, d=d: done(fut, d))
            by_flow[flow] = by_flow.get(flow, 0) + 1
            n += 1
        time.sleep(0.005)
    sending = time.time() - t0
    for _ in range(a.window):
        slots.acquire()
    out.close()
    print("load: sent %d Runs in %.1fs (%.0f/s), all answered %.1fs later; "
          "flows %s; answers %s; states %s" % (
              n, sending, n / max(sending, 0.001),
              time.time() - t0 - sending, json.dumps(by_flow),
              json.dumps(codes), json.dumps(states)), flush=True)
    # Every Run is well formed: any other refusal is the test's mistake
    # (or sagad's), never a fault injected.
    odd = {k: v for k, v in codes.items() if k not in EXPECTED}
    if odd:
        print("FAIL: chaos_load.py: Runs refused %s, e.g. %s" % (
            json.dumps(odd), odd_example[0] if odd_example else ""),
            file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
