#!/bin/bash
# t/prefix.sh - issue 11 case 5: two deployments share one nats-server, each
# with its own nats.stream and nats.subject_prefix (and its own Redis and
# participants). Each one's async and throttling sagas are run by its own
# workers only: a participant of one deployment never hears of a saga of
# the other. A third sagad whose subjects overlap a stream that exists, and
# a fourth that names the first one's stream with another prefix, refuse to
# start with an error that says why.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen

start_nats
start_redis
REDIS_A=$REDIS_PORT
REDIS_B=$(free_port)
mkdir -p "$LIB_TMP/redis-b"
redis-server --bind 127.0.0.1 --port "$REDIS_B" --dir "$LIB_TMP/redis-b" \
	--save '' --appendonly no --daemonize no >"$LIB_TMP/redis-b.log" 2>&1 &
track $!
wait_port "$REDIS_B" || fail "redis-server B"

start_participant order-a "$ORDER"; ORDER_A=$PORT
start_participant payment-a "$PAYMENT"; PAYMENT_A=$PORT
start_participant order-b "$ORDER"; ORDER_B=$PORT
start_participant payment-b "$PAYMENT"; PAYMENT_B=$PORT

# conf POD PORT STREAM PREFIX REDIS ORDER PAYMENT: on stdout. An empty
# PREFIX leaves the key out (the default, "saga").
conf() {
	local pfx=""
	[ -n "$4" ] && pfx="subject_prefix = \"$4\";"
	cat <<-CONF
	pod_id = "$1";
	listen = "127.0.0.1:$2";
	shutdown_timeout_ms = 3000;
	nats = { url = "$NATS_URL"; stream = "$3"; $pfx };
	redis = { host = "127.0.0.1"; port = $5; };
	services = {
	  order   = { address = "127.0.0.1:$6"; timeout_ms = 1000; };
	  payment = { address = "127.0.0.1:$7"; timeout_ms = 1000; };
	};
	nodes = {
	  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
	                    compensate = "/booking.Order/Cancel"; retries = 1;
	                    backoff_ms = 50; concurrency = 20; };
	  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
	                    compensate = "/booking.Payment/Cancel"; retries = 1;
	                    backoff_ms = 50; concurrency = 20; };
	};
	flows = {
	  AsyncBooking      = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
	  ThrottlingBooking = { mode = "throttling"; steps = [ "CreateOrder", "CreatePayment" ]; };
	};
	CONF
}

# wait_ready NAME: until every worker of NAME is ready.
wait_ready() {
	for _ in $(seq 150); do
		grep -q "all [0-9]* workers ready" "$LIB_TMP/$1.log" && return 0
		sleep 0.1
	done
	fail "$1: workers not ready"
}

PORT_A=$(free_port)
PORT_B=$(free_port)
conf pod-a "$PORT_A" SAGA "" "$REDIS_A" "$ORDER_A" "$PAYMENT_A" >"$LIB_TMP/a.conf"
conf pod-b "$PORT_B" SAGAPFX other "$REDIS_B" "$ORDER_B" "$PAYMENT_B" \
	>"$LIB_TMP/b.conf"
start_sagad "$LIB_TMP/a.conf" a
wait_ready a
start_sagad "$LIB_TMP/b.conf" b
wait_ready b
grep -q "consuming other\.work\.async\.AsyncBooking" "$LIB_TMP/b.log" ||
	fail "b's workers do not consume other.work.*"
grep -q "consuming saga\.work\.async\.AsyncBooking" "$LIB_TMP/a.log" ||
	fail "a's workers do not consume saga.work.*"
pass "two deployments on one nats-server start, each on its own subjects"

PORT_A=$PORT_A PORT_B=$PORT_B ORDER_A=$ORDER_A ORDER_B=$ORDER_B \
PAYMENT_A=$PAYMENT_A PAYMENT_B=$PAYMENT_B \
	"$PYTHON_GRPC" - <<'PY' || fail "prefix isolation"
import os, sys
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "t", "py"))
from sync_lib import Orch, Participant, S, check, equal, ok

a = Orch(int(os.environ["PORT_A"]))
b = Orch(int(os.environ["PORT_B"]))
N = 15
futs = []
for i in range(N):
    futs.append(a.run_future("ThrottlingBooking", request_id="ta-%d" % i))
    futs.append(b.run_future("ThrottlingBooking", request_id="tb-%d" % i))
    a.run("AsyncBooking", request_id="aa-%d" % i)
    b.run("AsyncBooking", request_id="ab-%d" % i)
for f in futs:
    equal(S.Name(f.result().state), "STATE_COMPLETED", "a throttling saga")
for o, p in ((a, "a"), (b, "b")):
    for i in range(N):
        s = o.wait_final("a%s-%d" % (p, i), 20)
        check(not isinstance(s, type(None)) and hasattr(s, "state"),
              "saga a%s-%d: %r" % (p, i, s))
        equal(S.Name(s.state), "STATE_COMPLETED", "saga a%s-%d" % (p, i))
for svc in ("order", "payment"):
    for p, other in (("a", "b"), ("b", "a")):
        part = Participant(int(os.environ["%s_%s" % (svc.upper(),
                                                      p.upper())]), svc)
        ids = set(part.records())
        want = {"%s%s-%d" % (k, p, i) for k in "at" for i in range(N)}
        equal(ids, want, "the sagas %s-%s saw" % (svc, p))
ok("each deployment's sagas ran on its own workers and participants only")

# Each saga is unknown to the other deployment's store.
from sync_lib import rpc_error, SC
code, _ = rpc_error(b.get, "aa-0")
equal(code, SC.NOT_FOUND, "Get of a's saga on b")
ok("a saga of one deployment is unknown to the other")
PY

# A third deployment whose subjects overlap the first one's stream.
PORT_C=$(free_port)
conf pod-c "$PORT_C" SAGAC "" "$REDIS_B" "$ORDER_B" "$PAYMENT_B" >"$LIB_TMP/c.conf"
SAGAD_WORKER=$top_builddir/sagad-worker timeout 20 "$top_builddir/sagad" -d \
	-c "$LIB_TMP/c.conf" -p "$LIB_TMP/c.pid" >"$LIB_TMP/c.log" 2>&1
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "c started (exit $rc)"
grep -q "cannot make the work stream.*subject_prefix" "$LIB_TMP/c.log" ||
	{ cat "$LIB_TMP/c.log"; fail "c's error does not say why"; }
[ ! -e "$LIB_TMP/c.pid" ] || fail "c left its pidfile"
pass "a deployment whose subjects overlap another stream refuses to start"

# A fourth that names the first one's stream under another prefix.
PORT_D=$(free_port)
conf pod-d "$PORT_D" SAGA dd "$REDIS_B" "$ORDER_B" "$PAYMENT_B" >"$LIB_TMP/d.conf"
SAGAD_WORKER=$top_builddir/sagad-worker timeout 20 "$top_builddir/sagad" -d \
	-c "$LIB_TMP/d.conf" -p "$LIB_TMP/d.pid" >"$LIB_TMP/d.log" 2>&1
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "d started (exit $rc)"
grep -q "stream SAGA exists with subjects saga\.work\.>" "$LIB_TMP/d.log" ||
	{ cat "$LIB_TMP/d.log"; fail "d's error does not say why"; }
pass "a deployment that would take another's stream refuses to start"

# The first deployment still works after both refusals.
"$top_builddir/sagactl" -s "127.0.0.1:$PORT_A" run ThrottlingBooking \
	--id after-1 >"$LIB_TMP/after.out" 2>&1 ||
	{ cat "$LIB_TMP/after.out"; fail "a after the refusals"; }
pass "the first deployment is untouched"
