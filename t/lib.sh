# t/lib.sh - shared by the integration scripts and run.sh: free loopback ports,
# real nats-server and redis-server in a temp dir, and cleanup on every exit
# path. Source it; call lib_init first.

# shellcheck shell=bash

lib_init() {
	LIB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sagad-test.XXXXXX")
	LIB_PIDS=()
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

lib_cleanup() {
	local rc=$? pid
	for pid in "${LIB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${LIB_PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ -n "${LIB_TMP:-}" ]; then
		for f in "$LIB_TMP"/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 30 lines)"; tail -n 30 "$f"
		done
	fi
	[ -n "${LIB_TMP:-}" ] && rm -rf "$LIB_TMP"
	exit "$rc"
}

# A port nobody listens on now. The kernel picks it; there is a small race
# until the server binds it, which the callers accept for tests.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local port=$1 secs=${2:-10} i
	for i in $(seq $((secs * 10))); do
		(exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$port after ${secs}s" >&2
	return 1
}

# start_nats: sets NATS_PORT, NATS_PID, NATS_URL; JetStream store in LIB_TMP.
# NATS_ARGS: more nats-server options (a benchmark's monitoring port, say).
start_nats() {
	NATS_PORT=${1:-$(free_port)}
	mkdir -p "$LIB_TMP/nats"
	# shellcheck disable=SC2086
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
		${NATS_ARGS:-} >"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	LIB_PIDS+=("$NATS_PID")
	NATS_URL="nats://127.0.0.1:$NATS_PORT"
	wait_port "$NATS_PORT"
}

# start_redis: sets REDIS_PORT, REDIS_PID.
start_redis() {
	REDIS_PORT=${1:-$(free_port)}
	mkdir -p "$LIB_TMP/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
		--save '' --appendonly yes --daemonize no \
		>"$LIB_TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	LIB_PIDS+=("$REDIS_PID")
	wait_port "$REDIS_PORT"
}

# track PID: stop it on exit too.
track() {
	LIB_PIDS+=("$1")
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

pass() {
	echo "ok - $*"
}
