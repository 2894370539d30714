#!/bin/bash
# t/operate.sh - the operator's calls end to end (List, Cancel, Retry,
# Resolve): a real broker (nats-server -js, or rabbitmq-server with
# QUEUE=rabbitmq: t/rabbitmq/operate.sh) and redis-server, the booking participants
# and two sagad pods (pod-a, pod-b) with their real workers, driven by
# python3-grpcio (t/py/operate_test.py): List paging over 5,000 sagas with
# every filter; Cancel of a sync saga stuck on a 30 s participant, on its own
# pod and on the other one; Cancel of async and throttling sagas on the
# other pod; Cancel racing completion 1,000 times; Retry of FAILED sagas
# once their participant is back (sync and async); Resolve; FAILED sagas
# keep no TTL; every bad input's status.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
sync_gen

start_queue
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT

# pod_conf POD PORT: one pod; only pod_id and listen differ. order's
# timeout lets a 30 s call run; compensate_retries = 1 makes FAILED quick.
pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 2000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; lease_ms = 2000;
          saga_ttl = 3600; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; timeout_ms = 60000; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 60000; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    compensate_retries = 1; backoff_ms = 10;
                    workers = 1; concurrency = 64; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    compensate_retries = 1; backoff_ms = 10;
                    workers = 1; concurrency = 64; };
};
flows = {
  Booking      = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; };
  Booking2     = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
  ThrottlingBooking = { mode = "throttling";
                        steps = [ "CreateOrder", "CreatePayment" ]; };
};
EOC
}

A_PORT=$(free_port)
B_PORT=$(free_port)
start_pod pod-a "$A_PORT"
A_PID=$POD_PID
start_pod pod-b "$B_PORT"
B_PID=$POD_PID
export A_PORT B_PORT ORDER_PORT PAYMENT_PORT REDIS_PORT

run_py() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/operate_test.py" "$@" ||
		fail "operate_test.py $*"
}

# ttl ID: the TTL Redis gives the saga's hash (-1: none).
ttl() {
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" TTL "saga:{$1}"
}

run_py list
run_py bad_input
run_py cancel_sync
run_py cancel_other_pod
run_py cancel_compensating
run_py cancel_race

# FAILED sagas wait for an operator: no TTL until Retry or Resolve.
run_py make_failed failed-sync Booking
run_py make_failed failed-async AsyncBooking
run_py make_failed failed-resolve Booking
for id in failed-sync failed-async failed-resolve; do
	[ "$(ttl "$id")" = "-1" ] || fail "$id: FAILED saga has TTL $(ttl "$id")"
done
pass "FAILED sagas keep no TTL"
# The operator's morning check, with sagactl: human and --json.
CTL="$top_builddir/sagactl -s 127.0.0.1:$B_PORT"
$CTL list --state FAILED >"$LIB_TMP/list.txt" || fail "sagactl list exited $?"
for id in failed-sync failed-async failed-resolve; do
	grep -q "^$id .* FAILED " "$LIB_TMP/list.txt" ||
		fail "sagactl list --state FAILED does not show $id"
done
$CTL --json list --state failed --flow Booking --limit 50 >"$LIB_TMP/list.json" ||
	fail "sagactl --json list exited $?"
/usr/bin/python3 - "$LIB_TMP/list.json" <<'PY' || fail "sagactl --json list"
import json, sys
d = json.load(open(sys.argv[1]))
ids = [s["id"] for s in d["sagas"]]
assert ids == ["failed-resolve", "failed-sync"], ids
assert all(s["state"] == "STATE_FAILED" for s in d["sagas"])
assert d["nextPageToken"] == ""
PY
$CTL list --state nonsense >/dev/null 2>&1
[ $? -eq 2 ] || fail "sagactl list --state nonsense: want exit 2"
pass "sagactl list --state FAILED finds them, human and --json"

run_py retry failed-sync
run_py retry failed-async
$CTL --json resolve failed-resolve "order 17 refunded by hand," \
	"ticket OPS-4" >"$LIB_TMP/resolve.json" || fail "sagactl resolve exited $?"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["state"] == "STATE_RESOLVED", d' \
	"$LIB_TMP/resolve.json" || fail "sagactl resolve printed no RESOLVED saga"
run_py resolved failed-resolve
$CTL resolve failed-resolve "again" >/dev/null 2>&1
[ $? -eq 1 ] || fail "sagactl resolve of a RESOLVED saga: want exit 1"
$CTL cancel no-such-saga >/dev/null 2>&1
[ $? -eq 1 ] || fail "sagactl cancel of an unknown saga: want exit 1"
pass "sagactl resolve and cancel: exit 0 done, 1 refused"
for id in failed-sync failed-async failed-resolve; do
	t=$(ttl "$id")
	[ "$t" -gt 0 ] && [ "$t" -le 3600 ] ||
		fail "$id: ended by an operator, TTL $t, want saga_ttl"
done
pass "sagas ended by Retry or Resolve expire after saga_ttl again"

kill -TERM "$A_PID" "$B_PID"
wait "$A_PID" || fail "pod-a exited $? after SIGTERM"
wait "$B_PID" || fail "pod-b exited $? after SIGTERM"
! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer reports in the logs"
