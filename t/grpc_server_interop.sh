#!/bin/bash
# grpc_server_interop.sh - our gRPC server (t/tools/grpc_testd) against Debian's
# python3-grpcio as the client: health, errors, deadlines, cancels, limits,
# concurrency, metadata and graceful shutdown (t/py/grpc_client_interop.py).
# GRPC_TESTD_WRAP runs the server under a wrapper, e.g. valgrind.
. "$top_srcdir/t/lib.sh"
lib_init

PY=${PYTHON_GRPC:-/usr/bin/python3}
"$PY" -c 'import grpc' 2>/dev/null || { echo "SKIP: no python3-grpcio"; exit 77; }
[ -x "${PROTOC:-}" ] || PROTOC=$(command -v protoc) || { echo "SKIP: no protoc"; exit 77; }

mkdir -p "$LIB_TMP/stubs"
"$PROTOC" -I"$top_srcdir/proto/grpc/health/v1" --python_out="$LIB_TMP/stubs" \
	"$top_srcdir/proto/grpc/health/v1/health.proto" || fail "protoc"

# shellcheck disable=SC2086
${GRPC_TESTD_WRAP:-} "$top_builddir/t/tools/grpc_testd" -p 0 >"$LIB_TMP/testd.out" \
	2>"$LIB_TMP/testd.log" &
PID=$!
track "$PID"
for _ in $(seq 300); do
	grep -q '^port ' "$LIB_TMP/testd.out" && break
	kill -0 "$PID" 2>/dev/null || fail "grpc_testd died"
	sleep 0.1
done
PORT=$(awk '/^port /{print $2}' "$LIB_TMP/testd.out")
[ -n "$PORT" ] || fail "grpc_testd did not report its port"

# The shape of responses on the wire, which grpcio does not show: a
# Trailers-Only error is one HEADERS frame with END_STREAM (flags 0x05) and
# no DATA; requests that are not gRPC get plain HTTP errors.
if command -v nghttp >/dev/null; then
	printf '\0\0\0\0\0' >"$LIB_TMP/check.bin"
	URL="http://127.0.0.1:$PORT"
	out=$(nghttp -v -d "$LIB_TMP/check.bin" -H 'te: trailers' \
		-H 'content-type: application/grpc' "$URL/no.Such/Method" 2>&1 | tr -d '\000')
	echo "$out" | grep -aq 'grpc-status: 12' &&
		echo "$out" | grep -aq 'recv HEADERS frame <.*flags=0x05, stream_id=13>' &&
		! echo "$out" | grep -aq 'recv DATA' ||
		fail "unknown method is not a Trailers-Only UNIMPLEMENTED: $out"
	pass "unknown method gets a Trailers-Only response"
	out=$(nghttp -v -d "$LIB_TMP/check.bin" -H 'te: trailers' \
		-H 'content-type: application/grpc' \
		"$URL/grpc.health.v1.Health/Check" 2>&1 | tr -d '\000')
	echo "$out" | grep -aq 'recv DATA frame <length=7' &&
		echo "$out" | grep -aq 'grpc-status: 0' ||
		fail "Check over nghttp: $out"
	pass "health Check over nghttp: a DATA frame, then grpc-status 0"
	nghttp -v "$URL/grpc.health.v1.Health/Check" 2>&1 |
		grep -aq ':status: 405' || fail "GET is not 405"
	pass "GET is refused with HTTP 405"
	nghttp -v -d "$LIB_TMP/check.bin" -H 'content-type: text/plain' \
		"$URL/grpc.health.v1.Health/Check" 2>&1 |
		grep -aq ':status: 415' || fail "text/plain is not 415"
	pass "a non-gRPC content-type is refused with HTTP 415"
fi

"$PY" "$top_srcdir/t/py/grpc_client_interop.py" "$PORT" "$PID" \
	"$LIB_TMP/stubs" || fail "interop client"

# SIGTERM was sent by the client: the server must exit 0 by itself.
for _ in $(seq 100); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$PID" 2>/dev/null && fail "grpc_testd still runs after graceful shutdown"
wait "$PID"
rc=$?
[ "$rc" -eq 0 ] || fail "grpc_testd exited $rc"
pass "server exits 0 after graceful shutdown"
