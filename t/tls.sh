#!/bin/bash
# t/tls.sh - TLS everywhere sagad talks (issue 15), with a throwaway CA made
# by openssl here: python3-grpcio to sagad over TLS and mTLS (no client
# certificate, one from another CA, a client that does not offer h2: all
# refused; one that never starts its handshake is closed after
# limits.handshake_timeout_ms); the certificate reloaded on SIGHUP as a new
# connection sees it, a bad one refused and the running one kept, a missing
# one failing sagad -t and the start; sagad to python3-grpcio participants
# over TLS and mTLS, one with a certificate for another name refused (the
# saga fails cleanly, nothing is compensated that was never sent); an
# operator's Cancel logged under its certificate's subject; and an async
# saga over a nats-server that speaks TLS only.

. "$top_srcdir/t/lib.sh"
lib_init

SAGAD=$top_builddir/sagad
CTL=$top_builddir/sagactl
export SAGAD_WORKER=$top_builddir/sagad-worker
PY=$top_srcdir/t/py/tls_test.py
[ -x "$SAGAD" ] && [ -x "$SAGAD_WORKER" ] && [ -x "$CTL" ] || fail "build first"
[ -x "$PYTHON_GRPC" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
command -v openssl >/dev/null || { echo "no openssl: skipped"; exit 77; }
unset POD_ID SAGAD_WORKER_CRASH_AT_START
T=$LIB_TMP
C=$T/pki
mkdir -p "$C"

# --- the throwaway PKI -------------------------------------------------------
# ca NAME: a self-signed CA. cert CA NAME CN SAN: a leaf it signs.
ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$C/$1.key" -out "$C/$1.pem" -days 2 -subj "/CN=$1" \
	    2>/dev/null || fail "openssl: CA $1"
}
cert() {
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$C/$2.key" -out "$C/$2.csr" -subj "/O=sagad test/CN=$3" \
	    2>/dev/null || fail "openssl: key $2"
	printf 'subjectAltName=%s\n' "$4" >"$C/$2.ext"
	openssl x509 -req -in "$C/$2.csr" -CA "$C/$1.pem" -CAkey "$C/$1.key" \
	    -CAcreateserial -out "$C/$2.pem" -days 2 -extfile "$C/$2.ext" \
	    2>/dev/null || fail "openssl: cert $2"
}
ca ca
ca otherca
cert ca sagad1 sagad-v1 "DNS:localhost,IP:127.0.0.1"
cert ca sagad2 sagad-v2 "DNS:localhost,IP:127.0.0.1"
cert ca part part "DNS:order.internal,IP:127.0.0.1"
cert ca wrongname wrongname "DNS:other.example"
cert ca ops "ops client" "DNS:ops"
cert otherca intruder "intruder" "DNS:ops"
pass "a throwaway CA and certificates (openssl)"

# --- the peers -----------------------------------------------------------------
start_redis
NATS_PORT=$(free_port)
mkdir -p "$T/nats"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$T/nats" --tls \
    --tlscert "$C/sagad1.pem" --tlskey "$C/sagad1.key" >"$T/nats.log" 2>&1 &
track $!
wait_port "$NATS_PORT" || fail "nats-server --tls did not start"

# participant NAME CERT CLIENT_CA|-: a python3-grpcio participant; sets PORT.
participant() {
	PORT=$(free_port)
	"$PYTHON_GRPC" "$PY" serve "$PORT" "$C/$2.pem" "$C/$2.key" "$3" \
	    "$T/$1.calls" >"$T/$1.log" 2>&1 &
	track $!
	touch "$T/$1.calls"
	wait_port "$PORT" || fail "participant $1 did not start"
}
participant tls part -
TLS_PORT=$PORT
participant mtls part "$C/ca.pem"
MTLS_PORT=$PORT
participant wrong wrongname -
WRONG_PORT=$PORT

SAGAD_PORT=$(free_port)
HTTP_PORT=$(free_port)
# write_conf CERT [CLIENT_CA] [KEY]
write_conf() {
	local client_ca="" key=${3:-$C/$1.key}
	[ -n "${2:-}" ] && client_ca="client_ca = \"$2\";"
	cat >"$T/sagad.conf" <<CONF
pod_id = "tls";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 3000;
tls = { cert = "$C/$1.pem"; key = "$key"; $client_ca };
nats = { url = "nats://127.0.0.1:$NATS_PORT"; tls = { ca = "$C/ca.pem"; }; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
limits = { handshake_timeout_ms = 1000; };
http = { listen = "127.0.0.1:$HTTP_PORT"; };
services = {
  tls   = { address = "127.0.0.1:$TLS_PORT";  tls = { ca = "${TLS_CA:-$C/ca.pem}"; }; };
  mtls  = { address = "127.0.0.1:$MTLS_PORT";
            tls = { ca = "$C/ca.pem"; cert = "$C/ops.pem"; key = "$C/ops.key"; }; };
  nocert = { address = "127.0.0.1:$MTLS_PORT"; tls = { ca = "$C/ca.pem"; }; };
  wrong = { address = "127.0.0.1:$WRONG_PORT";
            tls = { ca = "$C/ca.pem"; server_name = "order.internal"; }; };
};
nodes = {
  A      = { service = "tls";    action = "/t.P/Create"; compensate = "/t.P/Cancel"; retries = 0; };
  M      = { service = "mtls";   action = "/t.P/Create"; compensate = "/t.P/Cancel"; retries = 0; };
  N      = { service = "nocert"; action = "/t.P/Create"; compensate = "/t.P/Cancel"; retries = 0; };
  W      = { service = "wrong";  action = "/t.P/Create"; compensate = "/t.P/Cancel"; retries = 0; };
  S      = { service = "tls";    action = "/t.P/Slow";   compensate = "/t.P/Cancel"; retries = 0; };
  Async  = { service = "tls";    action = "/t.Async/Create"; compensate = "/t.Async/Cancel";
             workers = 1; concurrency = 2; };
};
flows = {
  Tls       = { steps = [ "A" ]; };
  Mtls      = { steps = [ "M" ]; };
  NoCert    = { steps = [ "A", "N" ]; };
  WrongName = { steps = [ "A", "W" ]; };
  Slow      = { steps = [ "S" ]; };
  AsyncTls  = { mode = "async"; steps = [ "Async" ]; };
};
CONF
}

wait_log() {	# PATTERN [N]
	local i
	for i in $(seq 100); do
		[ "$(grep -c -- "$1" "$T/sagad.log")" -ge "${2:-1}" ] && return 0
		sleep 0.05
	done
	return 1
}

write_conf sagad1
"$SAGAD" -t -c "$T/sagad.conf" >"$T/t.out" 2>&1 || { cat "$T/t.out"; fail "sagad -t"; }
"$SAGAD" -d -v -c "$T/sagad.conf" -p "$T/sagad.pid" >"$T/sagad.log" 2>&1 &
MPID=$!
track "$MPID"
wait_port "$SAGAD_PORT" || fail "sagad did not listen"
wait_log "listening on 127.0.0.1:$SAGAD_PORT (gRPC over TLS)" || fail "no TLS listener"

# --- clients to sagad: TLS ------------------------------------------------------
py() { "$PYTHON_GRPC" "$PY" "$@"; }
py health "$SAGAD_PORT" "$C/ca.pem" >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "grpcio over TLS"; }
py health "$SAGAD_PORT" "$C/otherca.pem" >"$T/py.out" 2>&1 &&
	fail "a client trusting another CA accepted sagad's certificate"
py alpn "$SAGAD_PORT" "$C/ca.pem" none >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "a TLS client without ALPN was served"; }
py alpn "$SAGAD_PORT" "$C/ca.pem" http/1.1 >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "a TLS client offering only http/1.1 was served"; }
grep -q "no application protocol" "$T/py.out" || { cat "$T/py.out"; fail "no no_application_protocol alert"; }
# A cleartext h2c client gets nothing.
"$CTL" -s "127.0.0.1:$SAGAD_PORT" -T 3000 health >"$T/ctl.out" 2>&1 && fail "h2c served on a TLS port"
"$CTL" -s "127.0.0.1:$SAGAD_PORT" --ca "$C/ca.pem" health >"$T/ctl.out" 2>&1 ||
	{ cat "$T/ctl.out"; fail "sagactl --ca"; }
"$CTL" -s "localhost:$SAGAD_PORT" --ca "$C/ca.pem" --server-name nope health >"$T/ctl.out" 2>&1 &&
	fail "sagactl accepted a certificate for another name"
grep -q "hostname mismatch" "$T/ctl.out" || { cat "$T/ctl.out"; fail "sagactl: name mismatch not said"; }
# TLS 1.1, or TLS 1.2 with a CBC cipher: refused; TLS 1.2 with AES-GCM: h2.
echo | openssl s_client -connect "127.0.0.1:$SAGAD_PORT" -tls1_1 \
    -cipher 'DEFAULT@SECLEVEL=0' -alpn h2 >"$T/s_client.out" 2>&1
grep -q "alert protocol version" "$T/s_client.out" || { cat "$T/s_client.out"; fail "TLS 1.1 not refused"; }
echo | openssl s_client -connect "127.0.0.1:$SAGAD_PORT" -tls1_2 \
    -cipher ECDHE-ECDSA-AES128-SHA -alpn h2 >"$T/s_client.out" 2>&1
grep -q "Cipher is (NONE)" "$T/s_client.out" || { cat "$T/s_client.out"; fail "a CBC cipher suite not refused"; }
echo | openssl s_client -connect "127.0.0.1:$SAGAD_PORT" -tls1_2 -alpn h2 \
    -CAfile "$C/ca.pem" >"$T/s_client.out" 2>&1
grep -q "ALPN protocol: h2" "$T/s_client.out" && grep -q "Cipher is ECDHE-ECDSA-AES256-GCM" "$T/s_client.out" ||
	{ cat "$T/s_client.out"; fail "TLS 1.2 with ECDHE and AES-GCM not served"; }
# A client that never starts its handshake is closed after handshake_timeout_ms.
py silent "$SAGAD_PORT" 5 >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "a silent client outlived handshake_timeout_ms"; }
# The HTTP listener: the same certificate, HTTP/1.1 over TLS.
wait_log "listening on 127.0.0.1:$HTTP_PORT (HTTPS:" || fail "the HTTP listener is not TLS"
py https "$HTTP_PORT" "$C/ca.pem" /livez >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "GET /livez over TLS"; }
py https "$HTTP_PORT" "$C/otherca.pem" /livez >"$T/py.out" 2>&1 && fail "HTTPS: another CA accepted"
echo | openssl s_client -connect "127.0.0.1:$HTTP_PORT" -alpn h2,http/1.1 \
    -CAfile "$C/ca.pem" >"$T/s_client.out" 2>&1
grep -q "ALPN protocol: http/1.1" "$T/s_client.out" || { cat "$T/s_client.out"; fail "HTTPS: not http/1.1 by ALPN"; }
"$PYTHON_GRPC" -c "import urllib.request, sys
try:
    urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/livez', timeout=3)
except Exception:
    sys.exit(0)
sys.exit(1)" || fail "cleartext HTTP served on the TLS listener"
pass "grpcio and sagactl over TLS; another CA, no ALPN, no h2, h2c, a wrong name, TLS 1.1 and CBC refused; a silent client closed; HTTPS on the HTTP listener"

# --- sagad to participants --------------------------------------------------------
ctl() { "$CTL" -s "127.0.0.1:$SAGAD_PORT" --ca "$C/ca.pem" "$@"; }
ctl --json run Tls >"$T/run.out" 2>&1 || { cat "$T/run.out"; fail "Tls saga"; }
grep -q '"state":"STATE_COMPLETED"\|"state": *"COMPLETED"\|COMPLETED' "$T/run.out" || { cat "$T/run.out"; fail "Tls saga not completed"; }
grep -qx "/t.P/Create" "$T/tls.calls" || fail "the TLS participant was not called"
ctl --json run Mtls >"$T/run.out" 2>&1 || { cat "$T/run.out"; fail "Mtls saga"; }
grep -qx "/t.P/Create" "$T/mtls.calls" || fail "the mTLS participant was not called"
pass "sagad to a participant over TLS and over mTLS"

: >"$T/tls.calls"; : >"$T/mtls.calls"
ctl --json run WrongName >"$T/run.out" 2>&1
[ $? -eq 1 ] || { cat "$T/run.out"; fail "WrongName: want exit 1 (compensated)"; }
grep -q "COMPENSATED" "$T/run.out" || { cat "$T/run.out"; fail "WrongName not compensated"; }
grep -q "certificate verify failed: hostname mismatch" "$T/run.out" ||
	{ cat "$T/run.out"; fail "WrongName: the error does not name the mismatch"; }
grep -q "never reached" "$T/run.out" || { cat "$T/run.out"; fail "WrongName: the step is not marked never reached"; }
[ ! -s "$T/wrong.calls" ] || fail "the wrongly named participant got a call"
[ "$(cat "$T/tls.calls")" = "$(printf '/t.P/Create\n/t.P/Cancel')" ] ||
	{ cat "$T/tls.calls"; fail "WrongName: want A created then cancelled, once each"; }
ctl --json run NoCert >"$T/run.out" 2>&1
[ $? -eq 1 ] || { cat "$T/run.out"; fail "NoCert: want exit 1"; }
grep -q "never reached" "$T/run.out" || { cat "$T/run.out"; fail "NoCert: the step is not marked never reached"; }
[ ! -s "$T/mtls.calls" ] || fail "the mTLS participant served a client without a certificate"
pass "a participant with another name, and an mTLS one without our certificate: refused, never called, the saga compensated cleanly"

# --- async over NATS with TLS -----------------------------------------------------
wait_log "nats: connected to" || fail "sagad did not connect to nats over TLS"
: >"$T/tls.calls"
ctl run AsyncTls --wait >"$T/run.out" 2>&1 || { cat "$T/run.out"; fail "AsyncTls saga"; }
grep -q COMPLETED "$T/run.out" || { cat "$T/run.out"; fail "AsyncTls not completed"; }
grep -qx "/t.Async/Create" "$T/tls.calls" || fail "the worker did not call the participant over TLS"
pass "an async saga over nats-server --tls, its worker calling the participant over TLS"

# --- SIGHUP: a new certificate, client certificates required ------------------------
[ "$(py subject "$SAGAD_PORT" "$C/ca.pem")" = "sagad-v1" ] || fail "not the first certificate"
write_conf sagad2 "$C/ca.pem"
kill -HUP "$MPID"
wait_log "reload: tls: certificate $C/sagad2.pem loaded, client certificates required" ||
	fail "no reload of the certificate"
py health "$SAGAD_PORT" "$C/ca.pem" "$C/ops.pem" "$C/ops.key" >"$T/py.out" 2>&1 ||
	{ cat "$T/py.out"; fail "mTLS with a good client certificate"; }
openssl s_client -connect "127.0.0.1:$SAGAD_PORT" -alpn h2 -CAfile "$C/ca.pem" \
    -cert "$C/ops.pem" -key "$C/ops.key" </dev/null >"$T/s_client.out" 2>&1
grep -q "subject=.*CN *= *sagad-v2" "$T/s_client.out" || { cat "$T/s_client.out"; fail "a new connection does not see the new certificate"; }
py health "$SAGAD_PORT" "$C/ca.pem" >"$T/py.out" 2>&1 && fail "mTLS: a client without a certificate was served"
wait_log "grpc: TLS handshake with ipv4:127.0.0.1:[0-9]* failed: peer did not return a certificate" ||
	fail "the refusal of a client without a certificate is not logged with its address and why"
py health "$SAGAD_PORT" "$C/ca.pem" "$C/intruder.pem" "$C/intruder.key" >"$T/py.out" 2>&1 &&
	fail "mTLS: a client certificate from another CA was accepted"
py flows "$SAGAD_PORT" "$C/ca.pem" "$C/ops.pem" "$C/ops.key" >"$T/py.out" 2>&1 || { cat "$T/py.out"; fail "ListFlows over mTLS"; }
grep -q WrongName "$T/py.out" || fail "ListFlows over mTLS: no flows"
py https "$HTTP_PORT" "$C/ca.pem" /livez "$C/ops.pem" "$C/ops.key" >"$T/py.out" 2>&1 ||
	{ cat "$T/py.out"; fail "HTTPS with a client certificate after the reload"; }
py https "$HTTP_PORT" "$C/ca.pem" /livez >"$T/py.out" 2>&1 && fail "HTTPS: a client without a certificate was served"
pass "SIGHUP: a new certificate for new connections; mTLS: no certificate and another CA refused, on both listeners"

# The caller's name in the log: an operator's Cancel over mTLS.
ctlm() { ctl --cert "$C/ops.pem" --key "$C/ops.key" "$@"; }
ctlm run Slow --id slow-1 >"$T/slow.out" 2>&1 &
SLOW=$!
for _ in $(seq 50); do grep -qx "/t.P/Slow" "$T/tls.calls" && break; sleep 0.1; done
ctlm cancel slow-1 "by the test" >"$T/cancel.out" 2>&1 || { cat "$T/cancel.out"; fail "cancel over mTLS"; }
wait "$SLOW"
wait_log "cancel asked by CN=ops client,O=sagad test: by the test" ||
	fail "the Cancel is not logged under the client certificate's subject"
pass "an operator's Cancel logged under its client certificate's subject"

# A bad certificate on SIGHUP: the running one stays.
write_conf sagad2 "$C/ca.pem" "$C/sagad1.key"
kill -HUP "$MPID"
wait_log "reload: tls: key .*mismatch; keeping the running certificate" ||
	fail "a mismatched key was not refused"
py health "$SAGAD_PORT" "$C/ca.pem" "$C/ops.pem" "$C/ops.key" >"$T/py.out" 2>&1 ||
	{ cat "$T/py.out"; fail "the running certificate was dropped"; }
pass "SIGHUP with a key that does not match: refused, the running certificate kept"

# A service's CA that no longer loads after a reload: said, and its calls
# fail as never sent.
TLS_CA=$C/missing-ca.pem write_conf sagad2 "$C/ca.pem"
kill -HUP "$MPID"
wait_log "services.tls.tls: ca $C/missing-ca.pem: .*its calls fail until a reload fixes it" ||
	fail "a service's missing CA was not said at reload"
ctlm --json run Tls >"$T/run.out" 2>&1
grep -q "services.tls.tls: ca $C/missing-ca.pem" "$T/run.out" && grep -q "never reached" "$T/run.out" ||
	{ cat "$T/run.out"; fail "a service whose CA does not load: the step does not say so"; }
pass "a service's CA that does not load at a reload: logged, its steps fail as never sent"

# A file that does not load stops the start, with its reason.
write_conf sagad2 "" "$C/missing.key"
"$SAGAD" -t -c "$T/sagad.conf" >"$T/bad.out" 2>&1 && fail "sagad -t passed a missing key"
grep -q "tls: key $C/missing.key" "$T/bad.out" || { cat "$T/bad.out"; fail "sagad -t: no reason for a missing key"; }
"$SAGAD" -d -c "$T/sagad.conf" -p "$T/sagad2.pid" >"$T/bad.out" 2>&1 && fail "sagad started without its key"
grep -q "tls: key $C/missing.key" "$T/bad.out" || { cat "$T/bad.out"; fail "no reason for a missing key"; }
pass "a missing key fails sagad -t and stops the start, saying so"
