#!/bin/bash
# t/launch.sh - issue 11, cases 1 and 2: an async saga's launch under a
# stalled server. nats-server SIGSTOPped for 8 s under load: a first work
# whose publish the bus never confirmed is "unknown", not "never queued",
# so the saga is accepted and driven to its end (queued again by a sweeper
# if it was lost), never written FAILED while it runs. redis-server
# SIGSTOPped for 8 s: a create Redis applies after its Run gave up is not
# left PENDING forever. Every Run, accepted or refused, is audited against
# sagad and the participants' records (t/py/async_load.py check).

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"
sync_gen

start_queue
start_redis
start_participant order "$ORDER" --latency 2 --jitter 5
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 2 --jitter 5
PAYMENT_PORT=$PORT
SAGAD_PORT=$(free_port)
# A short lease: the launch lease is six of them (12 s).
async_conf pod-a "$SAGAD_PORT" 2 50 |
	sed 's/saga_ttl = 3600;/saga_ttl = 3600; lease_ms = 2000;/' \
	>"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 6
export ORDER_PORT PAYMENT_PORT SAGAD_PORT

stall() {	# stall NAME PID: SIGSTOP for 8 s, 3 s into a 16 s load
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" load 16 60 "$1" \
		"$LIB_TMP/$1.ids" &
	local load=$!
	sleep 3
	kill -STOP "$2"
	sleep 8
	kill -CONT "$2"
	wait "$load" || fail "async_load.py load ($1 stalled)"
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" check \
		"$LIB_TMP/$1.ids" 90 "$LIB_TMP/$1.ids.refused" ||
		fail "a saga lost or half-done across a $1 stall"
}

if [ "$QUEUE" = nats ]; then
	stall nats "$NATS_PID"
	grep -q 'never queued' "$LIB_TMP/sagad.log" &&
		fail "a saga was written FAILED \"never queued\" while it may run"
	grep -q 'did not confirm the first work' "$LIB_TMP/sagad.log" ||
		fail "no publish went unconfirmed during the stall: nothing proven"
	pass "nats-server stopped 8 s under load: publishes left unknown, every Run accepted or refused ends consistent"
fi

stall redis "$REDIS_PID"
pass "redis-server stopped 8 s under load: no saga left PENDING, none half-done"
