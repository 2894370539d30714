#!/bin/bash
# t/async.sh - async sagas end to end: a real nats-server -js, redis-server,
# the booking participants, a python callback receiver and a real sagad
# whose sagad-worker processes run the steps; driven by python3-grpcio
# (t/py/async_test.py): completion, rollback, retries through the bus,
# business failures, callbacks (JSON, 5xx retried, 4xx not, dead receiver
# given up), a reload of the workers' retries by SIGHUP, then a worker's
# graceful drain on SIGTERM.

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
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
start_receiver
DEAD_PORT=$(free_port)
SAGAD_PORT=$(free_port)
async_conf pod-a "$SAGAD_PORT" 2 20 >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
# Two topics of two workers each, and the callbacks worker.
wait_workers 6
export ORDER_PORT PAYMENT_PORT SAGAD_PORT DEAD_PORT LIB_TMP

"$PYTHON_GRPC" "$top_srcdir/t/py/async_test.py" main || fail "async_test.py"

# SIGHUP: the master passes it on and the workers take the new retries.
sed -i '/^  CreatePayment/,/};/s/retries = 2;/retries = 0;/' "$LIB_TMP/sagad.conf"
grep -q 'compensate_retries = 5; backoff_ms = 50;' "$LIB_TMP/sagad.conf" ||
	fail "config edit"
kill -HUP "$SAGAD_PID"
sleep 1
"$PYTHON_GRPC" "$top_srcdir/t/py/async_test.py" reload ||
	fail "async_test.py reload"

# A worker told to stop finishes what it holds and exits 0; the master
# starts another in its place.
pid=$(worker_pids | head -n 1)
[ -n "$pid" ] || fail "no worker process"
kill -TERM "$pid"
for _ in $(seq 100); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "worker $pid still runs 10 s after SIGTERM"
grep -q "drained: exiting" "$LIB_TMP/sagad.log" || fail "no drain line"
pass "a worker drains and exits on SIGTERM"

# On RabbitMQ: the bus's URL is restart-only, so a reload that changes it
# keeps the running one and says why, and its password reaches neither the
# log nor sagad -t.
if [ "$QUEUE" = rabbitmq ]; then
	sed -i 's|amqp://sagad:secret@|amqp://sagad:other-secret@|' "$LIB_TMP/sagad.conf"
	kill -HUP "$SAGAD_PID"
	for _ in $(seq 50); do
		grep -q 'rabbitmq.url: changed' "$LIB_TMP/sagad.log" && break
		sleep 0.1
	done
	grep -q 'rabbitmq.url: changed from "amqp://sagad:\*\*\*@127.0.0.1:[0-9]*/saga" to "amqp://sagad:\*\*\*@127.0.0.1:[0-9]*/saga", but only a restart can change it; keeping' \
		"$LIB_TMP/sagad.log" || fail "the reload of rabbitmq.url was not logged"
	sed 's|amqp://sagad:other-secret@|amqps://sagad:other-secret@|' \
		"$LIB_TMP/sagad.conf" >"$LIB_TMP/bad.conf"
	"$top_builddir/sagad" -t -c "$LIB_TMP/bad.conf" >"$LIB_TMP/t.out" 2>&1 &&
		fail "sagad -t took an amqps:// URL"
	grep -q 'rabbitmq.url: expected a URL amqp://.*got "amqps://sagad:\*\*\*@' \
		"$LIB_TMP/t.out" || fail "sagad -t: $(cat "$LIB_TMP/t.out")"
	grep -q secret "$LIB_TMP/sagad.log" "$LIB_TMP/t.out" &&
		fail "a RabbitMQ password reached the log or sagad -t"
	pass "SIGHUP keeps the running rabbitmq.url and says so; its password is never shown"
fi
exit 0
