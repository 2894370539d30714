#!/bin/bash
# t/crash.sh - crash safety of async sagas under load: ~20 s of Runs from
# python3-grpcio (t/py/async_load.py) while a loop kills a random
# sagad-worker with SIGKILL every 500 ms (the master respawns it). JetStream
# redelivers what the dead held; the stored saga decides what a redelivered
# message still needs. Then every accepted saga must end COMPLETED or
# COMPENSATED as its fault asks, with no compensation missing and no action
# called without being recorded first (the participants count Creates).

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

SECS=${CRASH_SECS:-20}
RATE=${CRASH_RATE:-150}

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

"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" load "$SECS" "$RATE" crash \
	"$LIB_TMP/ids" &
LOAD=$!

kills=0
while kill -0 "$LOAD" 2>/dev/null; do
	mapfile -t pids < <(worker_pids)
	if [ "${#pids[@]}" -gt 0 ]; then
		kill -KILL "${pids[RANDOM % ${#pids[@]}]}" 2>/dev/null &&
			kills=$((kills + 1))
	fi
	sleep 0.5
done
wait "$LOAD" || fail "async_load.py load"
echo "killed $kills workers with SIGKILL during the load"
[ "$kills" -ge 10 ] || fail "only $kills workers killed"

# Redelivery comes after AckWait (the node's timeout + 5 s).
"$PYTHON_GRPC" "$top_srcdir/t/py/async_load.py" check "$LIB_TMP/ids" 45 ||
	fail "async_load.py check"
pass "workers killed -9 every 500 ms under load lose no saga"
