#!/bin/bash
# t/bus.sh - runs the bus's Check suite (t/check_bus) against a real
# nats-server -js on a free loopback port with a temporary store, then its
# restart case: the suite drops a file when its work is in place, and this
# script restarts nats-server on the same port and store while the suite's
# bus keeps running. BUS_BENCH=N additionally prints the throughput figures.

# shellcheck source=t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init

check="$top_builddir/t/check_bus"
[ -x "$check" ] || { echo "t/check_bus not built (no Check): skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

start_nats
export NATS_URL

BUS_BENCH= CK_RUN_CASE=nats "$check" || fail "check_bus (nats)"
pass "check_bus: bus behaviour against nats-server"

# The restart case, with this script playing the operator.
dir="$LIB_TMP/restart"
mkdir -p "$dir"
BUS_BENCH= BUS_RESTART_DIR="$dir" CK_RUN_CASE=restart "$check" &
suite=$!
track "$suite"
for _ in $(seq 300); do
	[ -e "$dir/restart" ] && break
	kill -0 "$suite" 2>/dev/null || break
	sleep 0.1
done
[ -e "$dir/restart" ] || { wait "$suite"; fail "the restart case never asked for a restart"; }
kill -TERM "$NATS_PID"
for _ in $(seq 100); do
	kill -0 "$NATS_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$NATS_PID" 2>/dev/null && fail "nats-server did not stop"
sleep 1
mv "$LIB_TMP/nats.log" "$LIB_TMP/nats-before-restart.log"
start_nats "$NATS_PORT"
wait "$suite" || fail "check_bus (restart)"
pass "check_bus: nats-server restart keeps work and the bus reconnects"

if [ -n "${BUS_BENCH:-}" ]; then
	BUS_BENCH=$BUS_BENCH "$check" || fail "bus bench"
fi
exit 0
