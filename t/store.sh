#!/bin/bash
# t/store.sh - runs the store's Check suite (t/unit/check_store) against a real
# redis-server on a free loopback port. Redis runs in a respawn loop so that
# the suite can SHUTDOWN it and watch the store reconnect to the restarted
# server on the same port (REDIS_RESTARTS=1 tells the suite it may).

# shellcheck source=t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init

check="$top_builddir/t/unit/check_store"
[ -x "$check" ] || { echo "t/unit/check_store not built (no Check): skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

# The first server comes from lib.sh; once the suite shuts it down, the loop
# below starts another on the same port until the stop file appears.
start_redis
stop="$LIB_TMP/redis.stop"
(
	pid=$REDIS_PID
	trap 'kill -TERM $pid 2>/dev/null; exit 0' TERM
	while :; do
		# Probe the port, not the pid: the first server is not our
		# child and may linger as a zombie. wait returns early on TERM.
		while (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; do
			sleep 0.1 & wait $!
		done
		[ -e "$stop" ] && exit 0
		sleep 0.3 & wait $!
		redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
			--dir "$LIB_TMP/redis" --save '' --appendonly yes \
			--daemonize no >>"$LIB_TMP/redis.log" 2>&1 &
		pid=$!
		wait_port "$REDIS_PORT" 5 || exit 1
	done
) &
track $!

export REDIS_PORT REDIS_RESTARTS=1
"$check"
rc=$?
touch "$stop"
[ "$rc" -eq 0 ] || fail "check_store failed ($rc)"
pass "store suite against redis-server on port $REDIS_PORT"
