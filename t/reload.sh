#!/bin/bash
# t/reload.sh - SIGHUP reloads the master and its workers by one rule
# (proc_config_reload): a key only a restart can change keeps its running
# value in every process, with the master saying so and each worker too
# (at -v); a change SIGHUP may make is taken; a broken file is refused by
# a worker as by the master, which leaves its workers alone then. NATS and Redis are named but nothing
# listens there: nothing here needs them.

. "$top_srcdir/t/lib.sh"
lib_init

SAGAD=$top_builddir/sagad
export SAGAD_WORKER=$top_builddir/sagad-worker
[ -x "$SAGAD" ] && [ -x "$SAGAD_WORKER" ] || fail "build first"
unset POD_ID SAGAD_WORKER_CRASH_AT_START
T=$LIB_TMP
PORT=$(free_port)

# write_conf REDIS_PORT TIMEOUT_MS: one async flow of one node, one worker
# for it and one for the callbacks.
write_conf() {
	cat >"$T/sagad.conf" <<CONF
pod_id = "pod-r";
listen = "127.0.0.1:$PORT";
shutdown_timeout_ms = 3000;
nats  = { url = "nats://127.0.0.1:4222"; };
redis = { host = "127.0.0.1"; port = $1; };
services = { order = { address = "127.0.0.1:50051"; }; };
nodes = { CreateOrder = { service = "order"; action = "/booking.Order/Create";
                          timeout_ms = $2; workers = 1; concurrency = 2; }; };
flows = { AsyncBooking = { mode = "async"; steps = [ "CreateOrder" ]; }; };
CONF
}

# wait_log PATTERN [N]: until the log holds N (default 1) lines matching it.
wait_log() {
	local i
	for i in $(seq 100); do
		[ "$(grep -c -- "$1" "$T/sagad.log")" -ge "${2:-1}" ] && return 0
		sleep 0.05
	done
	return 1
}

write_conf 6379 1000
"$SAGAD" -d -v -c "$T/sagad.conf" -p "$T/sagad.pid" >"$T/sagad.log" 2>&1 &
MPID=$!
track "$MPID"
wait_log "all 3 workers ready in" || fail "the workers did not start"

write_conf 6390 2000
kill -HUP "$MPID"
wait_log "sagad\[$MPID\].*redis.port: changed from 6379 to 6390, but only a restart can change it" ||
	fail "the master did not keep redis.port"
# Both workers say it (at -v) and take the rest of the file.
wait_log "sagad-worker.*reload: .*redis.port: changed from 6379 to 6390, but only a restart can change it" 2 ||
	fail "a worker did not keep redis.port as the master did"
wait_log "sagad-worker.*configuration reloaded" 2 || fail "a worker did not reload"
pass "SIGHUP: master and workers keep redis.port by one rule, and reload the rest"

echo "nodes = ;" >"$T/sagad.conf"
kill -HUP "$MPID"
wait_log "sagad\[$MPID\].*reload failed" || fail "the master took a broken file"
# The master touches no worker then; a worker told directly refuses it too.
wpid=$(sed -n 's/.*worker callbacks #1 (pid \([0-9]*\)) ready.*/\1/p' "$T/sagad.log")
[ -n "$wpid" ] || fail "no pid for the callbacks worker"
kill -HUP "$wpid"
wait_log "sagad-worker\[$wpid\].*config: .*sagad.conf:1: syntax error" ||
	fail "the worker did not say why the file is broken"
wait_log "sagad-worker\[$wpid\].*reload failed: keeping the running configuration" ||
	fail "the worker took a broken file"
kill -0 "$wpid" || fail "the worker died of a broken file"
pass "SIGHUP with a broken file: the master and a worker each keep theirs"

kill -TERM "$MPID"
wait "$MPID" || fail "sagad exited $? after SIGTERM"
