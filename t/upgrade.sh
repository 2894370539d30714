#!/bin/bash
# t/upgrade.sh - an upgrade across the Redis layout change of issue 18: the
# previous build (the commit before it, built from git once and kept in
# t/.upgrade-old, or UPGRADE_OLD_BUILD) leaves sagas in Redis and in
# JetStream: sync sagas in flight when its master is killed -9, async ones
# whose worker is mid-step, a FAILED one waiting for an operator and an
# ended one. This build then starts on the same Redis and NATS and must
# finish them: the sweeper claims the old layout's leases and compensates
# the sync sagas, the bus redelivers the async work and the workers
# complete it, Resolve ends the FAILED saga, and Get, List and Watch read
# what the previous layout wrote. Each converted saga ends in the new
# layout: no key of the old one is left but the ended saga's.

. "$top_srcdir/t/lib.sh"
lib_init

OLD_COMMIT=${UPGRADE_FROM:-09c2c03989bb57acfbfe1b745ffff38c33714cfa}
CTL=$top_builddir/sagactl
ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] || fail "build first"
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

# The previous build, once.
OLD=${UPGRADE_OLD_BUILD:-$top_builddir/t/.upgrade-old}
if [ ! -x "$OLD/sagad" ] || [ "$(cat "$OLD/.commit" 2>/dev/null)" != "$OLD_COMMIT" ]; then
	command -v git >/dev/null && git -C "$top_srcdir" cat-file -e \
	    "$OLD_COMMIT^{commit}" 2>/dev/null ||
		{ echo "no git history with $OLD_COMMIT: skipped"; exit 77; }
	echo "building the previous layout's sagad ($OLD_COMMIT) in $OLD"
	rm -rf "$OLD"; mkdir -p "$OLD"
	# From the repository's top: a copy of the tree inside it (run.sh
	# test-asan's .asan) is untracked there, and git archive refuses it.
	git -C "$(git -C "$top_srcdir" rev-parse --show-toplevel)" archive \
	    "$OLD_COMMIT" | tar -x -C "$OLD" || fail "git archive"
	(cd "$OLD" && autoreconf -fi && ./configure && make -j2) \
	    >"$LIB_TMP/old-build.log" 2>&1 ||
		{ tail -20 "$LIB_TMP/old-build.log"; fail "old build"; }
	echo "$OLD_COMMIT" >"$OLD/.commit"
fi

QUEUE=nats
start_queue
start_redis
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
ORDER_PORT=$(free_port); PAYMENT_PORT=$(free_port); SAGAD_PORT=$(free_port)
"$ORDER" --listen "127.0.0.1:$ORDER_PORT" >"$LIB_TMP/order.log" 2>&1 &
track $!
"$PAYMENT" --listen "127.0.0.1:$PAYMENT_PORT" >"$LIB_TMP/payment.log" 2>&1 &
track $!
wait_port "$ORDER_PORT"; wait_port "$PAYMENT_PORT"

cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "upgrade";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 2000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 3600; lease_ms = 1000; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT";   timeout_ms = 8000; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 8000; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    compensate_retries = 1; backoff_ms = 10; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 2;
                    compensate_retries = 1; backoff_ms = 10; };
};
flows = {
  Booking      = { mode = "sync";  steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
CONF

# start BUILD_DIR: sagad of that build, its workers ready.
start() {
	: >"$LIB_TMP/sagad.log"
	SAGAD_WORKER=$1/sagad-worker "$1/sagad" -d -c "$LIB_TMP/sagad.conf" \
	    -p "$LIB_TMP/sagad.pid" >>"$LIB_TMP/sagad.log" 2>&1 &
	SAGAD_PID=$!
	track "$SAGAD_PID"
	wait_port "$SAGAD_PORT" || fail "sagad did not listen"
	for _ in $(seq 100); do
		grep -q "workers ready" "$LIB_TMP/sagad.log" && return 0
		sleep 0.1
	done
	fail "workers not ready"
}
ctl() { "$CTL" -s "127.0.0.1:$SAGAD_PORT" "$@"; }
# The saga's own state: the first one of its JSON (the steps' come after).
state() { ctl --json get "$1" 2>/dev/null | grep -o '"state":"[A-Z_]*"' | head -n1 | cut -d'"' -f4; }
wait_state() {	# ID STATE SECONDS
	local i
	for i in $(seq $(($3 * 10))); do
		[ "$(state "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$1: $(state "$1") after $3 s, expected $2"
}

# --- the previous build leaves its sagas -------------------------------------
start "$OLD"
ctl run Booking --id up-done >/dev/null || fail "old: up-done"
ctl run Booking --id up-failed fault=payment fault_undo=order >/dev/null
wait_state up-failed STATE_FAILED 10
# Payments that take 5 s (async) and 20 s (sync, beyond its timeout):
# the crash comes while they are called.
for i in 1 2 3; do
	ctl run AsyncBooking --id "up-async-$i" delay=payment:5000 >/dev/null ||
		fail "old: up-async-$i"
	ctl run Booking --id "up-sync-$i" delay=payment:20000 >/dev/null 2>&1 &
done
for i in 1 2 3; do
	wait_state "up-async-$i" STATE_RUNNING 4
	wait_state "up-sync-$i" STATE_RUNNING 4
done
sleep 0.3	# the async payments are called
[ "$(rcli zcard saga:leases)" -ge 3 ] || fail "old: no leases in saga:leases"
[ "$(rcli exists 'saga:{up-done}:events')" = 1 ] || fail "old: no event stream"
[ -z "$(rcli hget 'saga:{up-done}' pn)" ] || fail "old build wrote the new layout"
# A crash: the master and its workers die at once.
kill -KILL $(pgrep -P "$SAGAD_PID") "$SAGAD_PID"
wait "$SAGAD_PID" 2>/dev/null
sleep 1.5	# the leases run out

# --- this build finishes them ------------------------------------------------
start "$top_builddir"
for i in 1 2 3; do
	wait_state "up-sync-$i" STATE_COMPENSATED 15
done
# The bus redelivers after AckWait (the node's timeout + 5 s), and the
# payment takes its 5 s again.
for i in 1 2 3; do
	wait_state "up-async-$i" STATE_COMPLETED 40
done
echo "in-flight sagas of the previous layout finished"

# What the old layout wrote reads: Get, Watch (its events, to the end), List.
[ "$(state up-done)" = STATE_COMPLETED ] || fail "get up-done"
ctl watch up-done >"$LIB_TMP/watch-done.txt" 2>&1 || fail "watch up-done"
grep -q COMPLETED "$LIB_TMP/watch-done.txt" || fail "watch up-done: no end"
[ "$(grep -c CreatePayment "$LIB_TMP/watch-done.txt")" -ge 2 ] ||
	fail "watch up-done: events missing: $(cat "$LIB_TMP/watch-done.txt")"
ctl list --state COMPLETED --limit 100 >"$LIB_TMP/list.txt" || fail "list"
for id in up-done up-async-1 up-async-2 up-async-3; do
	grep -q "$id" "$LIB_TMP/list.txt" || fail "list: no $id"
done
ctl list --state FAILED >"$LIB_TMP/list-failed.txt" || fail "list failed"
grep -q up-failed "$LIB_TMP/list-failed.txt" || fail "list: no up-failed"

# The FAILED saga of the old layout is resolved, and converted.
ctl resolve up-failed "fixed by hand" >/dev/null || fail "resolve"
wait_state up-failed STATE_RESOLVED 5
ctl watch up-failed >"$LIB_TMP/watch-failed.txt" 2>&1 || true
grep -q "fixed by hand" "$LIB_TMP/watch-failed.txt" ||
	fail "watch up-failed: $(cat "$LIB_TMP/watch-failed.txt")"

# Every saga it wrote is in the new layout; the old layout's keys are gone
# but for the ended saga it never wrote.
for id in up-failed up-sync-1 up-sync-2 up-sync-3 up-async-1 up-async-2 up-async-3; do
	[ -n "$(rcli hget "saga:{$id}" pn)" ] || fail "$id not converted"
	[ -z "$(rcli hget "saga:{$id}" pb)" ] || fail "$id keeps its old pb"
	[ "$(rcli exists "saga:{$id}:events")" = 0 ] ||
		[ "$(rcli exists "saga:{$id}:w")" = 1 ] || fail "$id keeps its stream"
done
[ "$(rcli zcard saga:leases)" = 0 ] || fail "old leases left: $(rcli zrange saga:leases 0 -1)"
for st in STATE_RUNNING STATE_PENDING STATE_COMPENSATING STATE_FAILED; do
	[ "$(rcli zcard "saga:idx:Booking:$st")" = 0 ] &&
	    [ "$(rcli zcard "saga:idx:AsyncBooking:$st")" = 0 ] ||
		fail "old index $st left"
done
[ "$(rcli exists 'saga:{up-done}:events')" = 1 ] || fail "up-done lost its events"
pass "the previous layout's sagas finish under this build"
