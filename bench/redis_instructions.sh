#!/usr/bin/env bash
# bench/redis_instructions.sh - Redis' instructions per sync saga (issue
# 18), a figure a loaded machine does not disturb: redis-server runs under
# callgrind while sagactl bench drives the 2-step booking (16 in flight)
# for SECS, then the instructions counted in Redis' command execution
# (call(), inclusive: the scripts and what they call) and in all of
# redis-server are divided by the sagas that completed. Not a test.
#
#   [SECS=12] bench/redis_instructions.sh [BUILD_DIR]
set -u
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
SECS=${SECS:-12}
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
	{ echo "needs valgrind (callgrind)"; exit 1; }
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
REDIS_PORT=$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$LIB_TMP/cg.out" \
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no >"$LIB_TMP/redis.log" 2>&1 &
RP=$!; track $RP
wait_port "$REDIS_PORT" 30
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
op=$(free_port); pp=$(free_port); sp=$(free_port)
"$B/examples/booking/order" --listen "127.0.0.1:$op" >/dev/null 2>&1 & track $!
"$B/examples/booking/payment" --listen "127.0.0.1:$pp" >/dev/null 2>&1 & track $!
wait_port "$op"; wait_port "$pp"
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "ir"; listen = "127.0.0.1:$sp";
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
services = { order   = { address = "127.0.0.1:$op"; timeout_ms = 20000; };
             payment = { address = "127.0.0.1:$pp"; timeout_ms = 20000; }; };
nodes = { CreateOrder   = { service = "order";   action = "/booking.Order/Create";   compensate = "/booking.Order/Cancel"; };
          CreatePayment = { service = "payment"; action = "/booking.Payment/Create"; compensate = "/booking.Payment/Cancel"; }; };
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; }; };
CONF
SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$sp"
sleep 2
"$B/sagactl" -s "127.0.0.1:$sp" bench Booking -r 0 -d "${SECS}s" \
    --max-inflight 16 >/dev/null 2>&1
sleep 2
n=0
for k in $(rcli --scan --pattern 'saga:idx:*' | grep STATE_COMPLETED); do
	n=$((n + $(rcli zcard "$k")))
done
rcli shutdown nosave >/dev/null 2>&1
wait $RP 2>/dev/null
[ "$n" -gt 0 ] || { echo "no saga completed"; exit 1; }
all=$(callgrind_annotate "$LIB_TMP/cg.out" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
cmd=$(callgrind_annotate --inclusive=yes "$LIB_TMP/cg.out" 2>/dev/null |
    grep -m1 -E ':call \[' | awk '{print $1}' | tr -d ,)
echo "$n sagas; Redis instructions per saga: ${cmd:-0} / $n = $(( ${cmd:-0} / n )) in commands (call), $(( ${all:-0} / n )) in all"
