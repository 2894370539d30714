#!/bin/bash
# t/reflow.sh - issue 11, case 3: a reload never changes a saga in flight.
# Async flow AsyncBooking = [CreateOrder, CreatePayment]. Sagas are under
# way (one slow in CreateOrder, one that will fail at payment, several
# queued behind a slow payment with one consumer) when the flow becomes
# [CreateOrder, Md] and sagad gets SIGHUP. Each saga runs the definition it
# started with (recorded as its flow_version; CreatePayment's topic lingers
# until its queued work is done, the legacy topic runs the rest); a saga
# started after the reload runs the new one. Then a reload to a single
# step: the sagas of both older definitions still end as theirs say.

. "$top_srcdir/t/lib.sh"
lib_init

need_booking

start_queue
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 300
PAYMENT_PORT=$PORT
start_participant md "$PAYMENT"
MD_PORT=$PORT

# pod_conf NAME PORT with $STEPS: the flow's steps.
pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 2000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; lease_ms = 2000; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 5000; };
  md      = { address = "127.0.0.1:$MD_PORT"; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    backoff_ms = 10; workers = 1; concurrency = 8; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    backoff_ms = 10; workers = 1; concurrency = 1; };
  Md            = { service = "md"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel";
                    workers = 1; concurrency = 4; };
};
flows = { AsyncBooking = { mode = "async"; steps = [ $STEPS ]; }; };
EOC
}

STEPS='"CreateOrder", "CreatePayment"'
P_PORT=$(free_port)
start_pod pa "$P_PORT"
PA_PID=$POD_PID
export P_PORT ORDER_PORT PAYMENT_PORT MD_PORT

run_py() {	# run_py PHASE: t/py/reflow.py PHASE
	"$PYTHON_GRPC" "$top_srcdir/t/py/reflow.py" "$1" || fail "reflow.py $1"
}
run_py before
# Let the slow one reach its CreateOrder and the queue build up.
sleep 0.5
STEPS='"CreateOrder", "Md"'
pod_conf pa "$P_PORT" >"$LIB_TMP/pa.conf"
kill -HUP "$PA_PID"
for _ in $(seq 100); do
	grep -q 'configuration reloaded' "$LIB_TMP/pa.log" && break
	sleep 0.1
done
run_py after
STEPS='"Md"'
pod_conf pa "$P_PORT" >"$LIB_TMP/pa.conf"
kill -HUP "$PA_PID"
run_py check
grep -q 'AsyncBooking/CreatePayment is gone from the config' "$LIB_TMP/pa.log" ||
	fail "the removed topic did not linger"
pass "a reload never changes a saga in flight: each ran the definition it started with"

# The same across a restart: work queued behind the slow payment when the
# pod stops, and a pod started on a config without CreatePayment.
STEPS='"CreateOrder", "CreatePayment"'
pod_conf pa "$P_PORT" >"$LIB_TMP/pa.conf"
kill -HUP "$PA_PID"
sleep 1
run_py before2
sleep 0.5
kill -TERM "$PA_PID"
for _ in $(seq 100); do kill -0 "$PA_PID" 2>/dev/null || break; sleep 0.1; done
mv "$LIB_TMP/pa.log" "$LIB_TMP/pa1.log"
STEPS='"Md"'
start_pod pa "$P_PORT"
run_py check2
grep -q 'holds [0-9]* messages of a topic this config does not have' \
	"$LIB_TMP/pa.log" || fail "the restarted pod did not find the old topic's work"
pass "across a restart too: a topic gone from the config is read until its work is done"

# NATS: the same, with the removed topic's consumer gone too while the pod
# was down (its consumer_ttl ran out): its work is found in the stream.
[ "$QUEUE" = nats ] || exit 0
PA_PID=$POD_PID
STEPS='"CreateOrder", "CreatePayment"'
pod_conf pa "$P_PORT" >"$LIB_TMP/pa.conf"
kill -HUP "$PA_PID"
sleep 1
RF_PREFIX=rf-t run_py before2
sleep 0.5
kill -TERM "$PA_PID"
for _ in $(seq 100); do kill -0 "$PA_PID" 2>/dev/null || break; sleep 0.1; done
mv "$LIB_TMP/pa.log" "$LIB_TMP/pa2.log"
export NATS_URL
"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "deleting CreatePayment's consumer"
import os, sys
sys.path.insert(0, sys.argv[1])
import invariants as I
r = I.Nats(os.environ["NATS_URL"]).request(
    "$JS.API.CONSUMER.DELETE.SAGA.async_AsyncBooking_CreatePayment", "")
if not r.get("success"):
    sys.exit("consumer delete: %r" % r)
PY
STEPS='"Md"'
start_pod pa "$P_PORT"
RF_PREFIX=rf-t run_py check2
grep -q 'the stream holds [0-9]* messages on saga.work.async.AsyncBooking.CreatePayment.\*, of a topic this config does not have' \
	"$LIB_TMP/pa.log" || fail "the restarted pod did not find the old topic's work in the stream"
pass "a removed topic whose consumer is gone too: its work is found in the stream and done"
