#!/bin/bash
# t/lost.sh - the broker loses what sagad made on it, under running
# workers. First the consumer of one async topic is deleted by hand (NATS:
# the durable consumer, RabbitMQ: its queue): a pull on a consumer that no
# longer exists just times out, so the worker must notice, make it again
# and go on, and the Runs accepted meanwhile (their work stored in the
# stream; RabbitMQ: routed once the queue is back) must all end. Then the
# broker is restarted with its store wiped (a nats-server on an emptyDir
# volume, a RabbitMQ node that lost its data): the master declares the
# stream (exchanges) again, the workers their consumers (queues), and new
# sagas run. Work queued at the moment of the wipe is gone with it: a
# durable broker is sagad's precondition (README, "The queue").

. "$top_srcdir/t/lib.sh"
lib_init

need_booking

start_queue
start_redis
start_participant order "$ORDER" --latency 2
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 2
PAYMENT_PORT=$PORT
SAGAD_PORT=$(free_port)
async_conf pod-a "$SAGAD_PORT" 1 20 >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 4
export ORDER_PORT PAYMENT_PORT SAGAD_PORT NATS_URL RABBITMQ_URL QUEUE

load_check() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" load 2 50 "$1" \
		"$LIB_TMP/$1.ids" || fail "async_load.py load ($1)"
	[ "$(wc -l <"$LIB_TMP/$1.ids")" -ge 90 ] ||
		fail "$1: Run refused sagas: $(wc -l <"$LIB_TMP/$1.ids") accepted of 100"
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" check "$LIB_TMP/$1.ids" 40 ||
		fail "$1: sagas not ended"
}

load_check before

# The CreateOrder topic's consumer goes, under its worker.
"$PYTHON_GRPC" - <<'PY' || fail "deleting the CreateOrder consumer"
import os, sys
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "t", "py"))
if os.environ["QUEUE"] == "nats":
    import invariants as I
    r = I.Nats(os.environ["NATS_URL"]).request(
        "$JS.API.CONSUMER.DELETE.SAGA.async_AsyncBooking_CreateOrder", "")
    if not r.get("success"):
        sys.exit("consumer delete: %r" % r)
else:
    import pika
    c = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    c.channel().queue_delete("saga.work.async.AsyncBooking.CreateOrder.*")
    c.close()
print("deleted the consumer of AsyncBooking/CreateOrder")
PY
if [ "$QUEUE" = nats ]; then
	# Runs go on being accepted: their work waits in the stream.
	load_check deleted
	grep -q 'consumer async_AsyncBooking_CreateOrder was gone from stream SAGA .*made again' \
		"$LIB_TMP/sagad.log" || fail "the worker did not say it made its consumer again"
else
	# The broker cancels the worker's consumer (it says so to clients
	# that ask to be told): the worker reconnects, which declares its
	# queue again, before Runs are routed to it.
	for _ in $(seq 300); do
		grep -q 'connection lost: the broker cancelled a consumer' \
			"$LIB_TMP/sagad.log" && break
		sleep 0.1
	done
	grep -q 'CreateOrder #1: rabbitmq: connection lost: the broker cancelled a consumer' \
		"$LIB_TMP/sagad.log" || fail "the worker did not notice its queue was deleted"
	for _ in $(seq 300); do
		grep -q 'CreateOrder #1: rabbitmq: reconnected' "$LIB_TMP/sagad.log" &&
			break
		sleep 0.1
	done
	sleep 1
	load_check deleted
fi
pass "a consumer deleted under its worker is made again; no saga waits on it"

# NATS: the stream itself deleted by hand under a connected deployment. The
# master declares it at each connection only; a worker that finds its
# consumer gone with the stream declares the stream again.
if [ "$QUEUE" = nats ]; then
	"$PYTHON_GRPC" - <<'PY' || fail "deleting the stream"
import os, sys
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "t", "py"))
import invariants as I
r = I.Nats(os.environ["NATS_URL"]).request("$JS.API.STREAM.DELETE.SAGA", "")
if not r.get("success"):
    sys.exit("stream delete: %r" % r)
PY
	for _ in $(seq 150); do
		grep -q 'stream SAGA was gone: declared it again' "$LIB_TMP/sagad.log" &&
			break
		sleep 0.1
	done
	grep -q 'stream SAGA was gone: declared it again' "$LIB_TMP/sagad.log" ||
		fail "nobody declared the deleted stream again"
	for c in async_AsyncBooking_CreateOrder async_AsyncBooking_CreatePayment; do
		for _ in $(seq 150); do
			[ "$(grep -c "consumer $c was gone from stream SAGA" "$LIB_TMP/sagad.log")" -ge 2 ] &&
				break
			sleep 0.1
		done
	done
	load_check streamless
	pass "the stream deleted by hand is declared again by a worker; sagas run"
fi

# The broker comes back with nothing: no stream, no consumers, no queues.
remade() { grep -c "consumer $1 was gone from stream SAGA" "$LIB_TMP/sagad.log"; }
declare -A REMADE
for c in async_AsyncBooking_CreateOrder async_AsyncBooking_CreatePayment callbacks; do
	REMADE[$c]=$(remade $c)
done
case $QUEUE in
nats)
	nats_halt
	rm -rf "$LIB_TMP/nats"
	mkdir -p "$LIB_TMP/nats"
	nats_start_again
	;;
rabbitmq)
	stop_rabbitmq TERM
	rm -rf "$LIB_TMP/rabbitmq/mnesia"
	mkdir -p "$LIB_TMP/rabbitmq/mnesia"
	start_rabbitmq
	;;
esac
# The master's reconnection declares the stream; Runs wait for it.
before=$(grep -c 'work stream ready\|reconnected to' "$LIB_TMP/sagad.log")
for _ in $(seq 600); do
	[ "$(grep -c 'work stream ready\|reconnected to' "$LIB_TMP/sagad.log")" -gt "$before" ] &&
		break
	sleep 0.1
done
sleep 1
load_check wiped
if [ "$QUEUE" = nats ]; then
	for c in async_AsyncBooking_CreateOrder async_AsyncBooking_CreatePayment callbacks; do
		[ "$(remade $c)" -gt "${REMADE[$c]}" ] ||
			fail "no word of consumer $c made again after the wipe"
	done
fi
pass "$QUEUE restarted without its store: the stream and consumers are made again, sagas run"
