#!/bin/bash
# grpc_server_interop.sh - our gRPC server (t/grpc_testd) against Debian's
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
${GRPC_TESTD_WRAP:-} "$top_builddir/t/grpc_testd" -p 0 >"$LIB_TMP/testd.out" \
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
