#!/bin/bash
# bench/grpc.sh - the gRPC server's benchmark (not a test): h2load against
# grpc.health.v1.Health/Check on t/grpc_testd at several -c/-m settings,
# nghttpd serving a small file in the same run as this machine's HTTP/2
# ceiling, RSS before and after a million calls, and memory per idle
# connection. It builds nothing: pass the build dir (or set BUILD).
#
# Usage: bench/grpc.sh [BUILD_DIR] [CALLS]
# Needs nghttp2-client (h2load, nghttp), nghttp2-server (nghttpd), python3.
set -u
BUILD=${1:-${BUILD:-}}
N=${2:-${CALLS:-500000}}
[ -n "$BUILD" ] && [ -x "$BUILD/t/grpc_testd" ] || {
	echo "usage: $0 BUILD_DIR [CALLS] (make -C BUILD_DIR t/grpc_testd first)" >&2
	exit 2
}
for p in h2load nghttp nghttpd; do
	command -v $p >/dev/null || { echo "$0: $p is missing (apt-get install nghttp2-client nghttp2-server)" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sagad-bench.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n 4096 2>/dev/null

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# The request body: the 5-byte gRPC prefix and an empty HealthCheckRequest.
printf '\0\0\0\0\0' >"$TMP/check.bin"
"$BUILD/t/grpc_testd" -p 0 >"$TMP/testd.out" 2>"$TMP/testd.log" &
TESTD=$!
PIDS+=("$TESTD")
for _ in $(seq 50); do grep -q '^port ' "$TMP/testd.out" && break; sleep 0.1; done
GPORT=$(awk '/^port /{print $2}' "$TMP/testd.out")
GURL="http://127.0.0.1:$GPORT/grpc.health.v1.Health/Check"

# nghttpd serving a tiny file: this machine's HTTP/2 limit.
mkdir -p "$TMP/www"
printf 'SERVING\n' >"$TMP/www/index.txt"
NPORT=$(free_port)
nghttpd --no-tls -d "$TMP/www" "$NPORT" >"$TMP/nghttpd.log" 2>&1 &
PIDS+=("$!")
sleep 0.5
NURL="http://127.0.0.1:$NPORT/index.txt"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
echo "== versions: $(h2load --version | head -1), nghttpd $(nghttpd --version | awk '{print $NF}')"

# h2load counts any HTTP 200 as success, gRPC errors included: check one
# call's grpc-status for real.
if nghttp -v -d "$TMP/check.bin" -H 'te: trailers' \
	-H 'content-type: application/grpc' "$GURL" 2>&1 | grep -aq 'grpc-status: 0'; then
	echo "== grpc-status check: grpc-status: 0 (OK)"
else
	echo "== grpc-status check: FAILED, the figures below mean nothing"
	exit 1
fi

run() {	# run NAME URL C M [h2load args...]
	local name=$1 url=$2 c=$3 m=$4 out
	shift 4
	out=$(h2load -n "$N" -c "$c" -m "$m" "$@" "$url" 2>&1)
	rate=$(echo "$out" | awk '/^finished in/{print $4}')
	ok=$(echo "$out" | awk '/^requests:/{print $8}')
	lat=$(echo "$out" | awk '/^time for request:/{print $4 "/" $5 "/" $6 "/" $7}')
	printf '%-8s -c%-3s -m%-4s %12s req/s  %8s ok  latency min/max/mean/sd %s\n' \
		"$name" "$c" "$m" "$rate" "$ok" "$lat"
}
echo "== $N calls per run"
for cm in "1 100" "4 100" "16 10" "64 1"; do
	set -- $cm
	run gRPC "$GURL" "$1" "$2" -d "$TMP/check.bin" \
		-H 'te: trailers' -H 'content-type: application/grpc'
	g=$rate
	run nghttpd "$NURL" "$1" "$2"
	awk -v g="$g" -v n="$rate" 'BEGIN { if (n > 0) printf "         ratio gRPC/nghttpd: %.2f\n", g / n }'
done

# Memory: no growth over a million calls, and the cost of idle connections.
before=$(rss_kb "$TESTD")
h2load -n 1000000 -c 8 -m 100 -d "$TMP/check.bin" -H 'te: trailers' \
	-H 'content-type: application/grpc' "$GURL" >/dev/null 2>&1
after=$(rss_kb "$TESTD")
h2load -n 1000000 -c 8 -m 100 -d "$TMP/check.bin" -H 'te: trailers' \
	-H 'content-type: application/grpc' "$GURL" >/dev/null 2>&1
after2=$(rss_kb "$TESTD")
echo "== RSS: ${before} kB before, ${after} kB after 1,000,000 calls, ${after2} kB after 2,000,000"

/usr/bin/python3 - "$GPORT" "$TESTD" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for l in open("/proc/%s/status" % pid):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
# Each connection: the preface, an empty SETTINGS frame, then silence.
hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0"
base = rss()
socks = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(hello)
    socks.append(s)
time.sleep(1.5)
for s in socks:    # read the server's SETTINGS so nothing is left queued
    s.setblocking(False)
    try:
        s.recv(65536)
    except BlockingIOError:
        pass
time.sleep(0.5)
full = rss()
print("== idle connections: 1000 open, RSS %d kB -> %d kB, %.1f kB per connection"
      % (base, full, (full - base) / 1000.0))
for s in socks:
    s.close()
PY
