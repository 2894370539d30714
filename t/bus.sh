#!/bin/bash
# t/bus.sh - runs the bus's Check suite (t/unit/check_bus) against the real
# broker QUEUE names (t/lib.sh: nats-server -js by default, rabbitmq-server
# with QUEUE=rabbitmq) on a free loopback port with a temporary store, then
# its restart case: the suite drops a file when its work is in place, and
# this script restarts the broker on the same port and store while the
# suite's bus keeps running. The stop is a clean one, as the case checks that
# acked work stays acked: a broker killed -9 may deliver again what was acked
# just before (t/outage.sh kills rabbitmq-server -9 under sagad). BUS_BENCH=N additionally
# prints the throughput figures.

# shellcheck source=t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init

check="$top_builddir/t/unit/check_bus"
[ -x "$check" ] || { echo "t/unit/check_bus not built (no Check): skipped"; exit 77; }
need_queue

start_queue
BUS_URL=$QUEUE_URL
export BUS_URL

BUS_BENCH= CK_RUN_CASE=nats "$check" || fail "check_bus ($QUEUE)"
pass "check_bus: bus behaviour against the $QUEUE broker"

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
if [ "$QUEUE" = rabbitmq ]; then
	RABBITMQ_STOP=TERM restart_queue 1
else
	kill -TERM "$NATS_PID"
	for _ in $(seq 100); do
		kill -0 "$NATS_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$NATS_PID" 2>/dev/null && fail "nats-server did not stop"
	sleep 1
	mv "$LIB_TMP/nats.log" "$LIB_TMP/nats-before-restart.log"
	start_nats "$NATS_PORT"
fi
wait "$suite" || fail "check_bus (restart)"
pass "check_bus: a $QUEUE broker restart keeps work and the bus reconnects"

if [ -n "${BUS_BENCH:-}" ]; then
	BUS_BENCH=$BUS_BENCH "$check" || fail "bus bench"
fi
exit 0
