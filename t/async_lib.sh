# t/async_lib.sh - what t/async.sh and t/crash.sh share, on top of t/lib.sh
# and t/sync_lib.sh: the async test config, the callback receiver and the
# worker processes of a sagad. Source it after lib_init.

# shellcheck shell=bash

# async_conf POD PORT WORKERS CONCURRENCY: t/conf/async.conf.in, on stdout.
async_conf() {
	sed -e "s|@POD@|$1|" -e "s|@LISTEN@|127.0.0.1:$2|" \
	    -e "s|@QUEUE_CONF@|$QUEUE_CONF|" \
	    -e "s|@REDIS_PORT@|$REDIS_PORT|" \
	    -e "s|@ORDER@|127.0.0.1:${ORDER_PORT:-1}|" \
	    -e "s|@PAYMENT@|127.0.0.1:${PAYMENT_PORT:-1}|" \
	    -e "s|@WORKERS@|$3|" -e "s|@CONCURRENCY@|$4|" \
	    -e "s|@RECEIVER_PORT@|${RECEIVER_PORT:-1}|g" \
	    -e "s|@DEAD_PORT@|${DEAD_PORT:-1}|" \
	    "$top_srcdir/t/conf/async.conf.in"
}

# start_receiver: t/py/async_receiver.py; sets RECEIVER_PORT, RECEIVER_LOG.
start_receiver() {
	RECEIVER_PORT=$(free_port)
	RECEIVER_LOG=$LIB_TMP/callbacks.jsonl
	: >"$RECEIVER_LOG"
	"$PYTHON_GRPC" "$top_srcdir/t/py/async_receiver.py" "$RECEIVER_PORT" \
		"$RECEIVER_LOG" >"$LIB_TMP/receiver.log" 2>&1 &
	track $!
	wait_port "$RECEIVER_PORT" || fail "async_receiver.py did not listen"
	export RECEIVER_PORT RECEIVER_LOG
}

# worker_pids: the pids of SAGAD_PID's children (its workers), one a line.
worker_pids() {
	pgrep -P "$SAGAD_PID"
}

# wait_workers N [SECONDS]: until sagad runs N workers that opened their
# consumers (each logs "consuming ..." once).
wait_workers() {
	local n=$1 secs=${2:-20} i
	for i in $(seq $((secs * 10))); do
		[ "$(grep -c 'consuming saga\.work' "$LIB_TMP/sagad.log")" -ge "$n" ] &&
			return 0
		sleep 0.1
	done
	fail "fewer than $n workers consuming after ${secs}s"
}

# restart_nats [PAUSE]: stops nats-server and starts it again on the same
# port with the same JetStream store directory (its streams and consumers
# survive). nats_halt and nats_start_again are its halves, for a test that
# does something to the store in between.
restart_nats() {
	nats_halt
	sleep "${1:-1}"
	nats_start_again
}

nats_halt() {
	kill -TERM "$NATS_PID"
	wait "$NATS_PID" 2>/dev/null
}

nats_start_again() {
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
		>>"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	track "$NATS_PID"
	wait_port "$NATS_PORT"
}

# throttled_pod_conf POD PORT: pod POD on PORT with one throttling flow,
# Throttled = [SlowOrder] on $SLOW_PORT, one worker of concurrency 1, and
# a 1.5 s lease (t/adopt.sh, t/phantom.sh: pods that adopt each other).
throttled_pod_conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 1000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; lease_ms = 1500; };
services = { slow = { address = "127.0.0.1:$SLOW_PORT"; timeout_ms = 5000; }; };
nodes = {
  SlowOrder = { service = "slow"; action = "/booking.Order/Create";
                compensate = "/booking.Order/Cancel";
                workers = 1; concurrency = 1; };
};
flows = { Throttled = { mode = "throttling"; steps = [ "SlowOrder" ]; }; };
EOC
}
