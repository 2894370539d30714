#!/usr/bin/python3
"""chaos_selftest.py - proves that t/py/invariants.py sees each kind of
violation it names, against the real servers of t/chaos.sh, once the chaos
run has been checked: it plants one broken saga per invariant (a record
left PENDING, an accepted id with no record, a COMPENSATED saga whose order
is still ACTIVE, a COMPLETED saga missing its payment, a FAILED saga with no
error, a Run answer that disagrees with the record, a refused Run whose
order was created anyway, a message left in the work stream) and expects
the checker to exit 1 naming every one of them, and to pass a clean saga.

  chaos_selftest.py REDIS_PORT ORDER_PORT PAYMENT_PORT NATS_PORT TMPDIR
"""

import json
import os
import socket
import subprocess
import sys
import time

import grpc

sys.path.insert(0, os.environ["SYNC_GEN"])
from saga.v1 import saga_pb2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
S = saga_pb2.State


def fail(msg):
    print("FAIL: chaos_selftest: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def redis(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                       capture_output=True, timeout=10)
    if r.returncode != 0:
        fail("redis-cli %s: %s" % (args[:2], r.stderr))


def plant(port, saga_id, state, error="", steps=()):
    s = saga_pb2.Saga(id=saga_id, flow="Booking", mode=1, state=state,
                      error=error, created_unix_ms=int(time.time() * 1000))
    for name, st, att in steps:
        s.steps.add(name=name, state=st, attempts=att)
    pb = s.SerializeToString()
    # redis-cli reads binary argv fine; the pb goes as one argument.
    r = subprocess.run(["redis-cli", "-p", str(port), "-x", "HSET",
                        "saga:{%s}" % saga_id, "pb"], input=pb,
                       capture_output=True, timeout=10)
    if r.returncode != 0:
        fail("plant %s: %s" % (saga_id, r.stderr))
    redis(port, "HSET", "saga:{%s}" % saga_id, "state", S.Name(state),
          "error", error, "flow", "Booking")


def create(port, service, saga_id):
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    rpc = ch.unary_unary(
        "/booking.%s/Create" % service,
        request_serializer=saga_pb2.StepRequest.SerializeToString,
        response_deserializer=saga_pb2.StepReply.FromString)
    rpc(saga_pb2.StepRequest(saga_id=saga_id, flow="Booking",
                             step="Create" + service), timeout=10)
    ch.close()


def nats_pub(port, subject):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'CONNECT {"verbose":false}\r\n')
    s.sendall(b"PUB %s 2\r\nhi\r\nPING\r\n" % subject.encode())
    while not f.readline().startswith(b"PONG"):
        pass
    s.close()


def nats_held(port):
    """A message handed to a reader that never acks it: ack-pending on a
    consumer of its own, its ack wait (1 s) run out. Work, which a pull
    gets again."""
    import invariants as I
    nc = I.Nats("nats://127.0.0.1:%d" % port)
    r = nc.request("$JS.API.CONSUMER.DURABLE.CREATE.SAGA.selftest_held",
                   json.dumps({"stream_name": "SAGA", "config": {
                       "durable_name": "selftest_held",
                       "ack_policy": "explicit", "ack_wait": 1000000000,
                       "filter_subject": "saga.work.async.SelfTest.Held.*"}}))
    if "error" in r:
        fail("consumer selftest_held: %s" % r["error"])
    if "error" in nc.request("saga.work.async.SelfTest.Held.do", b"held"):
        fail("publishing the held message")
    body = b'{"batch":1,"expires":2000000000}'
    nc.s.sendall(b"PUB $JS.API.CONSUMER.MSG.NEXT.SAGA.selftest_held "
                 b"%s.held %d\r\n%s\r\n" % (nc.inbox.encode(), len(body),
                                               body))
    while not nc._next_msg()[1].startswith("$JS.ACK."):
        pass
    nc.close()
    time.sleep(1.5)


def main():
    rp, op, pp, np, tmp = sys.argv[1:6]
    rp, op, pp, np = int(rp), int(op), int(pp), int(np)
    P = "selftest%d-" % os.getpid()
    C, X = S.STATE_COMPLETED, S.STATE_COMPENSATED
    lines = []

    def sent(i, code="OK", state=""):
        lines.append(json.dumps({"id": P + i, "flow": "Booking",
                                 "code": code, "state": state}))

    # A clean completed saga: no violation of its own.
    plant(rp, P + "clean", C, steps=[("CreateOrder", C, 1),
                                     ("CreatePayment", C, 1)])
    create(op, "Order", P + "clean")
    create(pp, "Payment", P + "clean")
    sent("clean", state="STATE_COMPLETED")
    # Each broken one.
    plant(rp, P + "pending", S.STATE_PENDING)
    sent("pending", state="STATE_PENDING")
    sent("missing", state="STATE_PENDING")
    plant(rp, P + "halfdone", X, error="payment said no",
          steps=[("CreateOrder", X, 1), ("CreatePayment", X, 1)])
    create(op, "Order", P + "halfdone")
    sent("halfdone", state="STATE_COMPENSATED")
    plant(rp, P + "nopay", C, steps=[("CreateOrder", C, 1),
                                     ("CreatePayment", C, 1)])
    create(op, "Order", P + "nopay")
    sent("nopay", state="STATE_COMPLETED")
    plant(rp, P + "silent", S.STATE_FAILED)
    sent("silent", state="STATE_PENDING")
    plant(rp, P + "told", X, error="x", steps=[("CreateOrder", X, 1)])
    sent("told", state="STATE_COMPLETED")
    create(op, "Order", P + "refused")
    sent("refused", code="UNAVAILABLE")
    nats_pub(np, "saga.work.async.SelfTest.Nope.do")
    nats_held(np)

    ids = os.path.join(tmp, "selftest.jsonl")
    out = os.path.join(tmp, "selftest.json")
    with open(ids, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "invariants.py"), "--ids", ids,
         "--redis", "127.0.0.1:%d" % rp,
         "--participant", "order@127.0.0.1:%d" % op,
         "--participant", "payment@127.0.0.1:%d" % pp,
         "--nats", "nats://127.0.0.1:%d" % np, "--json", out],
        capture_output=True, text=True, timeout=120)
    print(r.stdout, end="")
    if r.returncode != 1:
        fail("invariants.py exited %d on planted violations: %s" % (
            r.returncode, r.stderr))
    got = json.load(open(out))
    want = {"not_final": [P + "pending"], "missing": [P + "missing"],
            "active_not_completed": [P + "halfdone", P + "refused"],
            "completed_not_active": [P + "nopay"],
            "failed_no_error": [P + "silent"],
            "answer_mismatch": [P + "told"]}
    for kind, ex in want.items():
        seen = got["examples"].get(kind, [])
        if sorted(seen) != sorted(ex):
            fail("%s: checker named %s, planted %s" % (kind, seen, ex))
    if not got["violations"].get("stream_pending"):
        fail("the message left in the stream was not seen")
    if "consumer SAGA/selftest_held" not in got["ids"].get("stream_pending",
                                                           []):
        fail("the message handed out and never acked was not seen")
    extra = set(got["violations"]) - set(want) - {"stream_pending"}
    if extra:
        fail("violations nobody planted: %s" % sorted(extra))
    print("ok - invariants.py names every planted violation and passes the "
          "clean saga", flush=True)


if __name__ == "__main__":
    main()
