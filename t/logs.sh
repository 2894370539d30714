#!/bin/bash
# t/logs.sh - structured logs (issue 14), with real servers: sagad with
# log_format = "json" and its workers write one JSON object a line, every
# line parses, and each ended saga (completed, compensated; sync in the
# master, async in a worker) has its one info line with id, flow, mode,
# state, duration_ms and error. Then the same with log_format = "text":
# the ended line in key=value form.

. "$top_srcdir/t/lib.sh"
lib_init

[ -x "$top_builddir/sagad" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"

start_queue
start_redis
PART_PORT=$(free_port)
"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_participant.py" "$PART_PORT" \
	"$LIB_TMP/calls.jsonl" >"$LIB_TMP/participant.log" 2>&1 &
track $!
wait_port "$PART_PORT" || fail "otlp_participant.py did not listen"
CTL=$top_builddir/sagactl

# conf FORMAT PORT
conf() {
	cat <<CONF
pod_id = "pod-log";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 3000;
log_format = "$1";
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
services = { t = { address = "127.0.0.1:$PART_PORT"; timeout_ms = 2000; }; };
nodes = {
  A     = { service = "t"; action = "/t.Svc/A"; compensate = "/t.Svc/UndoA";
            retries = 0; workers = 1; concurrency = 8; };
  B     = { service = "t"; action = "/t.Svc/B"; compensate = "/t.Svc/UndoB";
            retries = 0; workers = 1; concurrency = 8; };
  BFail = { service = "t"; action = "/t.Svc/BFail"; compensate = "/t.Svc/UndoB";
            retries = 0; };
};
flows = {
  Trip      = { mode = "sync";  steps = [ "A", "B" ]; };
  TripFail  = { mode = "sync";  steps = [ "A", "BFail" ]; };
  AsyncTrip = { mode = "async"; steps = [ "A", "B" ]; };
};
CONF
}

# run_sagas PORT PREFIX: a completed and a compensated sync saga, a
# completed async one, each waited for.
run_sagas() {
	"$CTL" -s "127.0.0.1:$1" run Trip --id "$2-ok" >/dev/null ||
		fail "Trip $2-ok"
	"$CTL" -s "127.0.0.1:$1" run TripFail --id "$2-comp" >/dev/null
	[ $? -eq 1 ] || fail "TripFail $2-comp did not compensate"
	"$CTL" -s "127.0.0.1:$1" run AsyncTrip --id "$2-async" --wait \
		>/dev/null || fail "AsyncTrip $2-async"
}

# --- JSON ---------------------------------------------------------------------
PORT1=$(free_port)
conf json "$PORT1" >"$LIB_TMP/json.conf"
start_sagad "$LIB_TMP/json.conf" sagad
wait_workers 2
run_sagas "$PORT1" j
# The async saga's line comes from its worker, after its Run returned.
for _ in $(seq 50); do
	grep -q '"id":"j-async"' "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
kill -TERM "$SAGAD_PID"
wait "$SAGAD_PID" 2>/dev/null
mv "$LIB_TMP/sagad.log" "$LIB_TMP/json.log"

"$PYTHON_GRPC" - "$LIB_TMP/json.log" <<'PY' || fail "JSON log lines"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no log lines"
objs = []
for n, line in enumerate(lines, 1):
    try:
        o = json.loads(line)
    except ValueError as e:
        sys.exit("line %d does not parse (%s): %r" % (n, e, line))
    for k in ("time", "level", "pod", "process", "pid", "msg"):
        assert k in o, "line %d has no %s: %r" % (n, k, line)
    assert o["pod"] == "pod-log", line
    assert o["level"] in ("debug", "info", "warn", "fatal"), line
    objs.append(o)
ended = {o["id"]: o for o in objs if o["msg"] == "saga ended"}
want = {
    "j-ok": ("Trip", "sync", "COMPLETED", "master"),
    "j-comp": ("TripFail", "sync", "COMPENSATED", "master"),
    "j-async": ("AsyncTrip", "async", "COMPLETED", "worker AsyncTrip/B #1"),
}
for sid, (flow, mode, state, proc) in want.items():
    o = ended.get(sid)
    assert o is not None, "no ended line for %s" % sid
    assert (o["flow"], o["mode"], o["state"], o["process"]) == \
        (flow, mode, state, proc), o
    assert o["level"] == "info", o
    assert isinstance(o["duration_ms"], int) and 0 <= o["duration_ms"] < 60000, o
    assert isinstance(o["error"], str), o
assert ended["j-ok"]["error"] == "", ended["j-ok"]
assert "FAILED_PRECONDITION" in ended["j-comp"]["error"], ended["j-comp"]
n = sum(1 for o in objs if o["msg"] == "saga ended")
assert n == 3, "%d ended lines for 3 sagas" % n
assert any(o["process"] == "master" for o in objs)
print("ok - %d JSON lines parse; 3 ended sagas, 3 lines" % len(lines))
PY
pass "log_format json: every line of the master and its workers parses; one info line per ended saga with its fields"

# --- text ---------------------------------------------------------------------
PORT2=$(free_port)
conf text "$PORT2" >"$LIB_TMP/text.conf"
start_sagad "$LIB_TMP/text.conf" sagad
wait_workers 2
run_sagas "$PORT2" t
for _ in $(seq 50); do
	grep -q 'saga t-async ended' "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
grep -q 'info: saga t-ok ended: flow=Trip mode=sync state=COMPLETED duration_ms=[0-9]* error=""$' \
	"$LIB_TMP/sagad.log" || fail "no text ended line of t-ok"
grep -q 'info: saga t-comp ended: flow=TripFail mode=sync state=COMPENSATED duration_ms=[0-9]* error=".*FAILED_PRECONDITION.*"$' \
	"$LIB_TMP/sagad.log" || fail "no text ended line of t-comp"
grep -q 'sagad-worker\[[0-9]*\] info: AsyncTrip/B #1: saga t-async ended: flow=AsyncTrip mode=async state=COMPLETED duration_ms=[0-9]* error=""$' \
	"$LIB_TMP/sagad.log" || fail "no text ended line of t-async from its worker"
[ "$(grep -c ' ended: flow=' "$LIB_TMP/sagad.log")" -eq 3 ] ||
	fail "not one ended line per saga"
pass "log_format text: one info line per ended saga, in the process that ends it"

echo 'log_format = "xml";' >"$LIB_TMP/bad.conf"
"$top_builddir/sagad" -t -c "$LIB_TMP/bad.conf" >"$LIB_TMP/t.out" 2>&1 &&
	fail "sagad -t took log_format xml"
grep -q 'log_format: expected "text" or "json", got "xml"' "$LIB_TMP/t.out" ||
	fail "sagad -t: $(cat "$LIB_TMP/t.out")"
pass "a bad log_format is refused with the reason"
exit 0
