#!/bin/bash
# t/examples.sh - the booking example's participants (examples/booking/order
# and payment) against python3-grpcio: Create, idempotence, Cancel and
# tombstones, injected faults, latency, --max-inflight with reject and crash,
# and a graceful exit on SIGTERM. t/py/examples_client.py checks the answers.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
CLIENT=$top_srcdir/t/py/examples_client.py
[ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build examples/booking first"
[ -x "$PYTHON_GRPC" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }

GEN=$LIB_TMP/gen
mkdir -p "$GEN"
"$PROTOC" -I"$top_srcdir/proto" --python_out="$GEN" \
	"$top_srcdir/proto/saga/v1/saga.proto" || fail "protoc saga.proto"
"$PROTOC" -I"$top_srcdir/examples/booking" --python_out="$GEN" \
	"$top_srcdir/examples/booking/booking.proto" || fail "protoc booking.proto"

# start NAME PROGRAM ARGS...: starts a participant on a free port; sets PORT
# and PID.
start() {
	local name=$1 prog=$2
	shift 2
	PORT=$(free_port)
	"$prog" -v --listen "127.0.0.1:$PORT" "$@" >"$LIB_TMP/$name.log" 2>&1 &
	PID=$!
	track "$PID"
	wait_port "$PORT" || fail "$name did not listen on $PORT"
}

# stop PID NAME: SIGTERM, and the process must exit 0 within 5 s.
stop() {
	local pid=$1 name=$2 rc
	kill -TERM "$pid" 2>/dev/null	# it may be on its way out already
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && fail "$name still runs 5 s after SIGTERM"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 0 ] || fail "$name exited $rc after SIGTERM, want 0"
}

# Flags.
"$ORDER" --help | grep -q -- '--max-inflight' || fail "order --help"
"$PAYMENT" --overload maybe 2>/dev/null
[ $? -eq 64 ] || fail "payment --overload maybe: want exit 64"
pass "flags"

start order "$ORDER"
ORDER_PORT=$PORT ORDER_PID=$PID
start payment "$PAYMENT"
PAYMENT_PORT=$PORT PAYMENT_PID=$PID
"$PYTHON_GRPC" "$CLIENT" "$GEN" basic "$ORDER_PORT" "$PAYMENT_PORT" ||
	fail "basic scenario"
grep -q 'Create saga=s1 step=CreateOrder attempt=1 -> OK: created ord-1' \
	"$LIB_TMP/order.log" || fail "order -v logs one line per call"
stop "$ORDER_PID" order
stop "$PAYMENT_PID" payment
grep -q 'order: stopped' "$LIB_TMP/order.log" || fail "order: no graceful stop"
pass "Create, Cancel, tombstones, idempotence, fault injection, SIGTERM"

start latency "$ORDER" --latency 200
"$PYTHON_GRPC" "$CLIENT" "$GEN" latency "$PORT" "$PID" ||
	fail "latency scenario"
# The client sent SIGTERM while a call was in flight; the call was answered.
stop "$PID" "order --latency 200"
pass "latency, abandoned calls, SIGTERM with a call in flight"

start evict "$ORDER" --max-records 3 --latency 10 --jitter 20
"$PYTHON_GRPC" "$CLIENT" "$GEN" evict "$PORT" || fail "evict scenario"
stop "$PID" "order --max-records 3"
pass "--max-records, --jitter"

start reject "$ORDER" --latency 1000 --max-inflight 5 --overload reject
"$PYTHON_GRPC" "$CLIENT" "$GEN" reject "$PORT" || fail "reject scenario"
stop "$PID" "order --overload reject"
pass "--max-inflight 5 --overload reject"

start crash "$PAYMENT" --latency 1000 --max-inflight 2 --overload crash
CRASH_PID=$PID
"$PYTHON_GRPC" "$CLIENT" "$GEN" crash "$PORT" payment || fail "crash scenario"
for _ in $(seq 50); do
	kill -0 "$CRASH_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$CRASH_PID" 2>/dev/null && fail "payment --overload crash still runs"
wait "$CRASH_PID"
rc=$?
[ "$rc" -eq 137 ] || fail "payment --overload crash exited $rc, want 137 (SIGKILL)"
grep -q 'crashing (--overload crash)' "$LIB_TMP/crash.log" ||
	fail "payment did not say why it crashed"
pass "--max-inflight 2 --overload crash"
