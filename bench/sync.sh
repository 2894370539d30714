#!/usr/bin/env bash
# bench/sync.sh - the sync-mode benchmark of the saga engine issue: a 2-step
# booking (order, payment) with the example participants, everything on this
# machine. Not a test: it prints figures to record in bench/RESULTS.md.
#
#   [QUICK=1] [METRICS=1] [TRACING=1] [TLS=1] bench/sync.sh [BUILD_DIR]
#                           (default: the source tree's build; QUICK: section
#                           1 alone; METRICS: with http.listen, so the pod
#                           counts its metrics, scraped once at the end;
#                           TRACING: every saga traced, spans exported to a
#                           local OTLP receiver that accepts and discards
#                           them, t/py/otlp_receiver.py; TLS: TLS on sagad's
#                           listener and to the participants, a throwaway CA)
#
# 1. closed loop, participants at 0 ms: sagas/s
# 2. open loop at 5,000 sagas/s: latency percentiles
# 3. 10,000 sagas in flight (participants at 1 s): the master's RSS
# 4. the raw unary rate of sagad's gRPC server (Health/Check, h2load), and
#    the efficiency sagas/s x 3 / raw calls/s (a saga costs ~3 calls: Run
#    and two steps)
#
# Redis runs as a production sync deployment would: AOF on with fsync once a
# second (appendfsync everysec) and no automatic AOF rewrite during the run
# (auto-aof-rewrite-percentage 0): a rewrite forks Redis, and on a 2-core
# machine the fork and the child's copy stall every write for tens to
# hundreds of ms. Operators schedule rewrites (BGREWRITEAOF) off-peak or
# size auto-aof-rewrite-min-size so that they are rare. Section 2b shows
# what one rewrite in the middle of the open loop costs, so the effect is
# reported rather than hidden.
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
DUR=${DUR:-10s}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init

REDIS_PORT=$(free_port)
mkdir -p "$LIB_TMP/redis"
redis_conf="--appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0"
# shellcheck disable=SC2086
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
    --save '' $redis_conf --daemonize no >"$LIB_TMP/redis.log" 2>&1 &
track $!
wait_port "$REDIS_PORT"
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
order_port=$(free_port); payment_port=$(free_port); sagad_port=$(free_port)
http_port=$(free_port)
http_conf=""
[ -n "${METRICS:-}" ] && http_conf="http = { listen = \"127.0.0.1:$http_port\"; };"
# TLS=1 (issue 15): one CA and one certificate (127.0.0.1) for everyone.
part_tls=(); conf_tls=""; svc_tls=""; ctl_tls=""
if [ -n "${TLS:-}" ]; then
	pki=$LIB_TMP/pki; mkdir -p "$pki"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$pki/s.key" -out "$pki/s.csr" -subj /CN=bench 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/s.ext"
	openssl x509 -req -in "$pki/s.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
	    -CAcreateserial -out "$pki/s.pem" -days 2 -extfile "$pki/s.ext" 2>/dev/null
	part_tls=(--tls-cert "$pki/s.pem" --tls-key "$pki/s.key")
	conf_tls="tls = { cert = \"$pki/s.pem\"; key = \"$pki/s.key\"; };"
	svc_tls="tls = { ca = \"$pki/ca.pem\"; };"
	ctl_tls="--ca $pki/ca.pem"
fi

start_participants() {	# latency_ms
	"$B/examples/booking/order" --listen "127.0.0.1:$order_port" \
	    --latency "$1" --max-records 2000000 "${part_tls[@]}" >"$LIB_TMP/order.log" 2>&1 &
	ORDER_PID=$!; track $ORDER_PID
	"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" \
	    --latency "$1" --max-records 2000000 "${part_tls[@]}" >"$LIB_TMP/payment.log" 2>&1 &
	PAYMENT_PID=$!; track $PAYMENT_PID
	wait_port "$order_port"; wait_port "$payment_port"
}
stop_participants() {
	kill "$ORDER_PID" "$PAYMENT_PID"; wait "$ORDER_PID" "$PAYMENT_PID" 2>/dev/null || true
}

tracing=
if [ -n "${TRACING:-}" ]; then
	otlp_port=$(free_port)
	/usr/bin/python3 "$top_srcdir/t/py/otlp_receiver.py" "$otlp_port" \
	    "$LIB_TMP/spans" discard >"$LIB_TMP/otlp.log" 2>&1 &
	track $!
	wait_port "$otlp_port"
	tracing="tracing = { otlp_endpoint = \"http://127.0.0.1:$otlp_port/v1/traces\"; sample_ratio = 1.0; };"
fi
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "bench";
$tracing
listen = "127.0.0.1:$sagad_port";
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
$conf_tls
services = {
  order   = { address = "127.0.0.1:$order_port";   timeout_ms = 5000; max_inflight = 20000; max_queue = 100000; $svc_tls };
  payment = { address = "127.0.0.1:$payment_port"; timeout_ms = 5000; max_inflight = 20000; max_queue = 100000; $svc_tls };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";   compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create"; compensate = "/booking.Payment/Cancel"; };
};
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; }; };
$http_conf
CONF
SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
SAGAD_PID=$!; track $SAGAD_PID
wait_port "$sagad_port"
ctl="$B/sagactl -s 127.0.0.1:$sagad_port $ctl_tls"

echo "# sagad sync benchmark, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "redis $(redis-server --version | awk '{print $3}'): $redis_conf, save ''"
if [ -n "${TRACING:-}" ]; then
	echo "tracing: on, every saga, to a local OTLP receiver that discards"
else
	echo "tracing: off"
fi
echo "TLS: $([ -n "${TLS:-}" ] && echo "on (listener and participants, ECDSA P-256)" || echo off)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
start_participants 0
$ctl bench Booking -r 0 -d 2s --max-inflight 64 >/dev/null	# warm up
echo "## 1. closed loop, 128 in flight, participants at 0 ms, $DUR"
# The master's CPU time (utime + stime, in clock ticks) per saga: a figure
# that other load on the machine disturbs far less than the rate; the
# participants' too (the TLS comparison relies on both).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/${1:-$SAGAD_PID}/stat"; }
ticks0=$(cpu_ticks); pticks0=$(( $(cpu_ticks "$ORDER_PID") + $(cpu_ticks "$PAYMENT_PID") ))
$ctl bench Booking -r 0 -d "$DUR" --max-inflight 128 -c 2 | tee "$LIB_TMP/closed.txt"
ticks1=$(cpu_ticks); pticks1=$(( $(cpu_ticks "$ORDER_PID") + $(cpu_ticks "$PAYMENT_PID") ))
closed=$(awk -F'[ ,]+' '/^Requests/ {print $(NF)}' "$LIB_TMP/closed.txt")
sagas=$(awk -F'[ ,]+' '/^Requests/ {print $(NF-2)}' "$LIB_TMP/closed.txt")
echo "master CPU: $(( (ticks1 - ticks0) * 1000000 / $(getconf CLK_TCK) / (sagas > 0 ? sagas : 1) )) us per saga ($((ticks1 - ticks0)) ticks, $sagas sagas)"
echo "participants CPU: $(( (pticks1 - pticks0) * 1000000 / $(getconf CLK_TCK) / (sagas > 0 ? sagas : 1) )) us per saga (the two together)"
if [ -n "${METRICS:-}" ]; then
	echo "metrics on: $(/usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$http_port/metrics" |
	    grep '^sagad_sagas_ended_total{flow="Booking",mode="sync",state="completed"}')"
fi
if [ -n "${QUICK:-}" ]; then	# the closed loop alone, for A/B runs
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	exit 0
fi
echo
echo "## 2. open loop, 5000 sagas/s offered, $DUR"
$ctl bench Booking -r 5000 -d "$DUR" -c 2
echo
echo "## 2b. the same open loop with one AOF rewrite (BGREWRITEAOF) at half time"
(sleep "$(( ${DUR%s} / 2 ))"; rcli BGREWRITEAOF >/dev/null) &
rewrite_pid=$!
$ctl bench Booking -r 5000 -d "$DUR" -c 2
wait "$rewrite_pid"
echo "rewrite: $(rcli INFO persistence | tr -d '\r' | grep -E '^aof_last_rewrite_time_sec' ), $(rcli INFO stats | tr -d '\r' | grep -E '^latest_fork_usec'), AOF $(($(rcli INFO persistence | tr -d '\r' | awk -F: '/^aof_current_size/ {print $2}') / 1048576)) MiB"
echo
stop_participants
echo "## 3. 10,000 sagas in flight: participants at 1000 ms, 5000 sagas/s for 4 s"
start_participants 1000
rss_before=$(ps -o rss= -p "$SAGAD_PID")
$ctl bench Booking -r 5000 -d 4s -c 8 --max-inflight 30000 >"$LIB_TMP/inflight.txt" &
bench_pid=$!
peak=0; peak_rss=0
while kill -0 $bench_pid 2>/dev/null; do
	rss=$(ps -o rss= -p "$SAGAD_PID" | tr -d ' ')
	[ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
	sleep 0.2
done
wait $bench_pid || true
cat "$LIB_TMP/inflight.txt"
echo "master RSS: idle ${rss_before} KiB, peak $peak_rss KiB ($((peak_rss / 1024)) MiB)"
stop_participants
echo
echo "## 4. raw unary rate of sagad's gRPC server: grpc.health.v1.Health/Check"
body=$LIB_TMP/check.bin
printf '\0\0\0\0\0' >"$body"	# an empty HealthCheckRequest
raw=$(h2load -n 300000 -c 4 -m 100 -t 1 -d "$body" \
    -H 'te: trailers' -H 'content-type: application/grpc' \
    "http${TLS:+s}://127.0.0.1:$sagad_port/grpc.health.v1.Health/Check" |
    awk '/^finished in/ {gsub(",","",$4); print $4}')
echo "raw calls/s: $raw"
if [ -n "$closed" ] && [ -n "$raw" ]; then
	awk -v s="$closed" -v r="$raw" 'BEGIN { printf "efficiency: %.0f sagas/s x 3 / %.0f calls/s = %.2f\n", s, r, s * 3 / r }'
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
