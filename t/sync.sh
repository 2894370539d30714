#!/bin/bash
# t/sync.sh - sync sagas end to end: a real redis-server, the booking
# participants (examples/booking), t/py/raw_server.py as a raw-mode service,
# and a real sagad, all driven by python3-grpcio (t/py/sync_test.py): context
# passing, rollback order, retries, timeouts, compensate_retries,
# idempotency, Get and Watch, every bad input of the contract, Health, raw
# mode, traceparent and x-request-id upstream, max_inflight and max_queue,
# Redis going away and coming back, and a graceful SIGTERM.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
TEST=$top_srcdir/t/py/sync_test.py
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen

start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
start_participant slow "$ORDER" --latency 100
SLOW_PORT=$PORT
start_raw
SAGAD_PORT=$(free_port)
sync_conf pod-a "$SAGAD_PORT" >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
export ORDER_PORT PAYMENT_PORT SLOW_PORT STOCK_PORT SAGAD_PORT

run_py() {
	"$PYTHON_GRPC" "$TEST" "$@" || fail "sync_test.py $*"
}

run_py main

# Redis away: Run is UNAVAILABLE and Health says NOT_SERVING; back (the
# same port and append-only file): both recover, and old sagas are there.
stop_redis
run_py redis_down
restart_redis
run_py redis_back

# SIGTERM: Health turns NOT_SERVING, the saga in flight ends, exit 0.
SAGAD_PID=$SAGAD_PID run_py drain &
PY=$!
wait "$PY" || fail "sync_test.py drain"
for _ in $(seq 100); do
	kill -0 "$SAGAD_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$SAGAD_PID" 2>/dev/null && fail "sagad still runs 10 s after SIGTERM"
wait "$SAGAD_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "sagad exited $rc after SIGTERM, want 0"
[ -e "$LIB_TMP/sagad.pid" ] && fail "sagad left its pidfile behind"
pass "sagad exits 0 after SIGTERM and removes its pidfile"
