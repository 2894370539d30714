"""metrics_test.py - /metrics of one real pod after a known mix of sagas
(see t/metrics.sh). Prometheus' text format is parsed strictly enough to
catch a malformed line; the counts are compared exactly.
"""

import base64
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import S, Orch, check, equal, fail, ok  # noqa: E402

HTTP = "http://127.0.0.1:%s" % os.environ["HTTP_PORT"]
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def scrape():
    with urllib.request.urlopen(HTTP + "/metrics", timeout=10) as r:
        ctype = r.headers.get("Content-Type")
        text = r.read().decode()
    check(ctype.startswith("text/plain; version=0.0.4"), "type %r" % ctype)
    series, types = {}, {}
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ")
            check(name not in types, "TYPE twice: " + name)
            types[name] = typ
            continue
        if ln.startswith("#") or not ln:
            continue
        m = LINE.match(ln)
        check(m is not None, "malformed line %r" % ln)
        name, labels = m.group(1), ()
        if m.group(3):
            pairs = LABEL.findall(m.group(3))
            check(",".join('%s="%s"' % (k, v) for k, v, _ in pairs) ==
                  m.group(3), "labels of %r" % ln)
            labels = tuple(sorted((k, v) for k, v, _ in pairs))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in types or base in types, "no TYPE for " + name)
        key = (name, labels)
        check(key not in series, "series twice: %r" % (key,))
        series[key] = float(m.group(4))
    return series, types


def val(series, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    check(key in series, "no series %s%r" % (name, labels))
    return series[key]


def total(series, name, **labels):
    """Sum over the series of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, lb), v in series.items()
               if n == name and want <= set(lb))


def hist(series, name, **labels):
    """Checks one histogram's shape; returns (count, sum)."""
    buckets = sorted(((float(dict(lb)["le"]), v) for (n, lb), v in
                      series.items() if n == name + "_bucket" and
                      set(labels.items()) <= set(lb)), key=lambda x: x[0])
    check(buckets and buckets[-1][0] == float("inf"), "+Inf of " + name)
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), "%s buckets cumulative %r" % (name,
                                                                 counts))
    n = val(series, name + "_count", **labels)
    equal(buckets[-1][1], n, name + " +Inf == count")
    return n, val(series, name + "_sum", **labels)


def http_run(flow, sid, ctx):
    body = json.dumps({"flow": flow, "requestId": sid, "context": {
        k: base64.b64encode(v.encode()).decode() for k, v in ctx.items()}})
    req = urllib.request.Request(HTTP + "/api/v1/sagas", data=body.encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_ended(orch, ids, secs=20):
    deadline = time.time() + secs
    for sid in ids:
        while True:
            s = orch.get(sid)
            if s.state >= S.STATE_COMPLETED:
                break
            check(time.time() < deadline, "%s did not end" % sid)
            time.sleep(0.05)


def worker_pid(topic):
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "worker " + topic + " #1" in cmd or \
                ("--topic " + topic + " " in cmd and "--instance 1 " in cmd):
            return int(p)
    fail("no worker of " + topic)


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(p))
    return out


def t_mix(pod_pid):
    orch = Orch(int(os.environ["GRPC_PORT"]))
    t0 = time.time()
    # Sync: 5 completed over gRPC, 3 compensated over HTTP, 2 FAILED.
    for i in range(5):
        s = orch.run("Booking", {}, request_id="m-ok-%d" % i)
        equal(S.Name(s.state), "STATE_COMPLETED", "sync ok")
    for i in range(3):
        s = http_run("Booking", "m-comp-%d" % i, {"fault": "payment"})
        equal(s["state"], "STATE_COMPENSATED", "sync compensated")
    for i in range(2):
        s = http_run("Booking", "m-fail-%d" % i, {"fault": "payment",
                                                 "fault_undo": "order:3"})
        equal(s["state"], "STATE_FAILED", "sync FAILED")
    orch.resolve_rpc(__import__("saga.v1.saga_pb2", fromlist=["x"])
                     .ResolveRequest(id="m-fail-0", note="by hand"),
                     timeout=10)
    # Async, on nodes only workers run: 4 completed (AOrder takes 100 ms),
    # 2 compensated.
    ids = []
    for i in range(4):
        orch.run("AsyncBooking", {"delay": "order:100"},
                 request_id="m-a-%d" % i)
        ids.append("m-a-%d" % i)
    for i in range(2):
        orch.run("AsyncBooking", {"fault": "payment"},
                 request_id="m-ac-%d" % i)
        ids.append("m-ac-%d" % i)
    wait_ended(orch, ids)
    # One unknown id over gRPC: NOT_FOUND.
    try:
        orch.get("m-nope")
    except Exception:
        pass
    elapsed = time.time() - t0

    # A worker killed: respawned, and counted.
    victim = worker_pid("AsyncBooking/APayment")
    os.kill(victim, signal.SIGKILL)
    deadline = time.time() + 10
    while True:
        ser, types = scrape()
        if total(ser, "sagad_worker_restarts_total",
                 topic="AsyncBooking/APayment") >= 1:
            break
        check(time.time() < deadline, "no restart counted")
        time.sleep(0.1)

    # The async sagas' ends are written by workers: give the last one a
    # moment to land (its record was read back above, the count is the
    # same write).
    time.sleep(0.3)
    ser, types = scrape()
    equal(types["sagad_sagas_started_total"], "counter", "type")
    equal(types["sagad_saga_duration_seconds"], "histogram", "type")
    equal(types["sagad_sagas_in_flight"], "gauge", "type")
    B = dict(flow="Booking", mode="sync")
    A = dict(flow="AsyncBooking", mode="async")
    equal(val(ser, "sagad_sagas_started_total", **B), 10, "Booking started")
    for st, n in [("completed", 5), ("compensated", 3), ("failed", 2),
                  ("resolved", 1)]:
        equal(val(ser, "sagad_sagas_ended_total", state=st, **B), n,
              "Booking ended " + st)
    equal(val(ser, "sagad_sagas_started_total", **A), 6, "async started")
    for st, n in [("completed", 4), ("compensated", 2), ("failed", 0),
                  ("resolved", 0)]:
        equal(val(ser, "sagad_sagas_ended_total", state=st, **A), n,
              "async ended " + st)
    equal(val(ser, "sagad_sagas_started_total", flow="Booking",
              mode="async"), 0, "no async Booking")
    equal(val(ser, "sagad_sagas_in_flight", flow="Booking"), 0, "in flight")
    equal(val(ser, "sagad_sagas_in_flight", flow="AsyncBooking"), 0,
          "async in flight")
    n, sm = hist(ser, "sagad_saga_duration_seconds", **B)
    equal(n, 10, "Booking durations")
    check(0 < sm < elapsed * 10, "Booking duration sum %r" % sm)
    n, sm = hist(ser, "sagad_saga_duration_seconds", **A)
    equal(n, 6, "async durations")
    check(0.4 <= sm < 6 * elapsed, "async sum %r (4 x 100 ms at least)" % sm)

    # Steps: the master's (sync) and the workers' (AOrder, APayment).
    calls = "sagad_step_calls_total"
    equal(val(ser, calls, node="CreateOrder", kind="action", code="OK"), 10,
          "CreateOrder actions")
    equal(val(ser, calls, node="CreatePayment", kind="action", code="OK"), 5,
          "CreatePayment OK")
    equal(total(ser, calls, node="CreatePayment", kind="action"), 10,
          "CreatePayment calls")
    equal(val(ser, calls, node="CreatePayment", kind="compensate",
              code="OK"), 5, "CreatePayment undone")
    equal(val(ser, calls, node="CreateOrder", kind="compensate", code="OK"),
          3, "CreateOrder undone")
    equal(total(ser, calls, node="CreateOrder", kind="compensate"), 3 + 2 * 2,
          "CreateOrder undo calls (2 FAILED: 2 attempts each)")
    equal(val(ser, calls, node="AOrder", kind="action", code="OK"), 6,
          "worker-run AOrder actions")
    equal(val(ser, calls, node="APayment", kind="action", code="OK"), 4,
          "worker-run APayment OK")
    equal(total(ser, calls, node="APayment", kind="action"), 6,
          "worker-run APayment calls")
    equal(val(ser, calls, node="AOrder", kind="compensate", code="OK"), 2,
          "worker-run AOrder undone")
    n, sm = hist(ser, "sagad_step_duration_seconds", node="AOrder",
                 kind="action")
    equal(n, 6, "AOrder durations")
    check(0.4 <= sm < 6 * elapsed, "AOrder sum %r (4 x 100 ms)" % sm)
    n, sm = hist(ser, "sagad_step_duration_seconds", node="CreateOrder",
                 kind="action")
    equal(n, 10, "CreateOrder durations")
    check(0 < sm < 10 * elapsed, "CreateOrder sum %r" % sm)

    g = "sagad_grpc_requests_total"
    equal(val(ser, g, method="/saga.v1.Orchestrator/Run", code="OK"), 11,
          "gRPC Runs (5 sync, 6 async)")
    equal(val(ser, g, method="/saga.v1.Orchestrator/Resolve", code="OK"), 1,
          "gRPC Resolve")
    equal(val(ser, g, method="/saga.v1.Orchestrator/Get", code="NOT_FOUND"),
          1, "gRPC Get NOT_FOUND")
    equal(val(ser, "sagad_worker_restarts_total",
              topic="AsyncBooking/APayment"), 1, "restarts")
    equal(val(ser, "sagad_dependency_up", dep="redis"), 1, "redis up")
    check(("sagad_dependency_up", (("dep", "nats"),)) in ser or
          ("sagad_dependency_up", (("dep", "rabbitmq"),)) in ser, "bus dep")
    # The master and every worker it runs (AOrder x2, APayment, callbacks
    # and whatever else its config asks for): as /proc counts them.
    procs = 1 + len(children(pod_pid))
    check(procs >= 5, "master and at least 4 workers: %d" % procs)
    equal(val(ser, "sagad_processes"), procs, "processes summed")
    check(val(ser, "process_cpu_seconds_total") > 0, "cpu")
    check(val(ser, "process_resident_memory_bytes") > procs * 1024 * 1024,
          "rss of %d processes" % procs)
    check(val(ser, "process_open_fds") >= procs * 4,
          "fds of %d processes" % procs)
    ok("after 10 sync and 6 async sagas: started, ended by state, in "
       "flight, durations, step calls (master's and workers'), gRPC "
       "requests, a worker restart, dependencies and %d processes" % procs)


def t_reloaded():
    orch = Orch(int(os.environ["GRPC_PORT"]))
    deadline = time.time() + 10
    while True:
        try:
            s = orch.run("Booking2", {}, request_id="m-r-1")
            break
        except Exception as e:
            check(time.time() < deadline, "Booking2 never configured: %r"
                  % e)
            time.sleep(0.1)
    equal(S.Name(s.state), "STATE_COMPLETED", "Booking2")
    ser, _ = scrape()
    equal(val(ser, "sagad_sagas_started_total", flow="Booking2",
              mode="sync"), 1, "a flow added by SIGHUP counted")
    equal(val(ser, "sagad_sagas_ended_total", flow="Booking2", mode="sync",
              state="completed"), 1, "and its end")
    equal(val(ser, "sagad_sagas_started_total", flow="Booking", mode="sync"),
          10, "the others kept")
    ok("a flow added by SIGHUP is counted; the counts survived the reload")


if __name__ == "__main__":
    if sys.argv[1] == "mix":
        t_mix(int(sys.argv[2]))
    else:
        t_reloaded()
