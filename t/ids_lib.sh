# t/ids_lib.sh - what t/reuse.sh and t/ids.sh share (issue 11, cases 6
# and 7): nats-server, redis-server, the booking participants, the raw
# service and one sagad on t/conf/ids.conf.in. Source it after t/lib.sh.

# shellcheck shell=bash

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen
start_nats
start_redis
start_participant order "$ORDER"; ORDER_PORT=$PORT
start_participant payment "$PAYMENT"; PAYMENT_PORT=$PORT
start_raw
SAGAD_PORT=$(free_port)
sed -e "s|@POD@|pod-a|" -e "s|@LISTEN@|127.0.0.1:$SAGAD_PORT|" \
    -e "s|@NATS@|$NATS_URL|" -e "s|@REDIS_PORT@|$REDIS_PORT|" \
    -e "s|@ORDER@|127.0.0.1:$ORDER_PORT|" \
    -e "s|@PAYMENT@|127.0.0.1:$PAYMENT_PORT|" \
    -e "s|@STOCK@|127.0.0.1:$STOCK_PORT|" \
    "$top_srcdir/t/conf/ids.conf.in" >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
for _ in $(seq 150); do
	grep -q "all [0-9]* workers ready" "$LIB_TMP/sagad.log" && break
	sleep 0.1
done
export SAGAD_PORT ORDER_PORT PAYMENT_PORT STOCK_PORT
