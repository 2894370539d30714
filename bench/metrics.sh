#!/usr/bin/env bash
# bench/metrics.sh - what counting the pod's metrics costs the master on the
# sync path, as instructions (callgrind), a count that other load on the
# machine does not change: the same open loop of sync sagas through a master
# run under callgrind, once without http.listen (no metrics segment) and once
# with it. Not a test: it prints figures to record in bench/RESULTS.md.
#
#   bench/metrics.sh [BUILD_DIR]     (RATE=200 sagas/s for DUR=15s)
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
RATE=${RATE:-200}
DUR=${DUR:-15s}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
command -v valgrind >/dev/null || { echo "no valgrind"; exit 1; }

start_redis
order_port=$(free_port); payment_port=$(free_port)
"$B/examples/booking/order" --listen "127.0.0.1:$order_port" \
    --max-records 2000000 >"$LIB_TMP/order.log" 2>&1 &
track $!
"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" \
    --max-records 2000000 >"$LIB_TMP/payment.log" 2>&1 &
track $!
wait_port "$order_port"; wait_port "$payment_port"

# one_run off|on: prints "Ir sagas"
one_run() {
	local port http="" out=$LIB_TMP/cg.$1 pid
	port=$(free_port)
	[ "$1" = on ] && http="http = { listen = \"127.0.0.1:$(free_port)\"; };"
	cat >"$LIB_TMP/sagad.$1.conf" <<CONF
pod_id = "bench";
listen = "127.0.0.1:$port";
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
services = {
  order   = { address = "127.0.0.1:$order_port"; };
  payment = { address = "127.0.0.1:$payment_port"; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";   compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create"; compensate = "/booking.Payment/Cancel"; };
};
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; }; };
$http
CONF
	valgrind --tool=callgrind --callgrind-out-file="$out" \
	    "$B/sagad" -d -c "$LIB_TMP/sagad.$1.conf" -p "$LIB_TMP/sagad.$1.pid" \
	    >"$LIB_TMP/sagad.$1.log" 2>&1 &
	pid=$!
	wait_port "$port" 60 || { cat "$LIB_TMP/sagad.$1.log" >&2; exit 1; }
	"$B/sagactl" -s "127.0.0.1:$port" bench Booking -r "$RATE" -d "$DUR" \
	    -c 1 >"$LIB_TMP/bench.$1.txt"
	kill -TERM "$pid"; wait "$pid" || true
	echo "$(callgrind_annotate "$out" 2>/dev/null |
	    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }') \
$(awk -F'[ ,]+' '/^Requests/ {print $(NF-2)}' "$LIB_TMP/bench.$1.txt")"
}

echo "# master instructions per sync saga, metrics off and on, $(date -u +%Y-%m-%d), $RATE sagas/s for $DUR"
read -r ir_off n_off <<<"$(one_run off)"
read -r ir_on n_on <<<"$(one_run on)"
echo "off: $ir_off instructions, $n_off sagas: $((ir_off / n_off)) per saga"
echo "on:  $ir_on instructions, $n_on sagas: $((ir_on / n_on)) per saga"
# The totals move by several per cent from run to run with the loop's
# timing (how many writes one Redis call batches, idle wake-ups), so the
# cost is read where it is spent: the inclusive instructions of the
# counting points in the "on" run.
echo "counting points in the on run (inclusive instructions, per saga):"
callgrind_annotate --inclusive=yes "$LIB_TMP/cg.on" 2>/dev/null |
    awk -v n="$n_on" -v total="$ir_on" '
	/:(metrics_saga_started|metrics_saga_ended|metrics_in_flight|metrics_step_call|metrics_grpc_request|metrics_now_us)( |$)/ {
		gsub(",", "", $1)
		for (i = 2; i <= NF; i++)
			if ($i ~ /:/) { fn = $i; sub(/.*:/, "", fn) }
		sum += $1; printf "  %-24s %8.0f\n", fn, $1 / n
	}
	END { printf "  %-24s %8.0f of %.0f per saga: %.2f %%\n", "all",
	    sum / n, total / n, sum * 100 / total }'
echo "(driver_written's scan of a write's events for them is inlined and not counted here)"
