#!/bin/bash
# t/drain.sh - stopping sagad while its workers hold work they cannot
# finish within shutdown_timeout_ms (1 s here):
#  1. a call that takes 3 s: the worker's drain times out, it exits with the
#     message unacknowledged, sagad exits 0; the next sagad gets the message
#     again and the saga completes, the interrupted call counted;
#  2. a worker that cannot drain at all (SIGSTOPped): the supervisor kills
#     it at the deadline and sagad still exits 0, leaving no process.
# Real nats-server -js, redis-server, the booking participants and sagad.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"

start_queue
start_redis
start_participant order "$ORDER" --latency 3000
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
SAGAD_PORT=$(free_port)
# One worker per node; the order calls may take 5 s, sagad only waits 1 s.
async_conf pod-d "$SAGAD_PORT" 1 4 |
	sed -e 's/^shutdown_timeout_ms = 5000;/shutdown_timeout_ms = 1000;/' \
	    -e '/^  order /s/timeout_ms = 1000;/timeout_ms = 5000;/' \
	    >"$LIB_TMP/sagad.conf"
grep -q '^shutdown_timeout_ms = 1000;' "$LIB_TMP/sagad.conf" &&
	grep -q 'order .*timeout_ms = 5000;' "$LIB_TMP/sagad.conf" ||
	fail "config edit"
ctl() { "$top_builddir/sagactl" -s "127.0.0.1:$SAGAD_PORT" "$@"; }

# stop_sagad MAX_SECONDS: SIGTERM, then sagad must be gone (exit status 0)
# within MAX_SECONDS, and none of its workers left.
stop_sagad() {
	local max=$1 t0 rc left pids p
	pids=$(worker_pids)
	[ -n "$pids" ] || fail "sagad has no workers to stop"
	t0=$(date +%s%N)
	kill -TERM "$SAGAD_PID"
	wait "$SAGAD_PID"
	rc=$?
	took=$((($(date +%s%N) - t0) / 1000000))
	[ "$rc" -eq 0 ] || fail "sagad exited $rc after SIGTERM, want 0"
	[ "$took" -le $((max * 1000)) ] ||
		fail "sagad took $took ms to stop, want at most ${max} s"
	left=""
	for p in $pids; do
		kill -0 "$p" 2>/dev/null && left="$left $p"
	done
	[ -z "$left" ] || fail "workers left after sagad:$left"
}

# 1. A call in flight longer than the drain.
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 4
out=$(ctl run AsyncBooking amount=7 --id d1) || fail "Run d1: $out"
echo "$out" | grep -q PENDING || fail "Run d1 did not answer PENDING: $out"
sleep 1	# the order call is under way: it answers at 3 s
stop_sagad 4
grep -q "drain timed out with 1 in flight: exiting" "$LIB_TMP/sagad.log" ||
	fail "no 'drain timed out' line in the log"
pass "a worker whose call outlasts shutdown_timeout_ms exits at the deadline; sagad stopped in $took ms, exit 0, nothing left"

# The message was never acknowledged: the next sagad gets it once its ack
# wait (the node's timeout + 5 s) has passed, and the saga completes.
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 8
state=""
for _ in $(seq 300); do
	state=$(ctl --json get d1 2>/dev/null) || true
	echo "$state" | grep -q '"state": *"STATE_COMPLETED"' && break
	sleep 0.1
done
echo "$state" | grep -q '"state": *"STATE_COMPLETED"' ||
	fail "d1 did not complete after the restart: $state"
# CreateOrder: the interrupted call and the one after redelivery.
order_attempts=$(echo "$state" | tr -d ' \n' |
	sed -n 's/.*"name":"CreateOrder"[^}]*"attempts":\([0-9]*\).*/\1/p')
[ "$order_attempts" = 2 ] ||
	fail "CreateOrder attempts $order_attempts, want 2: $state"
pass "the next sagad finished it: COMPLETED, the interrupted call counted (2 attempts)"

# 2. A worker that does not drain at all.
wpid=$(pgrep -P "$SAGAD_PID" -f "worker AsyncBooking/CreateOrder #1" | head -n 1)
[ -n "$wpid" ] || fail "no CreateOrder worker"
kill -STOP "$wpid"
stop_sagad 4
grep -q "worker AsyncBooking/CreateOrder #1 (pid $wpid) did not stop within 1000 ms: killing it" \
	"$LIB_TMP/sagad.log" || fail "no 'did not stop ... killing it' line"
kill -0 "$wpid" 2>/dev/null && fail "the stopped worker $wpid still exists"
pass "a worker that cannot drain is killed at shutdown_timeout_ms; sagad stopped in $took ms, exit 0"

! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer report"
exit 0
