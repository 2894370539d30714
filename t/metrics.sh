#!/bin/bash
# t/metrics.sh - /metrics of a real pod (master and workers) after a known
# mix of sagas: sync sagas completed, compensated and FAILED (one then
# resolved) over HTTP and gRPC, async sagas run by the workers on nodes of
# their own, a worker killed and respawned, a flow added by SIGHUP. The
# counts must be exact, the histograms consistent and their sums plausible,
# the steps the workers ran counted, the process metrics summed over every
# process (t/py/metrics_test.py, python3-grpcio for the gRPC side).

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
sync_gen

start_queue
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
HTTP_PORT=$(free_port)
EXTRA_FLOW=""

pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 2000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 3600; };
http = { listen = "127.0.0.1:$HTTP_PORT"; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; timeout_ms = 10000; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 10000; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    compensate_retries = 1; backoff_ms = 10; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    compensate_retries = 1; backoff_ms = 10; };
  AOrder        = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 1;
                    backoff_ms = 10; workers = 2; };
  APayment      = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 1;
                    backoff_ms = 10; };
};
flows = {
  Booking      = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "AOrder", "APayment" ]; };
$EXTRA_FLOW
};
EOC
}

GRPC_PORT=$(free_port)
start_pod pod-a "$GRPC_PORT"
wait_port "$HTTP_PORT" || fail "no HTTP listener on $HTTP_PORT"
export HTTP_PORT GRPC_PORT

run_py() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/metrics_test.py" "$@" ||
		fail "metrics_test.py $*"
}

run_py mix "$POD_PID"

# A reload that adds a flow: its sagas are counted too.
EXTRA_FLOW='  Booking2 = { mode = "sync"; steps = [ "CreateOrder" ]; };'
pod_conf pod-a "$GRPC_PORT" >"$LIB_TMP/pod-a.conf"
kill -HUP "$POD_PID"
for _ in $(seq 50); do
	grep -q "configuration reloaded\|reloaded" "$LIB_TMP/pod-a.log" && break
	sleep 0.1
done
run_py reloaded
kill -0 "$POD_PID" || fail "sagad died"
pass "metrics"
