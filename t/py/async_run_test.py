"""async_run_test.py - the master's side of async Runs (t/async_run.sh):
what Run answers and what it leaves in the stream, counted through
nats-server's monitoring port, while the workers are parked. One scenario per
argument; the script runs them in order around NATS outages."""

import json
import os
import socket
import sys
import time
import urllib.request

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import (S, SC, Orch, Participant, check, equal,  # noqa: E402
                      expect_error, ok, rpc_error, saga_pb2)

ASYNC = saga_pb2.MODE_ASYNC
SYNC = saga_pb2.MODE_SYNC
THROTTLING = saga_pb2.MODE_THROTTLING


def stream_msgs():
    """Messages the SAGA stream holds now."""
    url = "http://127.0.0.1:%s/jsz" % os.environ["NATS_MON"]
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["messages"]


def wait_msgs(want, secs=5):
    deadline = time.time() + secs
    got = stream_msgs()
    while got != want and time.time() < deadline:
        time.sleep(0.05)
        got = stream_msgs()
    equal(got, want, "messages in the stream")


def run_req(o, flow, rid, mode=0, callback="", timeout=10):
    req = Orch.request(flow, {"amount": "7"}, rid, mode)
    req.callback_url = callback
    return o.run_rpc(req, timeout=timeout)


def accepted(o):
    base = stream_msgs()
    t0 = time.time()
    s = run_req(o, "AsyncBooking", "a1")
    took = time.time() - t0
    equal(s.id, "a1", "saga id")
    equal(s.state, S.STATE_PENDING, "state of an accepted async saga")
    equal(s.mode, ASYNC, "mode")
    equal([st.state for st in s.steps], [S.STATE_PENDING] * 2, "steps")
    check(took < 1.0, "async Run took %.3f s" % took)
    wait_msgs(base + 1)
    g = o.get("a1")
    equal(g.state, S.STATE_PENDING, "Get of the queued saga")
    equal(dict(g.context), {"amount": b"7"}, "its context")
    ok("async Run answers PENDING in %.0f ms, after its first work is in "
       "the stream" % (took * 1000))

    again = run_req(o, "AsyncBooking", "a1")
    equal(again.state, S.STATE_PENDING, "second Run")
    equal(again.created_unix_ms, s.created_unix_ms, "the same saga")
    time.sleep(0.2)
    wait_msgs(base + 1)
    ok("a second Run of the id returns that saga and queues nothing more")

    futs = [o.run_rpc.future(Orch.request("AsyncBooking", {}, "a-many-%d" % i),
                             timeout=10) for i in range(20)]
    for f in futs:
        equal(f.result().state, S.STATE_PENDING, "concurrent async Run")
    wait_msgs(base + 21)
    ok("20 concurrent async Runs: 20 PENDING sagas, 20 messages")

    # callback_url.
    s = run_req(o, "AsyncBooking", "a-cb", callback="http://127.0.0.1:9/h")
    equal(s.state, S.STATE_PENDING, "allowed callback host")
    s = run_req(o, "AsyncBooking", "a-cb2",
                callback="http://HOOKS.example/x?y=1")
    equal(s.state, S.STATE_PENDING, "allowed host, other case")
    wait_msgs(base + 23)
    s = run_req(o, "AsyncBooking", "a-cb3",
                callback="http://[::1]:8080/h")
    equal(s.state, S.STATE_PENDING, "allowed [v6]:port")
    s = run_req(o, "AsyncBooking", "a-cb4",
                callback="http://hooks.example:443/h")
    equal(s.state, S.STATE_PENDING, "allowed host, port 443")
    wait_msgs(base + 25)
    for url, words in (("http://evil.example/h", "not in callbacks.allow"),
                       ("http://127.0.0.2:80/h", "not in callbacks.allow"),
                       ("http://127.0.0.1:10/h", "not in callbacks.allow"),
                       ("http://127.0.0.1/h", "not in callbacks.allow"),
                       ("http://hooks.example:8080/h", "80 and 443 only"),
                       ("http://[::1]:8081/h", "not in callbacks.allow"),
                       ("https://127.0.0.1/h", "https is not supported"),
                       ("ftp://127.0.0.1/h", "http://host"),
                       ("http:///nohost", "http://host"),
                       ("http://127.0.0.1:99999/h", "http://host"),
                       ("not a url", "http://host")):
        d = expect_error(SC.INVALID_ARGUMENT, run_req, o, "AsyncBooking",
                         "a-badcb", callback=url)
        check(words in d, "%s refused with %r, want %r" % (url, d, words))
    d = expect_error(SC.INVALID_ARGUMENT, run_req, o, "Booking", "s-cb",
                     callback="http://127.0.0.1/h")
    check("only async" in d, "callback_url of a sync Run: %r" % d)
    expect_error(SC.NOT_FOUND, o.get, "a-badcb")
    wait_msgs(base + 25)
    ok("callback_url: allowed hosts and host:port entries accepted; other "
       "hosts, other ports (80/443 only without one), https, other "
       "schemes, bad ports and sync Runs refused with INVALID_ARGUMENT")

    # Mode overrides.
    d = expect_error(SC.FAILED_PRECONDITION, run_req, o, "Booking", "m1",
                     mode=ASYNC)
    check("no workers" in d, "sync flow run async: %r" % d)
    d = expect_error(SC.FAILED_PRECONDITION, run_req, o, "Booking", "m2",
                     mode=THROTTLING)
    check("no workers" in d, "sync flow run throttling: %r" % d)
    d = expect_error(SC.FAILED_PRECONDITION, run_req, o, "AsyncBooking",
                     "m3", mode=THROTTLING)
    s = run_req(o, "AsyncBooking", "m4", mode=SYNC)
    equal(s.state, S.STATE_COMPLETED, "async flow run as sync")
    equal(s.mode, SYNC, "its mode")
    check(Participant(int(os.environ["ORDER_PORT"]), "order").record("m4")
          is not None, "the order participant saw m4")
    s = run_req(o, "AsyncBooking", "m5", mode=ASYNC)
    equal(s.state, S.STATE_PENDING, "async flow with mode ASYNC")
    wait_msgs(base + 26)
    ok("mode override: to sync runs it on the master; to a mode the flow "
       "has no workers for is FAILED_PRECONDITION")


def nats_down(o):
    deadline = time.time() + 10
    while True:
        t0 = time.time()
        code, d = rpc_error(run_req, o, "AsyncBooking", "d1")
        took = time.time() - t0
        if code == SC.UNAVAILABLE or time.time() > deadline:
            break
        time.sleep(0.1)
    equal(code, SC.UNAVAILABLE, "async Run while NATS is down")
    check("NATS" in d, "message: %r" % d)
    check(took < 0.5, "refused in %.3f s" % took)
    expect_error(SC.NOT_FOUND, o.get, "d1")
    s = run_req(o, "Booking", "d-sync")
    equal(s.state, S.STATE_COMPLETED, "a sync Run while NATS is down")
    equal(o.health("saga.v1.Orchestrator"), 1, "Health while NATS is down")
    ok("NATS down: async Run UNAVAILABLE at once (nothing stored), sync "
       "Runs COMPLETED, Health SERVING")


def nats_back(o):
    deadline = time.time() + 10
    while True:
        code, s = rpc_error(run_req, o, "AsyncBooking", "d1")
        if code == SC.OK or time.time() > deadline:
            break
        time.sleep(0.1)
    equal(code, SC.OK, "async Run once NATS is back")
    equal(s.state, S.STATE_PENDING, "state")
    ok("NATS back: the same async Run is accepted")


def js_api(subject):
    """One request to the JetStream API over NATS' text protocol."""
    sk = socket.create_connection(("127.0.0.1", int(os.environ["NATS_PORT"])),
                                  timeout=5)
    f = sk.makefile("rb")
    f.readline()  # INFO
    sk.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
               b"SUB _INBOX.t 1\r\n"
               b"PUB %s _INBOX.t 0\r\n\r\n" % subject.encode())
    line = f.readline()
    while not line.startswith(b"MSG"):
        line = f.readline()
    n = int(line.split()[-1])
    body = f.read(n + 2)[:n]
    sk.close()
    return json.loads(body)


def unqueued(o):
    r = js_api("$JS.API.STREAM.DELETE.SAGA")
    check(r.get("success"), "stream delete: %r" % r)
    t0 = time.time()
    d = expect_error(SC.UNAVAILABLE, run_req, o, "AsyncBooking", "u1")
    check("did not accept" in d, "message: %r" % d)
    check(time.time() - t0 < 6, "refused in %.1f s" % (time.time() - t0))
    s = o.get("u1")
    equal(s.state, S.STATE_FAILED, "the saga of a refused publish")
    check("never queued" in s.error, "its error: %r" % s.error)
    equal([st.attempts for st in s.steps], [0, 0], "nothing ran")
    ok("a publish the broker refuses: UNAVAILABLE, the saga FAILED "
       "\"never queued\", nothing ran")


def requeued(o):
    deadline = time.time() + 10
    while True:
        code, s = rpc_error(run_req, o, "AsyncBooking", "u1")
        if code == SC.OK or time.time() > deadline:
            break
        time.sleep(0.1)
    equal(code, SC.OK, "the second Run of the never-queued saga")
    equal(s.state, S.STATE_PENDING, "its state")
    equal(s.error, "", "its error")
    wait_msgs(1)
    g = o.get("u1")
    equal(g.state, S.STATE_PENDING, "Get after the second Run")
    ok("a second Run of a never-queued saga queues it: PENDING, in the "
       "stream")
    # Reopened, not ended: the FAILED write's expiry is gone, and so is its
    # FAILED event, so a Watch follows this run instead of ending at once.
    equal(redis("TTL", "saga:{u1}"), -1, "TTL of the reopened saga")
    code = SC.OK
    try:
        evs = o.watch("u1", timeout=1.5)
    except grpc.RpcError as e:
        code, evs = e.code(), []
    equal(code, SC.DEADLINE_EXCEEDED, "a Watch of the queued saga "
          "(no worker runs it: it must still be following)")
    check(all(e.state != S.STATE_FAILED for e in evs),
          "events replayed: %r" % [e.state for e in evs])
    ok("the reopened saga has no expiry and a Watch follows it, not its "
       "old FAILED end")


def redis(*args):
    """One command to the test's Redis; an integer or bulk answer."""
    sk = socket.create_connection(("127.0.0.1",
                                   int(os.environ["REDIS_PORT"])), timeout=5)
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    sk.sendall(req)
    f = sk.makefile("rb")
    line = f.readline()
    sk.close()
    check(line[:1] in (b":", b"$", b"+"), "redis %r: %r" % (args, line))
    return int(line[1:]) if line[:1] == b":" else line


def main():
    o = Orch(int(os.environ["SAGAD_PORT"]))
    globals()[sys.argv[1]](o)


if __name__ == "__main__":
    main()
