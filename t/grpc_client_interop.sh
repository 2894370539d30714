#!/bin/bash
# grpc_client_interop.sh - the gRPC client (src/grpc/client.c, driven by
# t/tools/grpc_call) against a server nobody here wrote: python3-grpcio with
# generic handlers on raw bytes (t/py/grpc_server_interop.py). Checks
# payloads, every status code, grpc-message encoding, metadata both ways,
# deadlines, multiplexing on one connection, queueing under the server's
# MAX_CONCURRENT_STREAMS, and reconnecting after a server restart.
#
# GRPC_CALL_WRAP runs the driver under a tool, e.g.
#   GRPC_CALL_WRAP="valgrind -q --leak-check=full --error-exitcode=1"

. "$top_srcdir/t/lib.sh"
lib_init

PY=${PYTHON_GRPC:-/usr/bin/python3}
SERVER="$top_srcdir/t/py/grpc_server_interop.py"
CALL="${GRPC_CALL_WRAP:-} $top_builddir/t/tools/grpc_call"

# start_server PORT [ARGS...]: sets SRV_PID; waits for READY.
start_server() {
	local port=$1 i
	shift
	"$PY" "$SERVER" --port "$port" "$@" >"$LIB_TMP/server-$port.log" 2>&1 &
	SRV_PID=$!
	track "$SRV_PID"
	for i in $(seq 100); do
		grep -q "^READY" "$LIB_TMP/server-$port.log" 2>/dev/null && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "python gRPC server on port $port did not start"
}

stop_server() {
	kill -TERM "$SRV_PID" 2>/dev/null
	wait "$SRV_PID" 2>/dev/null
}

# wait_ok FILE N: until a loop run has printed N OK statuses (slow under valgrind).
wait_ok() {
	local i
	for i in $(seq 200); do
		[ "$(grep -c '^status=OK' "$1" 2>/dev/null)" -ge "$2" ] && return 0
		sleep 0.05
	done
	fail "no $2 OK calls in $1: $(cat "$1")"
}

# call ARGS...: runs the driver against $ADDR, output in $OUT.
call() {
	OUT=$($CALL "$@") || fail "grpc_call $* exited $?: $OUT"
}

# expect LINE: the last call printed exactly this line.
expect() {
	grep -qxF -- "$1" <<<"$OUT" || fail "expected '$1' in:
$OUT"
}

PORT=$(free_port)
ADDR=127.0.0.1:$PORT
start_server "$PORT"

# Unary round trip with text and binary metadata, echoed as trailers.
call -t hello -m x-trace=abc-123 -m x-blob-bin=00ff7f80 "$ADDR" /test.Interop/Echo
expect "status=0 OK"
expect "data=hello"
expect "echo=yes"
expect "trailer x-trace=abc-123"
expect "trailer x-blob-bin=00ff7f80"
grep -q "^trailer x-seen-user-agent=sagad/[0-9]" <<<"$OUT" ||
	fail "user-agent not sagad/VERSION: $OUT"
if grep -q "^trailer x-seen-timeout-ms=" <<<"$OUT"; then
	fail "a call without deadline sent grpc-timeout: $OUT"
fi
pass "unary echo with text and -bin metadata"

call -T 5000 -t x "$ADDR" /test.Interop/Echo
left=$(sed -n 's/^trailer x-seen-timeout-ms=//p' <<<"$OUT")
[ -n "$left" ] && [ "$left" -gt 4000 ] && [ "$left" -le 5000 ] ||
	fail "server saw grpc-timeout of '${left}' ms for 5000: $OUT"
pass "grpc-timeout sent from the deadline"

call -d 000102fffe "$ADDR" /test.Interop/Echo
expect "status=0 OK"
expect "hex=000102fffe"
expect "echo=yes"
pass "binary payload"

call -z 0 "$ADDR" /test.Interop/Echo
expect "status=0 OK"
expect "len=0"
pass "empty message"

# Large messages: a request and a response near the 4 MiB limit, and one over.
call -z 4190000 "$ADDR" /test.Interop/Echo
expect "status=0 OK"
expect "len=4190000"
expect "echo=yes"
pass "4 MiB request and response"

call -t 4194304 "$ADDR" /test.Interop/Big
expect "status=0 OK"
expect "len=4194304"
call -t 4194305 "$ADDR" /test.Interop/Big
expect "status=8 RESOURCE_EXHAUSTED"
expect "message=received message larger than max (4194305 vs. 4194304)"
pass "receive limit is 4 MiB exactly"

# Every status code, Trailers-Only and headers-then-trailers.
names=(OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND
	ALREADY_EXISTS PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION
	ABORTED OUT_OF_RANGE UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS
	UNAUTHENTICATED)
for code in $(seq 0 16); do
	for m in Status StatusH; do
		call -t "$code|why $code" "$ADDR" "/test.Interop/$m"
		expect "status=$code ${names[$code]}"
		[ "$code" -eq 0 ] || expect "message=why $code"
	done
done
pass "status codes 0..16 reach the client"

MSG='échec — 失败 100% "done"'
call -t "9|$MSG" "$ADDR" /test.Interop/Status
expect "status=9 FAILED_PRECONDITION"
expect "message=$MSG"
pass "non-ASCII grpc-message round trip"

call -t x "$ADDR" /test.Nope/Missing
expect "status=12 UNIMPLEMENTED"
pass "unknown method is UNIMPLEMENTED"

call -s -t 4 "$ADDR" /test.Interop/Stream
expect "status=0 OK"
expect "msgs=4"
[ "$(grep '^msg=' <<<"$OUT" | tr '\n' ' ')" = "msg=0 msg=1 msg=2 msg=3 " ] ||
	fail "stream messages out of order: $OUT"
pass "server streaming"

# Deadline: the server sleeps 3 s, the client gives up at 300 ms.
call -T 300 -t 3000 "$ADDR" /test.Interop/Sleep
expect "status=4 DEADLINE_EXCEEDED"
ms=$(sed -n 's/^ms=//p' <<<"$OUT")
[ "$ms" -ge 290 ] && [ "$ms" -le 800 ] || fail "deadline took ${ms} ms"
pass "client deadline enforced (${ms} ms for 300)"

# 1000 concurrent calls share one connection: one new peer on the server.
call "$ADDR" /test.Interop/Peers
before=$(sed -n 's/^data=//p' <<<"$OUT")
call -n 1000 -t ping "$ADDR" /test.Interop/Echo
expect "calls=1000"
expect "OK=1000"
expect "connects=1"
call "$ADDR" /test.Interop/Peers
after=$(sed -n 's/^data=//p' <<<"$OUT")
# The Peers call itself is not counted; the 1000 calls added one peer.
[ $((after - before)) -eq 1 ] || fail "1000 calls used $((after - before)) connections"
pass "1000 concurrent calls on one connection"

stop_server

# Queueing: the server allows 10 streams, 200 slow calls all succeed.
PORT2=$(free_port)
start_server "$PORT2" --max-streams 10
call -n 200 -T 20000 -t 50 "127.0.0.1:$PORT2" /test.Interop/Sleep
expect "calls=200"
expect "OK=200"
expect "connects=1"
pass "200 calls queued behind MAX_CONCURRENT_STREAMS=10"
stop_server

# No server: UNAVAILABLE naming the address and the reason.
call -t x "127.0.0.1:$PORT2" /test.Interop/Echo
expect "status=14 UNAVAILABLE"
expect "message=connect 127.0.0.1:$PORT2: Connection refused"
pass "connection refused is UNAVAILABLE"

# A plain HTTP/2 server (nghttpd) answers 404: the spec maps it to UNIMPLEMENTED.
if command -v nghttpd >/dev/null 2>&1; then
	HPORT=$(free_port)
	mkdir -p "$LIB_TMP/docroot"
	nghttpd --no-tls -d "$LIB_TMP/docroot" "$HPORT" >"$LIB_TMP/nghttpd.log" 2>&1 &
	track $!
	wait_port "$HPORT"
	call -t x "127.0.0.1:$HPORT" /test.Interop/Echo
	expect "status=12 UNIMPLEMENTED"
	expect "message=127.0.0.1:$HPORT: HTTP status 404"
	pass "HTTP 404 from a non-gRPC server is UNIMPLEMENTED"
fi

# Server stops mid-call: UNAVAILABLE.
start_server "$PORT"
$CALL -T 10000 -t 5000 "$ADDR" /test.Interop/Sleep >"$LIB_TMP/midcall.out" &
cpid=$!
sleep 1
stop_server
wait "$cpid" || fail "grpc_call failed"
OUT=$(cat "$LIB_TMP/midcall.out")
expect "status=14 UNAVAILABLE"
pass "server stopping mid-call is UNAVAILABLE"

# GOAWAY: calls of 400 ms every 100 ms, the server stops gracefully. The
# calls in flight finish OK on the draining connection; new calls are not put
# on it but on a new connection, which the stopped server refuses.
start_server "$PORT"
$CALL -L 2 -i 100 -T 3000 -t 400 "$ADDR" /test.Interop/Sleep >"$LIB_TMP/goaway.out" &
cpid=$!
wait_ok "$LIB_TMP/goaway.out" 1
sleep 0.2
kill -USR1 "$SRV_PID"
wait "$cpid" || fail "grpc_call loop failed"
wait "$SRV_PID"
st=$(grep '^status=' "$LIB_TMP/goaway.out" | sort | uniq -c | awk '{print $2}' | tr '\n' ' ')
[ "$st" = "status=OK status=UNAVAILABLE " ] || fail "GOAWAY statuses: $(cat "$LIB_TMP/goaway.out")"
after=$(sed -n '/^status=UNAVAILABLE/,$p' "$LIB_TMP/goaway.out" | grep -c '^status=OK')
[ "$after" -ge 1 ] || fail "no call finished after GOAWAY: $(cat "$LIB_TMP/goaway.out")"
if grep '^# ' "$LIB_TMP/goaway.out" | grep -v -q 'Connection refused$'; then
	fail "a call failed for another reason than the refused reconnect: $(cat "$LIB_TMP/goaway.out")"
fi
grep -q '^connects=1$' "$LIB_TMP/goaway.out" || fail "GOAWAY: $(tail -n 1 "$LIB_TMP/goaway.out")"
pass "GOAWAY: $after in-flight calls finished, new calls not on the old connection"

# Reconnect: one client process calls every 50 ms across a server restart.
start_server "$PORT"
$CALL -L 5 -i 50 -T 1000 -B 200 "$ADDR" /test.Interop/Echo >"$LIB_TMP/loop.out" &
cpid=$!
wait_ok "$LIB_TMP/loop.out" 3
stop_server
sleep 1.5
start_server "$PORT"
wait "$cpid" || fail "grpc_call loop failed"
seq=$(grep '^status=' "$LIB_TMP/loop.out" | uniq | sed 's/^status=//' | tr '\n' ' ')
[ "$seq" = "OK UNAVAILABLE OK " ] || fail "loop statuses: $seq
$(cat "$LIB_TMP/loop.out")"
grep -q '^connects=2$' "$LIB_TMP/loop.out" ||
	fail "expected 2 connections: $(tail -n 1 "$LIB_TMP/loop.out")"
pass "reconnects after a server restart: $seq"
stop_server

exit 0
