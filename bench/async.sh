#!/usr/bin/env bash
# bench/async.sh - async and throttling mode: a 2-step booking through
# NATS JetStream (file storage) and sagad-worker, the example participants
# at 0 ms, everything on this machine. Not a test: it prints figures to
# record in bench/RESULTS.md.
#
#   bench/async.sh [BUILD_DIR]
#
# 1. throttling, closed loop: the held call returns at the saga's end, so its
#    rate is the end-to-end rate of the worker path
# 2. async, open loop at RATE for DUR: Runs accepted per second, then how
#    fast the accepted sagas all completed (polled in Redis)
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
RATE=${RATE:-3000}
DUR=${DUR:-10s}
WORKERS=${WORKERS:-2}
CONCURRENCY=${CONCURRENCY:-100}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
start_nats
start_redis
order_port=$(free_port); payment_port=$(free_port); sagad_port=$(free_port)
"$B/examples/booking/order" --listen "127.0.0.1:$order_port" \
    --max-records 2000000 >"$LIB_TMP/order.log" 2>&1 &
track $!
"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" \
    --max-records 2000000 >"$LIB_TMP/payment.log" 2>&1 &
track $!
wait_port "$order_port"; wait_port "$payment_port"

cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "bench";
listen = "127.0.0.1:$sagad_port";
nats  = { url = "$NATS_URL"; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
services = {
  order   = { address = "127.0.0.1:$order_port"; };
  payment = { address = "127.0.0.1:$payment_port"; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    workers = $WORKERS; concurrency = $CONCURRENCY; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel";
                    workers = $WORKERS; concurrency = $CONCURRENCY; };
};
flows = {
  AsyncBooking      = { mode = "async";      steps = [ "CreateOrder", "CreatePayment" ]; };
  ThrottlingBooking = { mode = "throttling"; steps = [ "CreateOrder", "CreatePayment" ];
                        max_queue = 100000; };
};
CONF
SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$sagad_port"
sleep 1
ctl="$B/sagactl -s 127.0.0.1:$sagad_port"
rcli="redis-cli -p $REDIS_PORT"

echo "# sagad async/throttling benchmark, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $WORKERS workers x $CONCURRENCY per node, NATS file storage"
echo
$ctl bench ThrottlingBooking -r 0 -d 2s --max-inflight 100 >/dev/null	# warm up
echo "## 1. throttling, closed loop, 400 in flight, $DUR"
$ctl bench ThrottlingBooking -r 0 -d "$DUR" --max-inflight 400 -c 2
echo
# Counts the sagas of this bench in each state, inside Redis.
states() {
	$rcli --raw eval "local c = {} for _, k in ipairs(redis.call('KEYS', 'saga:{bench-*}')) do local s = redis.call('HGET', k, 'state') or '?' c[s] = (c[s] or 0) + 1 end local out = {} for s, n in pairs(c) do out[#out + 1] = s .. '=' .. n end return table.concat(out, ' ')" 0
}
$rcli --raw eval "for _, k in ipairs(redis.call('KEYS', 'saga:{bench-*}')) do redis.call('DEL', k) end return 0" 0 >/dev/null
echo "## 2. async, open loop at $RATE/s for $DUR"
start=$(date +%s.%N)
$ctl bench AsyncBooking -r "$RATE" -d "$DUR" -c 2 | tee "$LIB_TMP/async.txt"
total=$(awk -F'[ ,]+' '/^Requests/ {print $5}' "$LIB_TMP/async.txt")
while :; do
	s=$(states)
	done_n=$(echo "$s" | tr ' ' '\n' | awk -F= '/COMPLETED|COMPENSATED|FAILED/ {n += $2} END {print n + 0}')
	[ "$done_n" -ge "$total" ] && break
	now=$(date +%s.%N)
	if awk -v a="$start" -v b="$now" 'BEGIN { exit !(b - a > 120) }'; then
		echo "not all ended after 120 s: $s"; break
	fi
	sleep 0.2
done
end=$(date +%s.%N)
echo "sagas by state: $(states)"
awk -v n="$total" -v a="$start" -v b="$end" 'BEGIN { printf "all %d accepted sagas ended %.1f s after the first Run: %.0f sagas/s completed\n", n, b - a, n / (b - a) }'
