#!/bin/bash
# t/http.sh - the HTTP listener end to end (http.listen): a real broker and
# redis-server, the booking participants and one sagad pod with its real
# workers, driven over HTTP/1.1 by python's urllib and raw sockets
# (t/py/http_test.py): /livez and /readyz, every JSON API operation and its
# status mapping, Server-Sent Events of a saga until its end, bad JSON
# refused with nothing changed, a huge body and a slowloris refused, the
# connection cap; then /readyz flipping to 503 within a second of
# SIGSTOP of redis-server, and back after SIGCONT; 503 while nats-server
# is down (a flow needs the bus) and 200 once it is back.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"

start_queue
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
HTTP_PORT=$(free_port)

pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 2000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 3600; };
http = { listen = "127.0.0.1:$HTTP_PORT"; max_connections = 16;
         max_body_kb = 64; timeout_ms = 1500; };
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
};
flows = {
  Booking      = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
EOC
}

GRPC_PORT=$(free_port)
start_pod pod-a "$GRPC_PORT"
wait_port "$HTTP_PORT" || fail "no HTTP listener on $HTTP_PORT"
export HTTP_PORT REDIS_PID

/usr/bin/python3 "$top_srcdir/t/py/http_test.py" api ||
	fail "http_test.py api"
/usr/bin/python3 "$top_srcdir/t/py/http_test.py" hostile ||
	fail "http_test.py hostile"
/usr/bin/python3 "$top_srcdir/t/py/http_test.py" readyz ||
	fail "http_test.py readyz"

# readyz: "CODE BODY" of GET /readyz (python: no curl on a fresh machine).
readyz() {
	/usr/bin/python3 - "$HTTP_PORT" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s/readyz" % sys.argv[1],
                               timeout=5)
    print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
PY
}
# readyz_is CODE SECONDS: until /readyz answers CODE.
readyz_is() {
	local i
	for i in $(seq $(($2 * 10))); do
		case "$(readyz)" in "$1 "*) return 0 ;; esac
		sleep 0.1
	done
	return 1
}
# A flow needs the bus: /readyz follows nats-server too.
if [ "$QUEUE" = nats ]; then
	kill -TERM "$NATS_PID"
	wait "$NATS_PID" 2>/dev/null
	readyz_is 503 10 || fail "/readyz not 503 with nats-server down"
	readyz | grep -q "nats is unreachable" ||
		fail "/readyz does not name nats: $(readyz)"
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
		>>"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	track "$NATS_PID"
	readyz_is 200 30 || fail "/readyz not 200 once nats-server is back"
	pass "/readyz: 503 while nats-server is down, 200 once it is back"
fi
kill -0 "$POD_PID" || fail "sagad died"
pass "HTTP listener"
