"""http_test.py - the HTTP listener of one real sagad pod (see t/http.sh),
as a client sees it: python's urllib for the JSON API, raw sockets for
what a hostile client does. Each subcommand is one scenario.
"""

import base64
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

PORT = int(os.environ["HTTP_PORT"])
BASE = "http://127.0.0.1:%d" % PORT


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(msg):
    print("ok - " + msg)


def http(method, path, body=None, raw=None, headers=None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code, text, ctype = r.status, r.read(), r.headers.get(
                "Content-Type", "")
    except urllib.error.HTTPError as e:
        code, text, ctype = e.code, e.read(), e.headers.get(
            "Content-Type", "")
    if ctype.startswith("application/json"):
        return code, json.loads(text)
    return code, text.decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def run(flow, saga_id, ctx=None, **kw):
    body = {"flow": flow, "requestId": saga_id,
            "context": {k: b64(v) for k, v in (ctx or {}).items()}}
    body.update(kw)
    return http("POST", "/api/v1/sagas", body)


def get(saga_id):
    return http("GET", "/api/v1/sagas/" + saga_id)


def wait_state(saga_id, states, secs=15):
    deadline = time.time() + secs
    while time.time() < deadline:
        code, s = get(saga_id)
        if code == 200 and s["state"] in states:
            return s
        time.sleep(0.05)
    fail("%s: not in %r after %ds" % (saga_id, states, secs))


def expect(code, want, body, what):
    check(code == want, "%s: HTTP %d, expected %d: %r" % (what, code, want,
                                                         body))


KEEPALIVES = []


def sse(path, timeout=30):
    """The data lines of an event stream, read until the server closes."""
    req = urllib.request.Request(BASE + path)
    events = []
    with urllib.request.urlopen(req, timeout=timeout) as r:
        check(r.headers.get("Content-Type") == "text/event-stream",
              "events: content type %r" % r.headers.get("Content-Type"))
        for line in r:
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            elif line.startswith("event: error"):
                events.append("error")
            elif line.startswith(": keepalive"):
                KEEPALIVES.append(path)
    return events


def t_api():
    code, text = http("GET", "/livez")
    expect(code, 200, text, "/livez")
    code, text = http("GET", "/readyz")
    expect(code, 200, text, "/readyz")
    ok("/livez and /readyz answer 200")

    # Run (sync): the saga as protobuf's JSON mapping writes it.
    code, s = run("Booking", "h-sync-1", {"item": "book"})
    expect(code, 200, s, "Run sync")
    check(s["id"] == "h-sync-1" and s["flow"] == "Booking", "ids %r" % s)
    check(s["state"] == "STATE_COMPLETED", "state %r" % s["state"])
    check(s["mode"] == "MODE_SYNC", "mode %r" % s["mode"])
    check(isinstance(s["createdUnixMs"], str) and
          int(s["createdUnixMs"]) > 1600000000000, "int64 as a string")
    check(base64.b64decode(s["context"]["item"]) == b"book",
          "context bytes as base64: %r" % s["context"])
    check([x["name"] for x in s["steps"]] == ["CreateOrder", "CreatePayment"]
          and all(x["state"] == "STATE_COMPLETED" for x in s["steps"]),
          "steps %r" % s["steps"])
    # A second Run of the id runs nothing and answers the saga.
    code, s2 = run("Booking", "h-sync-1")
    expect(code, 200, s2, "Run again")
    check(s2["createdUnixMs"] == s["createdUnixMs"], "the same saga")
    ok("POST /api/v1/sagas runs a sync saga; JSON as protobuf maps it")

    code, g = get("h-sync-1")
    expect(code, 200, g, "Get")
    check(g["state"] == "STATE_COMPLETED" and g["id"] == "h-sync-1", "%r" % g)
    code, e = get("no-such-saga")
    expect(code, 404, e, "Get unknown")
    check(e["code"] == 5 and e["message"], "error body %r" % e)
    code, e = run("NoSuchFlow", "h-x")
    expect(code, 404, e, "Run of an unknown flow")
    code, e = run("", "h-x")
    expect(code, 400, e, "Run without a flow")
    code, e = run("Booking", "h-sync-1-other", mode="MODE_BOGUS")
    expect(code, 400, e, "Run with a bad enum")
    code, e = run("AsyncBooking", "h-sync-1")
    expect(code, 409, e, "Run of a known id with another flow")
    check(e["code"] == 6, "ALREADY_EXISTS %r" % e)
    ok("GET one; 404 unknown saga and flow; 400 bad fields; 409 id taken")

    # Bad JSON: 400 and nothing changes.
    for raw in [b"{", b'{"flow": "Booking", "requestId": "h-bad-1",}',
                b'{"flow": "Booking", "requestId": "h-bad-1", "x": 1}',
                b'{"flow": "Booking", "flow": "Booking", '
                b'"requestId": "h-bad-1"}',
                b'{"flow": 7, "requestId": "h-bad-1"}',
                b'{"flow": "Booking", "requestId": "h-bad-1", '
                b'"context": {"a": "not base64!"}}',
                b'["Booking"]', b'{"flow": "Booking\xff", '
                b'"requestId": "h-bad-1"}']:
        code, e = http("POST", "/api/v1/sagas", raw=raw)
        expect(code, 400, e, "bad JSON %r" % raw)
        check(e["code"] == 3, "INVALID_ARGUMENT %r" % e)
    code, e = get("h-bad-1")
    expect(code, 404, e, "no saga from bad JSON")
    ok("bad JSON bodies: 400 with the reason, and no saga created")

    # A compensated saga, and a FAILED one (payment fails, order's undo
    # fails 3 times with compensate_retries = 1).
    code, s = run("Booking", "h-comp-1", {"fault": "payment"})
    expect(code, 200, s, "Run compensated")
    check(s["state"] == "STATE_COMPENSATED", "state %r" % s["state"])
    code, s = run("Booking", "h-fail-1", {"fault": "payment",
                                          "fault_undo": "order:3"})
    check(s["state"] == "STATE_FAILED", "state %r" % s)
    code, s = run("Booking", "h-fail-2", {"fault": "payment",
                                          "fault_undo": "order:3"})
    check(s["state"] == "STATE_FAILED", "state %r" % s)

    # List: repeated states, short names, flow, time bounds, paging.
    code, lst = http("GET", "/api/v1/sagas?state=STATE_FAILED")
    expect(code, 200, lst, "List FAILED")
    ids = [x["id"] for x in lst["sagas"]]
    check(ids == ["h-fail-2", "h-fail-1"], "newest first: %r" % ids)
    code, lst = http("GET", "/api/v1/sagas?state=FAILED&state=compensated"
                     "&flow=Booking")
    ids = sorted(x["id"] for x in lst["sagas"])
    check(ids == ["h-comp-1", "h-fail-1", "h-fail-2"], "two states %r" % ids)
    code, lst = http("GET", "/api/v1/sagas?page_size=2")
    check(len(lst["sagas"]) == 2 and lst["nextPageToken"], "page 1 %r" % lst)
    code, lst2 = http("GET", "/api/v1/sagas?page_size=2&page_token=" +
                      urllib.request.quote(lst["nextPageToken"]))
    expect(code, 200, lst2, "page 2")
    check(not set(x["id"] for x in lst["sagas"]) &
          set(x["id"] for x in lst2["sagas"]), "pages do not overlap")
    code, lst = http("GET", "/api/v1/sagas?since_unix_ms=%d" %
                     (time.time() * 1000 + 3600000))
    check(code == 200 and lst["sagas"] == [], "since in the future %r" % lst)
    for q in ["state=BOGUS", "page_size=-1", "since_unix_ms=x", "foo=1",
              "page_token=notatoken"]:
        code, e = http("GET", "/api/v1/sagas?" + q)
        expect(code, 400, e, "List ?" + q)
    ok("List: repeated and short states, flow, time, pages; 400 bad query")

    # Cancel, Retry, Resolve: the saga, 409 where gRPC says
    # FAILED_PRECONDITION, 404 unknown.
    code, e = http("POST", "/api/v1/sagas/h-sync-1:cancel", {"reason": "x"})
    expect(code, 409, e, "Cancel of an ended saga")
    code, e = http("POST", "/api/v1/sagas/nope:cancel", {"reason": "x"})
    expect(code, 404, e, "Cancel unknown")
    code, e = http("POST", "/api/v1/sagas/h-sync-1:retry")
    expect(code, 409, e, "Retry of a COMPLETED saga")
    code, e = http("POST", "/api/v1/sagas/nope:retry")
    expect(code, 404, e, "Retry unknown")
    code, e = http("POST", "/api/v1/sagas/h-sync-1:resolve", {"note": "n"})
    expect(code, 409, e, "Resolve of a COMPLETED saga")
    code, e = http("POST", "/api/v1/sagas/h-fail-1:resolve", {"nope": "n"})
    expect(code, 400, e, "Resolve with an unknown field")
    code, e = http("POST", "/api/v1/sagas/h-fail-1:resolve",
                   {"id": "other", "note": "n"})
    expect(code, 400, e, "Resolve naming another id")
    code, s = get("h-fail-1")
    check(s["state"] == "STATE_FAILED", "refused Resolve changed nothing")
    code, s = http("POST", "/api/v1/sagas/h-fail-1:resolve",
                   {"note": "fixed by hand"})
    expect(code, 200, s, "Resolve")
    check(s["state"] == "STATE_RESOLVED", "Resolve %r" % s["state"])
    code, s = http("POST", "/api/v1/sagas/h-fail-2:retry", {})
    expect(code, 200, s, "Retry")
    check(s["state"] == "STATE_COMPENSATING", "Retry answers %r" % s["state"])
    s = wait_state("h-fail-2", ["STATE_COMPENSATED"])
    # Cancel of a running async saga (order takes 3 s).
    code, s = run("AsyncBooking", "h-cancel-1", {"delay": "order:3000"})
    expect(code, 200, s, "Run async")
    time.sleep(0.5)
    code, s = http("POST", "/api/v1/sagas/h-cancel-1:cancel",
                   {"reason": "changed my mind"})
    expect(code, 200, s, "Cancel")
    s = wait_state("h-cancel-1", ["STATE_COMPENSATED"])
    check(s["error"] == "cancelled: changed my mind", "error %r" % s["error"])
    ok("Cancel, Retry, Resolve: 200 with the saga, 409 wrong state, "
       "404 unknown, 400 bad body")

    # Server-Sent Events: every event in order, then the stream closes.
    code, s = run("AsyncBooking", "h-sse-1", {"delay": "order:300"})
    expect(code, 200, s, "Run async for SSE")
    t0 = time.time()
    events = sse("/api/v1/sagas/h-sse-1/events")
    check(time.time() - t0 < 10, "the stream closed at the saga's end")
    check(all(isinstance(e, dict) and e["sagaId"] == "h-sse-1"
              for e in events), "events %r" % events)
    seen = [(e["step"], e["state"]) for e in events]
    check(seen[-1] == ("", "STATE_COMPLETED"), "last event %r" % seen)
    check(("CreateOrder", "STATE_COMPLETED") in seen and
          ("CreatePayment", "STATE_COMPLETED") in seen and
          seen.index(("CreateOrder", "STATE_COMPLETED")) <
          seen.index(("CreatePayment", "STATE_COMPLETED")), "order %r" % seen)
    ms = [int(e["unixMs"]) for e in events]
    check(ms == sorted(ms), "event times in order")
    # A stream of an ended saga replays it and closes.
    again = sse("/api/v1/sagas/h-sse-1/events")
    check([(e["step"], e["state"]) for e in again] == seen, "replay")
    code, e = http("GET", "/api/v1/sagas/nope/events")
    expect(code, 404, e, "events of an unknown saga")
    ok("events: %d SagaEvents in order as SSE, closed at the end; 404 "
       "unknown" % len(events))

    code, e = http("DELETE", "/api/v1/sagas/h-sync-1")
    check(code in (405, 501), "DELETE: %d" % code)
    code, e = http("POST", "/api/v1/sagas/h-sync-1")
    expect(code, 405, e, "POST on a saga")
    code, e = http("GET", "/api/v1/nothing")
    expect(code, 404, e, "unknown path")
    ok("wrong methods 405, unknown paths 404")


def raw_conn():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    return s


def closed_within(s, secs):
    """Whether the server closes s within secs (reads until EOF)."""
    s.settimeout(secs)
    t0 = time.time()
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return time.time() - t0
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        return time.time() - t0


def t_hostile():
    # A body over max_body_kb (64): 413, and the saga is not created.
    big = json.dumps({"flow": "Booking", "requestId": "h-big-1",
                      "context": {"x": b64("a" * 100000)}}).encode()
    code, e = http("POST", "/api/v1/sagas", raw=big)
    expect(code, 413, e, "huge body")
    code, e = get("h-big-1")
    expect(code, 404, e, "no saga from a huge body")
    # A declared huge body is refused before it is sent.
    s = raw_conn()
    s.sendall(b"POST /api/v1/sagas HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 100000000\r\n\r\n")
    resp = s.recv(4096)
    check(b" 413 " in resp.split(b"\r\n")[0], "declared huge: %r" % resp[:80])
    s.close()
    ok("huge bodies: 413, nothing created")

    # Slowloris: a byte at a time never completes a request; the
    # connection is closed once timeout_ms (1.5 s) has passed anyway.
    s = raw_conn()
    t0 = time.time()
    closed = None
    for c in b"GET /livez HTTP/1.1\r\nX-Slow: " + b"a" * 200:
        try:
            s.sendall(bytes([c]))
        except OSError:
            closed = time.time() - t0
            break
        s.settimeout(0.2)
        try:
            if s.recv(1) == b"":
                closed = time.time() - t0
                break
        except (socket.timeout, TimeoutError):
            pass
        except ConnectionResetError:
            closed = time.time() - t0
            break
        if time.time() - t0 > 10:
            break
    check(closed is not None and closed < 4,
          "a slowloris is closed after timeout_ms: %r" % closed)
    s.close()
    # An idle connection too.
    s = raw_conn()
    t = closed_within(s, 5)
    check(t is not None and t < 4, "an idle connection is closed: %r" % t)
    s.close()
    ok("slowloris closed after %.1fs, idle after %.1fs" % (closed, t))

    # Over max_connections (16): the extra ones are closed at once, and
    # the listener serves again once they go.
    held = [raw_conn() for _ in range(16)]
    time.sleep(0.3)
    extra = raw_conn()
    t = closed_within(extra, 3)
    check(t is not None, "a connection over the cap is closed")
    for s in held:
        s.close()
    extra.close()
    time.sleep(0.6)
    code, text = http("GET", "/livez")
    expect(code, 200, text, "served again after the cap")
    # Garbage is a 400, not a crash.
    s = raw_conn()
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    closed_within(s, 3)
    s.close()
    code, text = http("GET", "/livez")
    expect(code, 200, text, "alive after garbage")
    ok("connections over max_connections closed; garbage survived")

    # Clients that leave while their answer is pending: a sync Run held
    # for a 2 s step, an event stream of a running saga. The sagas go on.
    body = json.dumps({"flow": "Booking", "requestId": "h-gone-1",
                       "context": {"delay": b64("order:2000")}}).encode()
    s = raw_conn()
    s.sendall(b"POST /api/v1/sagas HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n"
              b"\r\n%s" % (len(body), body))
    time.sleep(0.3)
    s.close()
    s = raw_conn()
    s.sendall(b"GET /api/v1/sagas/h-gone-1/events HTTP/1.1\r\nHost: x\r\n"
              b"\r\n")
    head = s.recv(4096)
    check(b"text/event-stream" in head, "stream started: %r" % head[:200])
    s.close()
    s = wait_state("h-gone-1", ["STATE_COMPLETED"])
    code, text = http("GET", "/livez")
    expect(code, 200, text, "alive after clients left")
    ok("clients leaving a held Run and an event stream: the saga completed")

    # Answers that wait on a saga longer than timeout_ms (1.5 s) are not
    # cut: a sync Run held 2.5 s, and the event stream of a saga whose
    # step takes that long.
    import threading
    events = {}

    def watch():
        time.sleep(0.3)
        events["got"] = sse("/api/v1/sagas/h-long-1/events")
    t = threading.Thread(target=watch)
    t.start()
    code, s = run("Booking", "h-long-1", {"delay": "order:2500"})
    expect(code, 200, s, "a Run held 2.5 s")
    check(s["state"] == "STATE_COMPLETED", "held Run: %r" % s["state"])
    t.join(10)
    check(events.get("got") and events["got"][-1]["state"] ==
          "STATE_COMPLETED", "the slow saga's stream: %r" % events)
    check("/api/v1/sagas/h-long-1/events" in KEEPALIVES,
          "a comment on the stream quiet for timeout_ms")
    ok("a Run held and an event stream open past timeout_ms are not cut; "
       "the quiet stream got a keep-alive comment")


def t_readyz():
    redis = int(os.environ["REDIS_PID"])
    code, text = http("GET", "/readyz")
    expect(code, 200, text, "/readyz before")
    os.kill(redis, signal.SIGSTOP)
    t0 = time.time()
    try:
        while time.time() - t0 < 5:
            code, text = http("GET", "/readyz")
            if code == 503:
                break
            time.sleep(0.05)
        down = time.time() - t0
        check(code == 503, "/readyz still %d 5s after SIGSTOP" % code)
        code, text = http("GET", "/livez")
        expect(code, 200, text, "/livez while redis is stopped")
    finally:
        os.kill(redis, signal.SIGCONT)
    t0 = time.time()
    while time.time() - t0 < 10:
        code, text = http("GET", "/readyz")
        if code == 200:
            break
        time.sleep(0.05)
    up = time.time() - t0
    expect(code, 200, text, "/readyz after SIGCONT")
    # Measured, printed; the bound is loose for a loaded machine.
    check(down < 2.0, "/readyz took %.2fs to say 503" % down)
    ok("/readyz: 503 %.2fs after SIGSTOP of redis-server, 200 again %.2fs "
       "after SIGCONT" % (down, up))


if __name__ == "__main__":
    {"api": t_api, "hostile": t_hostile, "readyz": t_readyz}[sys.argv[1]]()
