#!/bin/bash
# t/auth.sh - tokens with roles (auth.tokens_file, issue 15) end to end: a
# real redis-server, the booking participants and sagad driven by
# python3-grpcio (t/py/auth_test.py: each role against each RPC), by
# urllib on the HTTP listener (t/py/auth_http_test.py: each role against
# each endpoint, 401 and 403) and by
# sagactl (--token, SAGAD_TOKEN, its messages); the tokens file refused
# when others may read it or a line is bad (FILE:LINE, never the token);
# reloaded on SIGHUP, a broken one keeping the old tokens; a wrong token
# logged with the peer address and rate-limited; no token in any log line
# or in `sagad -t` output.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
CTL=$top_builddir/sagactl
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen

start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
start_participant payment "$PAYMENT"
PAYMENT_PORT=$PORT
start_participant slow "$ORDER" --latency 3000
SLOW_PORT=$PORT

tok() { /usr/bin/python3 -c 'import secrets; print(secrets.token_hex(20))'; }
TOK_READ=rd$(tok)
TOK_RUN=rn$(tok)
TOK_OPERATE=op$(tok)
TOK_NEW=nw$(tok)
export TOK_READ TOK_RUN TOK_OPERATE
TOKENS=$LIB_TMP/tokens
(umask 077; cat >"$TOKENS" <<EOT
# who may call sagad
$TOK_READ	read	grafana
$TOK_RUN run shop-frontend

$TOK_OPERATE   operate alice   # the operator on call
EOT
)

AUTH_PORT=$(free_port)
AUTH_HTTP_PORT=$(free_port)
export AUTH_PORT AUTH_HTTP_PORT
conf() {
	cat <<EOC
pod_id = "auth";
listen = "127.0.0.1:$AUTH_PORT";
shutdown_timeout_ms = 2000;
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
http = { listen = "127.0.0.1:$AUTH_HTTP_PORT"; };
auth = { tokens_file = "$1"; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT"; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; };
  slow    = { address = "127.0.0.1:$SLOW_PORT"; timeout_ms = 10000; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; };
  SlowOrder     = { service = "slow"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; };
};
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; };
          SlowBooking = { mode = "sync"; steps = [ "SlowOrder" ]; }; };
EOC
}

# --- the file's checks, through sagad -t ----------------------------------
conf "$TOKENS" >"$LIB_TMP/auth.conf"
"$SAGAD" -t -c "$LIB_TMP/auth.conf" >"$LIB_TMP/t-ok.out" 2>&1 ||
	fail "sagad -t refused a good tokens file: $(cat "$LIB_TMP/t-ok.out")"
cp "$TOKENS" "$LIB_TMP/open-tokens"; chmod 644 "$LIB_TMP/open-tokens"
conf "$LIB_TMP/open-tokens" >"$LIB_TMP/open.conf"
! "$SAGAD" -t -c "$LIB_TMP/open.conf" >"$LIB_TMP/t-open.out" 2>&1 ||
	fail "sagad -t took a tokens file anyone can read"
grep -q "others may read it (mode 0644)" "$LIB_TMP/t-open.out" ||
	fail "no clear word on a world-readable tokens file: $(cat "$LIB_TMP/t-open.out")"
(umask 077; printf '%s read ok\n%s admin bob\n' "$TOK_NEW" "$TOK_RUN" \
	>"$LIB_TMP/bad-tokens")
conf "$LIB_TMP/bad-tokens" >"$LIB_TMP/bad.conf"
! "$SAGAD" -t -c "$LIB_TMP/bad.conf" >"$LIB_TMP/t-bad.out" 2>&1 ||
	fail "sagad -t took a tokens file with a bad role"
grep -q "bad-tokens:2: role: expected read, run or operate" \
	"$LIB_TMP/t-bad.out" || fail "no FILE:LINE for a bad line: $(cat "$LIB_TMP/t-bad.out")"
(umask 077; printf '%s read\n%s run\n' "$TOK_NEW" "$TOK_NEW" >"$LIB_TMP/dup-tokens")
conf "$LIB_TMP/dup-tokens" >"$LIB_TMP/dup.conf"
! "$SAGAD" -t -c "$LIB_TMP/dup.conf" >"$LIB_TMP/t-dup.out" 2>&1 ||
	fail "sagad -t took a token twice"
grep -q "dup-tokens:2: this token is already on an earlier line" \
	"$LIB_TMP/t-dup.out" || fail "no FILE:LINE for a token twice"
pass "tokens file: refused when others may read it, a bad line or a token twice named by FILE:LINE"

# --- sagad with tokens ------------------------------------------------------
start_sagad "$LIB_TMP/auth.conf" sagad
grep -q "auth: 3 tokens from $TOKENS" "$LIB_TMP/sagad.log" ||
	fail "sagad did not say it loaded 3 tokens"
"$PYTHON_GRPC" "$top_srcdir/t/py/auth_test.py" matrix || fail "auth_test.py matrix"
grep -q "auth: a wrong token from ipv4:127.0.0.1:[0-9]*: /saga.v1.Orchestrator/.* refused" \
	"$LIB_TMP/sagad.log" || grep -q "auth: no token from ipv4:127.0.0.1" \
	"$LIB_TMP/sagad.log" || fail "no log line of a refused call with its peer"
wait_port "$AUTH_HTTP_PORT" || fail "no HTTP listener"
"$PYTHON_GRPC" "$top_srcdir/t/py/auth_http_test.py" || fail "auth_http_test.py"
grep -q "auth: a wrong token from 127.0.0.1:[0-9]*: \(GET\|POST\) /api/v1/sagas.* refused" \
	"$LIB_TMP/sagad.log" || grep -q "auth: no token from 127.0.0.1:[0-9]*: \(GET\|POST\) /" \
	"$LIB_TMP/sagad.log" || echo "# (no HTTP refusal line: the gRPC ones filled the second)"
n=$(grep -c "auth: .* refused" "$LIB_TMP/sagad.log")
[ "$n" -le 5 ] || fail "$n refusal lines logged in about a second: not rate-limited"
grep -q "more refusals not logged" "$LIB_TMP/sagad.log" || fail "no count of refusals held back"
pass "refusals logged with the peer address, at most one a second ($n lines)"

# --- sagactl ----------------------------------------------------------------
S="-s 127.0.0.1:$AUTH_PORT"
"$CTL" $S flows >"$LIB_TMP/ctl1.out" 2>&1; rc=$?
[ $rc -eq 1 ] || fail "sagactl flows without a token: exit $rc, want 1"
grep -q "UNAUTHENTICATED" "$LIB_TMP/ctl1.out" &&
	grep -q "pass --token TOKEN or set SAGAD_TOKEN" "$LIB_TMP/ctl1.out" ||
	fail "sagactl without a token: $(cat "$LIB_TMP/ctl1.out")"
SAGAD_TOKEN=$TOK_READ "$CTL" $S flows >"$LIB_TMP/ctl2.out" 2>&1 ||
	fail "SAGAD_TOKEN=read sagactl flows: $(cat "$LIB_TMP/ctl2.out")"
grep -q Booking "$LIB_TMP/ctl2.out" || fail "sagactl flows shows no Booking"
"$CTL" $S --token "$TOK_READ" run Booking >"$LIB_TMP/ctl3.out" 2>&1; rc=$?
[ $rc -eq 1 ] || fail "sagactl run with a read token: exit $rc, want 1"
grep -q "PERMISSION_DENIED.*run role" "$LIB_TMP/ctl3.out" &&
	grep -q "role may not do this" "$LIB_TMP/ctl3.out" ||
	fail "sagactl run with a read token: $(cat "$LIB_TMP/ctl3.out")"
"$CTL" $S --token "$TOK_RUN" run Booking --id ctl-run >"$LIB_TMP/ctl4.out" 2>&1 ||
	fail "sagactl run with a run token: $(cat "$LIB_TMP/ctl4.out")"
SAGAD_TOKEN=wrong-$TOK_READ "$CTL" $S get ctl-run >"$LIB_TMP/ctl5.out" 2>&1 &&
	fail "sagactl get with a wrong token succeeded"
grep -q "does not know the token" "$LIB_TMP/ctl5.out" ||
	fail "sagactl with a wrong token: $(cat "$LIB_TMP/ctl5.out")"
"$CTL" $S health >/dev/null 2>&1 || fail "sagactl health without a token"
pass "sagactl: --token and SAGAD_TOKEN sent; clear words on UNAUTHENTICATED and PERMISSION_DENIED"

# The token's name is the caller's name in the log: alice cancels a saga.
SAGAD_TOKEN=$TOK_RUN "$CTL" $S run SlowBooking --id slow-1 >"$LIB_TMP/slow.out" 2>&1 &
RUN_PID=$!
for _ in $(seq 50); do
	SAGAD_TOKEN=$TOK_READ "$CTL" $S get slow-1 2>/dev/null | grep -q RUNNING && break
	sleep 0.1
done
SAGAD_TOKEN=$TOK_OPERATE "$CTL" $S cancel slow-1 "changed my mind" \
	>"$LIB_TMP/cancel.out" 2>&1 || fail "cancel by alice: $(cat "$LIB_TMP/cancel.out")"
wait "$RUN_PID"
grep -q "slow-1.*cancel asked by alice: changed my mind" "$LIB_TMP/sagad.log" ||
	fail "the cancel does not name alice: $(grep slow-1 "$LIB_TMP/sagad.log")"
# The same over HTTP: the JSON API's in-process call is named too.
SAGAD_TOKEN=$TOK_RUN "$CTL" $S run SlowBooking --id slow-2 >"$LIB_TMP/slow2.out" 2>&1 &
RUN_PID=$!
for _ in $(seq 50); do
	SAGAD_TOKEN=$TOK_READ "$CTL" $S get slow-2 2>/dev/null | grep -q RUNNING && break
	sleep 0.1
done
code=$(/usr/bin/python3 - "$AUTH_HTTP_PORT" "$TOK_OPERATE" <<'PY' 2>"$LIB_TMP/cancel2.out"
import sys, urllib.request, urllib.error
req = urllib.request.Request(
    "http://127.0.0.1:%s/api/v1/sagas/slow-2:cancel" % sys.argv[1],
    data=b'{"reason": "over http"}', method="POST",
    headers={"Authorization": "Bearer " + sys.argv[2],
             "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=20).status)
except urllib.error.HTTPError as e:
    print(e.code)
    sys.stderr.write(e.read().decode(errors="replace"))
PY
)
[ "$code" = 200 ] || fail "HTTP cancel by alice: $code $(cat "$LIB_TMP/cancel2.out")"
wait "$RUN_PID"
grep -q "slow-2.*cancel asked by alice: over http" "$LIB_TMP/sagad.log" ||
	fail "the HTTP cancel does not name alice: $(grep slow-2 "$LIB_TMP/sagad.log")"
pass "the token's name is the caller's name in the log (cancel asked by alice, over gRPC and HTTP)"

# --- SIGHUP -----------------------------------------------------------------
(umask 077; printf '%s operate carol\n' "$TOK_NEW" >"$TOKENS.new")
mv "$TOKENS.new" "$TOKENS"
kill -HUP "$SAGAD_PID"
for _ in $(seq 50); do
	grep -q "auth: 1 tokens from" "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
grep -q "auth: 1 tokens from" "$LIB_TMP/sagad.log" || fail "no reload of the tokens on SIGHUP"
"$PYTHON_GRPC" "$top_srcdir/t/py/auth_test.py" works "$TOK_NEW" || fail "new token after SIGHUP"
"$PYTHON_GRPC" "$top_srcdir/t/py/auth_test.py" refused "$TOK_OPERATE" || fail "old token after SIGHUP"
printf 'just-one-field\n' >>"$TOKENS"
kill -HUP "$SAGAD_PID"
for _ in $(seq 50); do
	grep -q "keeping the 1 tokens loaded before" "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
grep -q "tokens:2: expected \"TOKEN ROLE \[NAME\]\", got a token without a role; keeping the 1 tokens loaded before" \
	"$LIB_TMP/sagad.log" || fail "a broken tokens file on SIGHUP: no clear line"
"$PYTHON_GRPC" "$top_srcdir/t/py/auth_test.py" works "$TOK_NEW" ||
	fail "the tokens before a broken reload are gone"
chmod 604 "$TOKENS"
kill -HUP "$SAGAD_PID"
for _ in $(seq 50); do
	grep -q "others may read it (mode 0604).*keeping the 1 tokens" "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
grep -q "others may read it (mode 0604).*keeping the 1 tokens" "$LIB_TMP/sagad.log" ||
	fail "a world-readable tokens file on SIGHUP was not refused"
pass "SIGHUP reloads the tokens; a broken or world-readable file keeps the old ones and says why"

kill -TERM "$SAGAD_PID"
wait "$SAGAD_PID" || fail "sagad exited $? after SIGTERM"

# --- no secret in any log or -t output ---------------------------------------
for t in "$TOK_READ" "$TOK_RUN" "$TOK_OPERATE" "$TOK_NEW"; do
	! grep -rlF -- "$t" "$LIB_TMP"/*.log "$LIB_TMP"/*.out ||
		fail "a token appears in a log or sagad -t output"
done
pass "no token in any log line or sagad -t output"
! grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$LIB_TMP"/*.log ||
	fail "sanitizer reports in the logs"
