#!/bin/bash
# t/throttling.sh - throttling and async sagas end to end: real nats-server
# -js, redis-server, booking participants, t/py/raw_server.py, and two sagad
# pods (pod-a, pod-b) with their real sagad-worker processes on one NATS and
# one Redis, driven by python3-grpcio (t/py/throttling_test.py): a held Run
# never has more calls in flight upstream than its node's workers x
# concurrency, max_queue sheds at once, a caller that goes away does not stop
# its saga, each pod's held calls are answered with the sagas its own workers
# ran (the right x-request-id upstream), async sagas complete and both pods'
# workers share their work, and a stopping pod answers its held calls
# UNAVAILABLE only after shutdown_timeout_ms.

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
start_participant slow "$ORDER" --latency 50
SLOW_PORT=$PORT
start_participant shed "$ORDER" --latency 300
SHED_PORT=$PORT
start_raw

# pod_conf POD PORT: the configuration of one pod; only pod_id and listen
# differ between the pods.
pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 1500;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; lease_ms = 2000; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; };
  slow    = { address = "127.0.0.1:$SLOW_PORT"; timeout_ms = 5000; };
  shed    = { address = "127.0.0.1:$SHED_PORT"; timeout_ms = 5000; };
  stock   = { address = "127.0.0.1:$STOCK_PORT"; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    backoff_ms = 10; workers = 1; concurrency = 2; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    backoff_ms = 10; workers = 1; concurrency = 2; };
  SlowOrder     = { service = "slow"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    workers = 1; concurrency = 4; };
  ShedOrder     = { service = "shed"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    workers = 1; concurrency = 1; };
  Reserve       = { service = "stock"; action = "/shop.Stock/Reserve";
                    retries = 0; request = "reserve_req";
                    reply = "reserve_resp"; workers = 1; concurrency = 8; };
};
flows = {
  Throttled    = { mode = "throttling"; steps = [ "SlowOrder" ]; };
  Shed         = { mode = "throttling"; steps = [ "ShedOrder" ]; max_queue = 5; };
  TShop        = { mode = "throttling"; steps = [ "CreateOrder", "Reserve" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
EOC
}

A_PORT=$(free_port)
B_PORT=$(free_port)
start_pod pod-a "$A_PORT"
A_PID=$POD_PID

export A_PORT B_PORT ORDER_PORT PAYMENT_PORT SLOW_PORT SHED_PORT STOCK_PORT \
	REDIS_PORT
run_py() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/throttling_test.py" "$@" ||
		fail "throttling_test.py $*"
}

run_py bounded
run_py shed
run_py gone

start_pod pod-b "$B_PORT"
B_PID=$POD_PID
run_py two_pods
run_py async_shared

# Both pods' workers ran async sagas: their logs (-v) name the saga ids.
for pod in pod-a pod-b; do
	grep "sagad-worker.*AsyncBooking/" "$LIB_TMP/$pod.log" | grep -q "async-" ||
		fail "$pod's async workers ran none of the async sagas"
done
pass "both pods' async workers took part in the async sagas queued on pod-a"

# A held call when its pod stops: answered UNAVAILABLE only after
# shutdown_timeout_ms, and the pod exits 0.
run_py held_at_stop "$A_PID" &
PY=$!
wait "$PY" || fail "throttling_test.py held_at_stop"
wait "$A_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "pod-a exited $rc after SIGTERM, want 0"
pass "pod-a exits 0 after SIGTERM with a held call"

kill -TERM "$B_PID"
wait "$B_PID" || fail "pod-b exited $? after SIGTERM"
! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer reports in the logs"
