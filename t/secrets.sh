#!/bin/bash
# t/secrets.sh - credentials and least privilege (issue 15) end to end:
# redis-server with requirepass and with an ACL user (ACL SETUSER), in a
# database other than 0; nats-server with a user and password; sagad with
# redis.username/password/password_file/db and nats.user/password_file (or
# the credentials in the URL), a sync saga and an async saga (its workers,
# the watcher connection of `sagactl run --wait`) completing; a wrong
# Redis password or none stops sagad at start with the reason; a wrong
# NATS password is logged with the broker's reason; as root with
# `user = "nobody"`, the master and its workers run as nobody; a changed
# password on SIGHUP is shown as ***; every secret used here is looked for
# in every log and every `sagad -t` output: none may hold one.
#
# Not here: nats.creds against a real server: that takes an operator's JWT
# made by nsc, which Debian does not package; `sagad -t` checks the file is
# readable, and cnats reads it on each connection.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
CTL=$top_builddir/sagactl
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

secret() { /usr/bin/python3 -c 'import secrets; print(secrets.token_hex(16))'; }
REDIS_PW=rp-$(secret)
ACL_PW=ac-$(secret)
ACL_PW2=ac2-$(secret)
NATS_PW=np-$(secret)
WRONG_PW=wr-$(secret)
SECRETS="$REDIS_PW $ACL_PW $ACL_PW2 $NATS_PW $WRONG_PW"

# As root the pods drop to nobody, who must reach the config and files.
AS_ROOT=0
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null &&
    getent group nogroup >/dev/null; then
	AS_ROOT=1
	chmod 755 "$LIB_TMP"
fi
# secret_file NAME VALUE: a file only its owner and the pods' group read.
secret_file() {
	(umask 077; printf '%s\n' "$2" >"$LIB_TMP/$1")
	if [ $AS_ROOT = 1 ]; then
		chgrp nogroup "$LIB_TMP/$1"; chmod 640 "$LIB_TMP/$1"
	fi
}
private_conf() {
	chmod 600 "$1"
	if [ $AS_ROOT = 1 ]; then chgrp nogroup "$1"; chmod 640 "$1"; fi
}

REDIS_PORT=$(free_port)
mkdir -p "$LIB_TMP/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
	--save '' --appendonly no --requirepass "$REDIS_PW" \
	>"$LIB_TMP/redis.log" 2>&1 &
track $!
wait_port "$REDIS_PORT"
rcli() { REDISCLI_AUTH=$REDIS_PW redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
[ "$(rcli ACL SETUSER sagad on ">$ACL_PW" '~*' '&*' +@all)" = OK ] ||
	fail "ACL SETUSER"

NATS_PORT=$(free_port)
mkdir -p "$LIB_TMP/nats"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
	--user sagad --pass "$NATS_PW" >"$LIB_TMP/nats.log" 2>&1 &
track $!
wait_port "$NATS_PORT"

start_participant() {
	PORT=$(free_port)
	"$2" --listen "127.0.0.1:$PORT" >"$LIB_TMP/$1.log" 2>&1 &
	track $!
	wait_port "$PORT" || fail "$1 did not listen"
}
start_participant order "$ORDER"; ORDER_PORT=$PORT
start_participant payment "$PAYMENT"; PAYMENT_PORT=$PORT

secret_file nats.pw "$NATS_PW"
secret_file redis.pw "$REDIS_PW"

# conf POD PORT NATS REDIS: a pod; NATS and REDIS are the inside of the
# nats and redis sections.
conf() {
	cat <<EOC
pod_id = "$1";
listen = "127.0.0.1:$2";
shutdown_timeout_ms = 2000;
$( [ $AS_ROOT = 1 ] && echo 'user = "nobody"; group = "nogroup";' )
nats = { $3 };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; $4 };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; workers = 1; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; workers = 1; };
};
flows = {
  Booking      = { mode = "sync";  steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
EOC
}

# pod NAME PORT: sagad -d -v on NAME.conf; sets POD_PID once its workers
# are ready.
pod() {
	"$SAGAD" -t -c "$LIB_TMP/$1.conf" >"$LIB_TMP/$1-t.out" 2>&1 ||
		fail "sagad -t $1.conf: $(cat "$LIB_TMP/$1-t.out")"
	SAGAD_WORKER=$top_builddir/sagad-worker "$SAGAD" -d -v \
		-c "$LIB_TMP/$1.conf" -p "$LIB_TMP/$1.pid" >"$LIB_TMP/$1.log" 2>&1 &
	POD_PID=$!
	track "$POD_PID"
	wait_port "$2" || fail "$1 did not listen on $2"
	for _ in $(seq 100); do
		grep -q "all [0-9]* workers ready" "$LIB_TMP/$1.log" && return 0
		sleep 0.1
	done
	fail "$1: workers not ready"
}

# --- an ACL user in db 3; NATS user and password_file ------------------------
A_PORT=$(free_port)
conf pod-a "$A_PORT" \
	"url = \"nats://127.0.0.1:$NATS_PORT\"; user = \"sagad\"; password_file = \"$LIB_TMP/nats.pw\";" \
	"db = 3; username = \"sagad\"; password = \"$ACL_PW\";" >"$LIB_TMP/pod-a.conf"
private_conf "$LIB_TMP/pod-a.conf"
pod pod-a "$A_PORT"
A_PID=$POD_PID
"$CTL" -s "127.0.0.1:$A_PORT" run Booking --id acl-sync >"$LIB_TMP/run1.out" 2>&1 ||
	fail "sync saga with Redis ACL user: $(cat "$LIB_TMP/run1.out")"
"$CTL" -s "127.0.0.1:$A_PORT" -T 30000 run AsyncBooking --id acl-async --wait \
	>"$LIB_TMP/run2.out" 2>&1 ||
	fail "async saga with NATS user/password: $(cat "$LIB_TMP/run2.out")"
[ "$(REDISCLI_AUTH=$ACL_PW redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --user sagad -n 3 EXISTS 'saga:{acl-async}')" = 1 ] ||
	fail "the saga is not in db 3"
[ "$(rcli -n 0 EXISTS 'saga:{acl-sync}')" = 0 ] || fail "a saga went to db 0"
grep -q "nats: connected to nats://127.0.0.1:$NATS_PORT" "$LIB_TMP/pod-a.log" ||
	fail "pod-a: no NATS connection"
pass "Redis ACL user in db 3 and NATS user/password_file: sync and async sagas complete"

if [ $AS_ROOT = 1 ]; then
	grep -q "running as user nobody, group nogroup" "$LIB_TMP/pod-a.log" ||
		fail "the master did not say it dropped to nobody"
	[ "$(ps -o user= -p "$A_PID")" = nobody ] ||
		fail "the master runs as $(ps -o user= -p "$A_PID")"
	n=0
	for w in $(pgrep -P "$A_PID"); do
		u=$(ps -o user= -p "$w")
		[ "$u" = nobody ] || fail "worker $w runs as $u"
		n=$((n + 1))
	done
	[ $n -ge 3 ] || fail "only $n workers to look at"
	[ "$(stat -c %U "$LIB_TMP/pod-a.pid")" = nobody ] ||
		fail "the pidfile was not handed to nobody"
	pass "started as root: the master and its $n workers run as nobody"
	# A worker started as root with a user set refuses to run.
	"$top_builddir/sagad-worker" --config "$LIB_TMP/pod-a.conf" --instance 1 \
		--concurrency 1 --topic AsyncBooking/CreateOrder --pod-id pod-a \
		--ready-fd 3 --parent-fd 4 --foreground 3>/dev/null 4</dev/null \
		>"$LIB_TMP/worker-root.out" 2>&1 &&
		fail "sagad-worker ran as root with user set"
	grep -q "running as root although user = \"nobody\" is set" \
		"$LIB_TMP/worker-root.out" ||
		fail "sagad-worker as root: $(head -3 "$LIB_TMP/worker-root.out")"
	pass "a worker left as root with a user set refuses to run"
else
	echo "# not root: the privilege drop is not tested (run as root to test it)"
fi

# At runtime: Redis changes the user's password and drops its clients;
# the reconnects are refused, said once, and all is well once it is back.
ACL_PW3=ac3-$(secret)
SECRETS="$SECRETS $ACL_PW3"
rcli ACL SETUSER sagad resetpass ">$ACL_PW3" >/dev/null
rcli CLIENT KILL USER sagad >/dev/null
for _ in $(seq 50); do
	grep -q "redis: unavailable: redis 127.0.0.1:$REDIS_PORT refused AUTH as user sagad: WRONGPASS" \
		"$LIB_TMP/pod-a.log" && break
	sleep 0.1
done
sleep 3	# several refused reconnects
n=$(grep -c "redis: unavailable: .*refused AUTH as user sagad" "$LIB_TMP/pod-a.log")
[ "$n" = 1 ] || fail "a refused reconnect logged $n times by the master, want once"
rcli ACL SETUSER sagad resetpass ">$ACL_PW" >/dev/null
for _ in $(seq 100); do
	[ "$(grep -c 'redis: connected' "$LIB_TMP/pod-a.log")" -ge 2 ] && break
	sleep 0.1
done
"$CTL" -s "127.0.0.1:$A_PORT" run Booking --id acl-sync2 >"$LIB_TMP/run1b.out" 2>&1 ||
	fail "sync saga after Redis took the password back: $(cat "$LIB_TMP/run1b.out")"
pass "a refused Redis reconnect is logged once, and sagas run again once Redis takes the password"

# A password changed on SIGHUP: restart-only, and shown as ***.
sed "s|password = \"$ACL_PW\"|password = \"$ACL_PW2\"|" "$LIB_TMP/pod-a.conf" \
	>"$LIB_TMP/pod-a.new" && cat "$LIB_TMP/pod-a.new" >"$LIB_TMP/pod-a.conf"
rm -f "$LIB_TMP/pod-a.new"
kill -HUP "$A_PID"
for _ in $(seq 50); do
	grep -q 'redis.password: changed from "\*\*\*" to "\*\*\*"' "$LIB_TMP/pod-a.log" && break
	sleep 0.1
done
grep -q 'redis.password: changed from "\*\*\*" to "\*\*\*", but only a restart' \
	"$LIB_TMP/pod-a.log" || fail "no reload warning for redis.password"
pass "a changed redis.password on SIGHUP: a restart-only key, shown as ***"
kill -TERM "$A_PID"
wait "$A_PID" || fail "pod-a exited $?"

# --- requirepass with password_file; credentials in the NATS URL -------------
B_PORT=$(free_port)
conf pod-b "$B_PORT" "url = \"nats://sagad:$NATS_PW@127.0.0.1:$NATS_PORT\";" \
	"password_file = \"$LIB_TMP/redis.pw\";" >"$LIB_TMP/pod-b.conf"
private_conf "$LIB_TMP/pod-b.conf"
pod pod-b "$B_PORT"
B_PID=$POD_PID
"$CTL" -s "127.0.0.1:$B_PORT" run Booking --id rp-sync >"$LIB_TMP/run3.out" 2>&1 ||
	fail "sync saga with requirepass: $(cat "$LIB_TMP/run3.out")"
"$CTL" -s "127.0.0.1:$B_PORT" -T 30000 run AsyncBooking --id rp-async --wait \
	>"$LIB_TMP/run4.out" 2>&1 ||
	fail "async saga, NATS credentials in the URL: $(cat "$LIB_TMP/run4.out")"
grep -q "nats: connected to nats://sagad:\*\*\*@127.0.0.1:$NATS_PORT" \
	"$LIB_TMP/pod-b.log" || fail "pod-b: the NATS URL is not shown redacted"
pass "requirepass with password_file and NATS credentials in the URL: sagas complete, the URL shown as sagad:***@"
kill -TERM "$B_PID"
wait "$B_PID" || fail "pod-b exited $?"

# --- refusals ---------------------------------------------------------------
# refused NAME NATS REDIS WANT: sagad must exit non-zero at start, saying WANT.
refused() {
	local port rc
	port=$(free_port)
	conf "$1" "$port" "$2" "$3" >"$LIB_TMP/$1.conf"
	private_conf "$LIB_TMP/$1.conf"
	timeout 30 "$SAGAD" -d -c "$LIB_TMP/$1.conf" -p "$LIB_TMP/$1.pid" \
		>"$LIB_TMP/$1.log" 2>&1
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$1: sagad -d exited $rc, want a refusal"
	grep -qF -- "$4" "$LIB_TMP/$1.log" ||
		fail "$1: no \"$4\" in: $(tail -3 "$LIB_TMP/$1.log")"
}
NATS_OK="url = \"nats://127.0.0.1:$NATS_PORT\"; user = \"sagad\"; password = \"$NATS_PW\";"
refused wrong-acl "$NATS_OK" "username = \"sagad\"; password = \"$WRONG_PW\";" \
	"refused AUTH as user sagad: WRONGPASS"
refused wrong-default "$NATS_OK" "password = \"$WRONG_PW\";" \
	"refused AUTH as user default: WRONGPASS"
refused no-password "$NATS_OK" "" \
	"refused sagad: it wants a password (NOAUTH"
refused bad-db "$NATS_OK" "password = \"$REDIS_PW\"; db = 9999;" \
	"refused the connection's setup (AUTH, SELECT 9999): ERR DB index is out of range"
pass "Redis refusing the password (ACL user, default user), asking for one, or the db: sagad -d exits non-zero saying why"

# A wrong NATS password: sagad stops at start with the broker's reason.
refused wrong-nats "url = \"nats://127.0.0.1:$NATS_PORT\"; user = \"sagad\"; password = \"$WRONG_PW\";" \
	"password = \"$REDIS_PW\";" \
	"nats: nats://127.0.0.1:$NATS_PORT refused the credentials (nats.user and password): Authorization Violation"
refused wrong-nats-url "url = \"nats://sagad:$WRONG_PW@127.0.0.1:$NATS_PORT\";" \
	"password = \"$REDIS_PW\";" "nats://sagad:***@127.0.0.1:$NATS_PORT"
pass "a wrong NATS password: sagad -d exits non-zero with the broker's reason"

# --- sagad -t never shows a secret -----------------------------------------
conf bad-t 1 "url = \"nats://sagad:$NATS_PW@127.0.0.1:$NATS_PORT\"; stream = \"a b\";" \
	"password = \"$REDIS_PW\"; port = 0;" >"$LIB_TMP/bad-t.conf"
sed -i "s|password = \"$REDIS_PW\"; port = 0;|password = \"$REDIS_PW\nx\"; port = 0;|" \
	"$LIB_TMP/bad-t.conf"
! "$SAGAD" -t -c "$LIB_TMP/bad-t.conf" >"$LIB_TMP/bad-t.out" 2>&1 ||
	fail "sagad -t took a bad config"
grep -q "configuration has errors" "$LIB_TMP/bad-t.out" || fail "sagad -t: $(cat "$LIB_TMP/bad-t.out")"
conf bad-url 1 "url = \"nats://sagad:$NATS_PW@127.0.0.1:$NATS_PORT x\";" "" \
	>"$LIB_TMP/bad-url.conf"
! "$SAGAD" -t -c "$LIB_TMP/bad-url.conf" >"$LIB_TMP/bad-url.out" 2>&1 ||
	fail "sagad -t took a NATS URL with a space"
grep -q "nats.url: expected a URL starting with nats:// or tls://, got \"nats://sagad:\*\*\*@127.0.0.1" \
	"$LIB_TMP/bad-url.out" || fail "sagad -t on a bad NATS URL: $(cat "$LIB_TMP/bad-url.out")"
printf 'x\n' >"$LIB_TMP/open.pw"; chmod 644 "$LIB_TMP/open.pw"
conf open-pw 1 "$NATS_OK" "password_file = \"$LIB_TMP/open.pw\";" >"$LIB_TMP/open-pw.conf"
! "$SAGAD" -t -c "$LIB_TMP/open-pw.conf" >"$LIB_TMP/open-pw.out" 2>&1 ||
	fail "sagad -t took a password file anyone can read"
grep -q "open.pw: others may read it (mode 0644)" "$LIB_TMP/open-pw.out" ||
	fail "sagad -t on a world-readable password file: $(cat "$LIB_TMP/open-pw.out")"
conf no-creds 1 "creds = \"$LIB_TMP/none.creds\";" "" >"$LIB_TMP/no-creds.conf"
! "$SAGAD" -t -c "$LIB_TMP/no-creds.conf" >"$LIB_TMP/no-creds.out" 2>&1 ||
	fail "sagad -t took a missing creds file"
grep -q "none.creds: No such file" "$LIB_TMP/no-creds.out" ||
	fail "sagad -t on a missing creds file: $(cat "$LIB_TMP/no-creds.out")"
pass "sagad -t: bad values, a world-readable password file, a missing creds file refused"

n=0
for s in $SECRETS; do
	for f in "$LIB_TMP"/*.log "$LIB_TMP"/*.out; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		! grep -qF -- "$s" "$f" || fail "a secret in $(basename "$f")"
	done
done
pass "no secret in any log or sagad -t output ($n file and secret pairs)"
! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer reports in the logs"
