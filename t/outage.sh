#!/bin/bash
# t/outage.sh - async sagas under load while their servers go away: first
# the broker is restarted mid-load (same port, same store: nats-server
# stopped cleanly, or rabbitmq-server killed -9 with QUEUE=rabbitmq), then
# redis-server (append-only file, same directory). Runs refused meanwhile are
# the clients' to retry; every saga that Run accepted must end COMPLETED or
# COMPENSATED as its fault asks (t/py/async_load.py), none stuck.

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
async_conf pod-a "$SAGAD_PORT" 2 50 >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 6
export ORDER_PORT PAYMENT_PORT SAGAD_PORT

load() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" load 10 100 "$1" \
		"$LIB_TMP/$1.ids" &
	LOAD=$!
}

if [ "$QUEUE" = rabbitmq ]; then
	# RabbitMQ 3.10 keeps a new quorum queue's registration in a table it
	# writes down every few minutes or at a clean stop: a kill -9 sooner
	# empties the queues sagad just declared (README, "RabbitMQ"). A clean
	# restart first, as a broker that has run a while would have done.
	RABBITMQ_STOP=TERM restart_queue 0
	# The master and its 5 workers each log their reconnection.
	for _ in $(seq 300); do
		[ "$(grep -c 'reconnected' "$LIB_TMP/sagad.log")" -ge 6 ] && break
		sleep 0.1
	done
	[ "$(grep -c 'reconnected' "$LIB_TMP/sagad.log")" -ge 6 ] ||
		fail "sagad and its workers did not reconnect to RabbitMQ"
fi
load "$QUEUE"
sleep 3
restart_queue 2
wait "$LOAD" || fail "async_load.py load ($QUEUE restart)"
"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" check "$LIB_TMP/$QUEUE.ids" 40 ||
	fail "sagas lost across a $QUEUE restart"
if [ "$QUEUE" = rabbitmq ]; then
	pass "rabbitmq-server killed -9 and restarted mid-load: every accepted saga ends"
else
	pass "nats-server restarted mid-load: every accepted saga ends"
fi

load redis
sleep 3
stop_redis
sleep 2
restart_redis
wait "$LOAD" || fail "async_load.py load (Redis restart)"
"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" check "$LIB_TMP/redis.ids" 40 ||
	fail "sagas stuck across a Redis restart"
pass "redis-server restarted mid-load: no saga stuck"
