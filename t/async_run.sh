#!/bin/bash
# t/async_run.sh - the master's side of async Runs, against a real
# nats-server -js, redis-server, booking participants and sagad, driven by
# python3-grpcio (t/py/async_run_test.py). The workers are parked (a stand-in
# that reports ready and consumes nothing), so every message sagad publishes
# stays in the stream and is counted there (nats-server's /jsz): Run answers
# PENDING once the work is stored, a second Run publishes nothing new,
# callback_url checks, mode overrides, NATS down (async refused at once, sync
# still served), a publish the broker refuses (the saga is FAILED "never
# queued" and a second Run queues it), and NATS back. t/throttling.sh runs
# the real workers.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen

# nats-server with its monitoring port (for /jsz), restartable on the same
# ports and store.
NATS_PORT=$(free_port)
NATS_MON=$(free_port)
start_nats_mon() {
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" \
		-sd "$LIB_TMP/nats" >>"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	track "$NATS_PID"
	wait_port "$NATS_PORT" || fail "nats-server did not listen"
	wait_port "$NATS_MON" || fail "nats-server monitoring did not listen"
}
stop_nats() {
	kill -TERM "$NATS_PID"
	wait "$NATS_PID" 2>/dev/null
}
mkdir -p "$LIB_TMP/nats"
start_nats_mon
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT

# The parked worker: ready at once, then idle until the master goes.
cat >"$LIB_TMP/parked-worker" <<'EOW'
#!/bin/bash
while [ $# -gt 0 ]; do
	case $1 in
	--ready-fd) rfd=$2; shift ;;
	--parent-fd) pfd=$2; shift ;;
	esac
	shift
done
trap 'exit 0' TERM
echo ready >&"$rfd"
cat <&"$pfd" >/dev/null &
wait
EOW
chmod +x "$LIB_TMP/parked-worker"

SAGAD_PORT=$(free_port)
cat >"$LIB_TMP/sagad.conf" <<EOC
pod_id = "pod-a";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 3000;
nats  = { url = "nats://127.0.0.1:$NATS_PORT"; stream = "SAGA"; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; lease_ms = 2000; };
callbacks = { allow = [ "127.0.0.1:9", "hooks.example", "[::1]:8080" ]; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    backoff_ms = 10; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    backoff_ms = 10; };
};
flows = {
  Booking      = { mode = "sync";  steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
EOC
"$SAGAD" -t -c "$LIB_TMP/sagad.conf" >/dev/null || fail "bad test config"
SAGAD_WORKER=$LIB_TMP/parked-worker "$SAGAD" -d -c "$LIB_TMP/sagad.conf" \
	-p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
SAGAD_PID=$!
track "$SAGAD_PID"
wait_port "$SAGAD_PORT" || fail "sagad did not listen"
grep -q "nats: connected" "$LIB_TMP/sagad.log" || {
	sleep 1
	grep -q "nats: connected" "$LIB_TMP/sagad.log" || fail "sagad did not log its NATS connection"
}

export SAGAD_PORT ORDER_PORT PAYMENT_PORT NATS_PORT NATS_MON REDIS_PORT
run_py() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_run_test.py" "$@" ||
		fail "async_run_test.py $*"
}

run_py accepted

# NATS away: async refused at once, sync still served, logged.
stop_nats
run_py nats_down
grep -q "nats: disconnected" "$LIB_TMP/sagad.log" || fail "the NATS loss was not logged"
pass "sagad logged the loss of NATS"

# Back (same port and store): async accepted again, stream declared again.
start_nats_mon
run_py nats_back
grep -q "nats: reconnected" "$LIB_TMP/sagad.log" || fail "the reconnection was not logged"

# The stream deleted behind sagad's back: the broker refuses the publish.
run_py unqueued
stop_nats
start_nats_mon
run_py requeued

kill -TERM "$SAGAD_PID"
wait "$SAGAD_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "sagad exited $rc after SIGTERM, want 0"
pass "sagad with a bus exits 0 after SIGTERM"
! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer reports in the logs"
