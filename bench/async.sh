#!/usr/bin/env bash
# bench/async.sh - async and throttling mode: a 2-step booking through
# NATS JetStream (file storage), or RabbitMQ with QUEUE=rabbitmq (quorum
# queues; RABBITMQ_QUEUE_TYPE=classic), and sagad-worker, the example
# participants at 0 ms, everything on this machine. Not a test: it prints
# figures to record in bench/RESULTS.md.
#
#   [QUEUE=nats|rabbitmq] [RATE=5000] [DUR=20s] [WORKERS=1]
#   [CONCURRENCY=2000] [CONNS=8] [THROTTLING=0] [PROFILE=1] [REWRITE=1]
#   [CALLBACK=1] [CALLGRIND=1 [CALLGRIND_OUT=DIR]] [STRACE=1] [PERF=1]
#   bench/async.sh [BUILD_DIR]
#
# 1. throttling, closed loop: the held call returns at the saga's end, so its
#    rate is the end-to-end rate of the worker path
# 2. async, open loop at RATE for DUR: Runs accepted per second, then the
#    rate at which accepted sagas completed, read off the payment
#    participant's counter: while Runs arrived (the steady state), overall,
#    and second by second
#
# The defaults size the pipeline for the rate (Little's law): one worker per
# node holding up to 2,000 messages, because with every process of the run
# on two cores a step spends tens of milliseconds between fetch and ack
# under load, and 100 in flight caps a node near 3,000/s; and 8 client
# connections, because one carries at most 1,000 Runs in flight (the
# server's stream limit) and a Run waits for Redis and JetStream's ack.
# PROFILE=1 adds CPU seconds per process (and their kernel part) and per
# saga, NATS message counts and Redis command times for section 2.
# PERF=1 samples every CPU (perf record -a, cpu-clock at 999 Hz) during
# section 2, at full speed unlike the two below, and prints the share of the
# samples of each process and, per process, its top symbols (kernel ones
# included): where the CPU of a saturated run goes.
# STRACE=1 adds the system calls per saga of the master and each worker
# (strace -c -f attached for section 2; it slows them, and inflates their
# kernel time).
# CALLGRIND=1 runs the master and every worker under valgrind's callgrind
# (use a low RATE, say 100): its counters are zeroed before section 2 and
# dumped after it, and the instructions each process ran per saga are
# printed, with the functions that ran most of them (CALLGRIND_OUT=DIR keeps
# the dumps).
# CALLBACK=1 gives every async saga a callback_url, to bench/cbsink.c (built
# here with cc; it answers 200 on keep-alive connections): section 2 then
# counts a saga complete when its callback has arrived.
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
RATE=${RATE:-5000}
DUR=${DUR:-20s}
WORKERS=${WORKERS:-1}
CONCURRENCY=${CONCURRENCY:-2000}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
[ -n "${PROFILE:-}" ] && NATS_ARGS="-m $(free_port)"
need_queue
start_queue
# Redis as bench/sync.sh runs it: AOF with everysec fsync, no RDB snapshots,
# and no automatic AOF rewrite, whose fork and RDB preamble would land at a
# different moment in each run (REWRITE=1 forces one in the middle of the
# async run, to show what it costs).
REDIS_PORT=$(free_port)
mkdir -p "$LIB_TMP/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
	--save '' --appendonly yes --appendfsync everysec \
	--auto-aof-rewrite-percentage 0 --daemonize no >"$LIB_TMP/redis.log" 2>&1 &
track $!
wait_port "$REDIS_PORT"
order_port=$(free_port); payment_port=$(free_port); sagad_port=$(free_port)
cb_port=$(free_port)	# CALLBACK=1's receiver, allowed in callbacks.allow
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
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
callbacks = { allow = [ "127.0.0.1:$cb_port" ]; };
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
vg=()
worker=$B/sagad-worker
if [ -n "${CALLGRIND:-}" ]; then
	vg=(valgrind --tool=callgrind --callgrind-out-file="$LIB_TMP/cg.%p.out")
	worker=$LIB_TMP/worker.sh
	printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/cg.%%p.out %s "$@"\n' \
		"$LIB_TMP" "$B/sagad-worker" >"$worker"
	chmod +x "$worker"
fi
SAGAD_WORKER="$worker" "${vg[@]}" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$sagad_port" 120
[ -n "${CALLGRIND:-}" ] && sleep 20	# the workers, slowed down, to start
sleep 1
ctl="$B/sagactl -s 127.0.0.1:$sagad_port"
rcli="redis-cli -p $REDIS_PORT"

echo "# sagad async/throttling benchmark, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
if [ "$QUEUE" = rabbitmq ]; then
	echo "# $WORKERS workers x $CONCURRENCY per node, RabbitMQ ${RABBITMQ_QUEUE_TYPE:-quorum} queues"
else
	echo "# $WORKERS workers x $CONCURRENCY per node, NATS file storage"
fi
echo
$ctl bench ThrottlingBooking -r 0 -d 2s --max-inflight 100 >/dev/null	# warm up
if [ "${THROTTLING:-1}" != 0 ]; then
	echo "## 1. throttling, closed loop, 400 in flight, $DUR"
	$ctl bench ThrottlingBooking -r 0 -d "$DUR" --max-inflight 400 -c 2
	echo
fi
# Counts the sagas of this bench in each state, inside Redis: once, at the
# end (KEYS over every saga blocks Redis for a good part of a second).
states() {
	$rcli --raw eval "local c = {} for _, k in ipairs(redis.call('KEYS', 'saga:{bench-*}')) do local s = redis.call('HGET', k, 'state') or '?' c[s] = (c[s] or 0) + 1 end local out = {} for s, n in pairs(c) do out[#out + 1] = s .. '=' .. n end return table.concat(out, ' ')" 0
}
$rcli --raw eval "for _, k in ipairs(redis.call('KEYS', 'saga:{bench-*}')) do redis.call('DEL', k) end return 0" 0 >/dev/null
# Completions are read off the payment participant's counter of Creates
# answered OK (the booking's last step), sampled every 0.5 s; with
# CALLBACK=1, off the callback receiver's count of POSTs.
cbflag=()
if [ -n "${CALLBACK:-}" ]; then
	cc -O2 -o "$LIB_TMP/cbsink" "$top_srcdir/bench/cbsink.c" -levent
	"$LIB_TMP/cbsink" "$cb_port" >"$LIB_TMP/done.txt" 2>"$LIB_TMP/done.err" &
	sampler=$!
	track $sampler
	wait_port "$cb_port"
	cbflag=(--callback "http://127.0.0.1:$cb_port/cb")
else
	GEN=$LIB_TMP/gen
	mkdir -p "$GEN"
	"${PROTOC:-protoc}" -I"$top_srcdir/examples/booking" --python_out="$GEN" \
		"$top_srcdir/examples/booking/booking.proto"
	"${PYTHON_GRPC:-/usr/bin/python3}" "$top_srcdir/bench/completions.py" \
		"$payment_port" "$GEN" >"$LIB_TMP/done.txt" 2>"$LIB_TMP/done.err" &
	sampler=$!
	track $sampler
fi
base=""
while [ -z "$base" ]; do sleep 0.1; base=$(awk 'NR == 1 { print $2 }' "$LIB_TMP/done.txt"); done
# cpu_snap: "PID SECONDS COMMAND" of every process of the run (user and
# system time, the 14th and 15th fields of /proc/PID/stat): the servers and
# participants this script started, the Erlang VM under rabbitmq-server's
# script (its session) and sagad's workers, by pid, so that other sagads
# and Redis servers on a shared machine are not counted.
cpu_snap() {
	local hz pid
	hz=$(getconf CLK_TCK)
	for pid in "${LIB_PIDS[@]}" $(pgrep -P "$(cat "$LIB_TMP/sagad.pid")") \
	    $([ -n "${RABBITMQ_PID:-}" ] && pgrep -s "$RABBITMQ_PID"); do
		[ "$pid" = "$sampler" ] && continue
		[ -r "/proc/$pid/stat" ] || continue
		sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null |
			awk -v hz="$hz" -v pid="$pid" '{ printf "%s %.2f %.2f ", pid, ($12 + $13) / hz, $13 / hz }' || continue
		tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-70
	done
}
nats_varz() {
	curl -s "http://127.0.0.1:${NATS_ARGS#-m }/varz" |
		awk -F'[:,]' '/"(in|out)_msgs"/ { gsub(/[ "]/, "", $1); printf "%s %s\n", $1, $2 }'
}
if [ -n "${PROFILE:-}" ]; then
	cpu_snap >"$LIB_TMP/cpu0.txt"
	[ "$QUEUE" = nats ] && nats_varz >"$LIB_TMP/varz0.txt"
	$rcli config resetstat >/dev/null
fi
sagad_pids() {
	cat "$LIB_TMP/sagad.pid"
	pgrep -P "$(cat "$LIB_TMP/sagad.pid")"
}
if [ -n "${CALLGRIND:-}" ]; then
	for pid in $(sagad_pids); do callgrind_control -z "$pid" >/dev/null; done
fi
# STRACE=1: the system calls of the master and the workers in section 2.
straces=()
if [ -n "${STRACE:-}" ]; then
	for pid in $(sagad_pids); do
		strace -f -c -p "$pid" -o "$LIB_TMP/strace.$pid" 2>/dev/null &
		straces+=($!)
	done
	sleep 1
fi
if [ -n "${PERF:-}" ]; then
	perf record -a -F 999 -e cpu-clock -o "$LIB_TMP/perf.data" \
	    -- sleep "${DUR%s}" >/dev/null 2>&1 &
	perfpid=$!
fi
echo "## 2. async, open loop at $RATE/s for $DUR"
t0=$(awk 'END { print $1 }' "$LIB_TMP/done.txt")
if [ -n "${REWRITE:-}" ]; then
	( sleep "$(( ${DUR%s} / 2 ))"; $rcli bgrewriteaof >/dev/null ) &
fi
$ctl bench AsyncBooking -r "$RATE" -d "$DUR" -c "${CONNS:-8}" "${cbflag[@]}" |
	tee "$LIB_TMP/async.txt"
# The accepted Runs (OK): a refused one (UNAVAILABLE) never completes.
total=$(awk '/^Status Codes/ { for (i = 1; i <= NF; i++) if ($i ~ /^OK:/) { sub(/^OK:/, "", $i); print $i } }' "$LIB_TMP/async.txt")
total=${total:-0}
attack=$(awk -F'[ ,]+' '/^Duration/ {sub(/s$/, "", $6); print $6}' "$LIB_TMP/async.txt")
while :; do
	last=$(awk 'END { print $2 }' "$LIB_TMP/done.txt")
	[ $((last - base)) -ge "$total" ] && break
	if [ "$(awk 'END { print int($1) }' "$LIB_TMP/done.txt")" -gt $(( ${t0%.*} + 300 )) ]; then
		echo "not all ended after 300 s: $((last - base)) of $total"; break
	fi
	sleep 0.2
done
kill "$sampler" 2>/dev/null || true
echo "sagas by state: $(states)"
[ -n "${CALLBACK:-}" ] && awk 'END { printf "callbacks received: %d, on %d connections\n", $2, $3 }' "$LIB_TMP/done.txt"
# Completed per second in each whole second of the run, the steady state
# (the middle of the attack, from its 5th second to 1 s before its end) and
# the whole: from the first Run to the last completion.
awk -v base="$base" -v t0="$t0" -v attack="$attack" -v total="$total" '
	{ t = $1 - t0; n = $2 - base; T[NR] = t; N[NR] = n }
	END {
		for (i = 1; i <= NR; i++) {
			if (T[i] <= 5 && (a == "" || T[i] > ta)) { ta = T[i]; a = N[i] }
			if (T[i] <= attack - 1) { tb = T[i]; b = N[i] }
			if (N[i] >= total && te == "") te = T[i]
		}
		printf "completed while Runs arrived (%.1f s to %.1f s): %.0f sagas/s\n", ta, tb, (b - a) / (tb - ta)
		printf "all %d accepted sagas completed %.1f s after the first Run: %.0f sagas/s overall\n", total, te, total / te
		printf "completed by second:"
		for (i = 1; i <= NR; i++) {
			s = int(T[i]); if (s < 0 || s == last) continue
			printf " %d", N[i] - prev; prev = N[i]; last = s
		}
		printf "\n"
	}' "$LIB_TMP/done.txt"
if [ -n "${PROFILE:-}" ]; then
	# Where the time of section 2 went: CPU seconds of every process
	# between the first Run and the last completion, their sum per saga,
	# and Redis's own time per command.
	cpu_snap >"$LIB_TMP/cpu1.txt"
	echo
	echo "## CPU seconds by process, section 2"
	awk -v n="$total" 'NR == FNR { t0[$1] = $2; s0[$1] = $3; next }
		{ d = $2 - t0[$1]; k = $3 - s0[$1]; sum += d; ksum += k
		  name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
		  if (d > 0) printf "%8.2f s  %s (system %.2f s)\n", d, name, k }
		END { printf "%8.2f s  in all: %.0f us of CPU per saga, %.0f of it in the kernel\n", sum, sum * 1e6 / n, ksum * 1e6 / n }' \
		"$LIB_TMP/cpu0.txt" "$LIB_TMP/cpu1.txt" | sort -rn
	[ "$QUEUE" = nats ] && echo "## NATS messages, section 2" &&
	nats_varz | awk -v n="$total" 'NR == FNR { v[$1] = $2; next }
		{ printf "%-9s %9d  %.2f per saga\n", $1, $2 - v[$1], ($2 - v[$1]) / n }' \
		"$LIB_TMP/varz0.txt" -
	echo "## Redis commands, section 2"
	$rcli info commandstats | grep -E '^cmdstat' | tr ':,=' '   ' |
		awk '{ printf "%-24s calls %9d  usec %11d  per call %6.2f\n", $1, $3, $5, $7 }'
fi
if [ -n "${CALLGRIND:-}" ]; then
	# Instructions (Ir) each process ran in section 2, per saga.
	echo "## Instructions per saga, section 2 (callgrind)"
	for pid in $(sagad_pids); do
		title=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed -n 's/.*--topic \([^ ]*\).*/worker \1/p')
		title=${title:-master}
		rm -f "$LIB_TMP"/cg."$pid".out.*
		callgrind_control -d "$pid" >/dev/null
		f=$(ls -t "$LIB_TMP"/cg."$pid".out.* 2>/dev/null | head -n 1)
		[ -n "$f" ] || continue
		ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }')
		[ "${ir:-0}" -gt 0 ] || continue
		printf '%12.0f Ir/saga  %s\n' "$(echo "$ir / $total" | bc -l)" "$title"
		[ -n "${CALLGRIND_OUT:-}" ] && mkdir -p "$CALLGRIND_OUT" && cp "$f" "$CALLGRIND_OUT/"
		# The functions on the stack at the dump show their callees' cost.
		callgrind_annotate --auto=no --threshold=100 "$f" 2>/dev/null |
			awk '/^-+$/ { sep++ } sep >= 3 && /^ *[0-9,]+ / &&
			    !/PROGRAM TOTALS|event_base_dispatch|_run |:main |below main|libc_start|start_thread|clone|0x000000000001ab70/ {
				if (++n <= 15) print "      " $0 }' || true
	done
fi
if [ -n "${PERF:-}" ]; then
	wait "$perfpid" 2>/dev/null || true
	echo "## Where the CPU went in section 2 (perf, share of all samples)"
	perf report -i "$LIB_TMP/perf.data" --sort comm --stdio 2>/dev/null |
		awk '/^ +[0-9.]+%/ { print "  " $0 }' | head -12
	perf report -i "$LIB_TMP/perf.data" --sort comm,dso,sym --stdio \
	    2>/dev/null | awk '/^ +[0-9.]+%/ { print "  " $0 }' | head -60
fi
if [ -n "${STRACE:-}" ]; then
	kill -INT "${straces[@]}" 2>/dev/null || true
	wait "${straces[@]}" 2>/dev/null || true
	echo "## System calls per saga, section 2 (strace -c)"
	for f in "$LIB_TMP"/strace.*; do
		pid=${f##*.}
		echo "  $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)"
		awk -v n="$total" '$1 ~ /^[0-9.]+$/ && NF >= 5 { c = ($4 ~ /^[0-9]+$/) ? $4 : $4; printf "    %-16s %8.2f per saga\n", $NF, c / n }' "$f" | sort -k2 -rn | head -8
	done
fi
