#!/usr/bin/env bash
# run.sh - the two commands of the README's Quick start, and their helpers.
#   ./run.sh demo    install what is missing, build, start the stack, run sagas
#   ./run.sh test    install what is missing, build, run every test
#   ./run.sh build   install and build only
#   ./run.sh stop    stop what demo started
set -euo pipefail
cd "$(dirname "$0")"
TOP=$(pwd)

PACKAGES="build-essential autoconf automake libtool pkg-config
libevent-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libnats-dev
nats-server libhiredis-dev redis-server libconfig-dev check nghttp2-client
nghttp2-server python3-grpcio protobuf-compiler libjansson-dev clang
valgrind"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

deps() {
	local missing=() p
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
	deps
	if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
		say "autoreconf"
		autoreconf -fi
	fi
	if [ ! -f Makefile ] || [ configure -nt config.status ]; then
		say "configure"
		./configure --prefix=/usr/local ${CONFIGURE_FLAGS:-}
	fi
	say "make"
	make -j"$(nproc)"
}

test_all() {
	build
	say "make check"
	if ! make -j"$(nproc)" check; then
		for f in t/*.log; do
			[ -f "$f" ] || continue
			grep -q '^FAIL\|^ERROR' "${f%.log}.trs" 2>/dev/null || continue
			echo "--- $f"; tail -n 60 "$f"
		done
		exit 1
	fi
}

DEMO_DIR=$TOP/.demo

stop_demo() {
	[ -d "$DEMO_DIR" ] || { echo "nothing running"; return 0; }
	local f pid
	for f in "$DEMO_DIR"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
	done
	sleep 1
	rm -rf "$DEMO_DIR"
}

demo() {
	build
	# shellcheck source=t/lib.sh
	. "$TOP/t/lib.sh"
	stop_demo >/dev/null
	mkdir -p "$DEMO_DIR/nats" "$DEMO_DIR/redis"
	local nats_port redis_port sagad_port order_port payment_port
	nats_port=$(free_port); redis_port=$(free_port); sagad_port=$(free_port)
	order_port=$(free_port); payment_port=$(free_port)

	say "starting nats-server -js on 127.0.0.1:$nats_port"
	nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$DEMO_DIR/nats" \
		>"$DEMO_DIR/nats.log" 2>&1 &
	echo $! >"$DEMO_DIR/nats-server.pid"
	say "starting redis-server on 127.0.0.1:$redis_port"
	redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$DEMO_DIR/redis" \
		--save '' --daemonize no >"$DEMO_DIR/redis.log" 2>&1 &
	echo $! >"$DEMO_DIR/redis-server.pid"
	say "starting the example services: order on :$order_port, payment on :$payment_port"
	examples/booking/order --listen "127.0.0.1:$order_port" --latency 5 \
		>"$DEMO_DIR/order.log" 2>&1 &
	echo $! >"$DEMO_DIR/order.pid"
	examples/booking/payment --listen "127.0.0.1:$payment_port" --latency 5 \
		>"$DEMO_DIR/payment.log" 2>&1 &
	echo $! >"$DEMO_DIR/payment.pid"
	wait_port "$nats_port"; wait_port "$redis_port"
	wait_port "$order_port"; wait_port "$payment_port"

	sed -e "s|^listen = .*|listen = \"127.0.0.1:$sagad_port\";|" \
	    -e "s|nats://127.0.0.1:4222|nats://127.0.0.1:$nats_port|" \
	    -e "s|port = 6379;|port = $redis_port;|" \
	    -e "s|127.0.0.1:50051|127.0.0.1:$order_port|" \
	    -e "s|127.0.0.1:50052|127.0.0.1:$payment_port|" \
	    etc/sagad.conf >"$DEMO_DIR/sagad.conf"
	say "checking the configuration: sagad -t -c $DEMO_DIR/sagad.conf"
	./sagad -t -c "$DEMO_DIR/sagad.conf"
	say "starting sagad on 127.0.0.1:$sagad_port"
	SAGAD_WORKER="$TOP/sagad-worker" ./sagad -d -c "$DEMO_DIR/sagad.conf" \
		-p "$DEMO_DIR/sagad.pid" -P demo >"$DEMO_DIR/sagad.log" 2>&1 &
	wait_port "$sagad_port"
	sleep 0.5
	say "the processes sagad runs"
	ps -o pid,ppid,rss,args --ppid "$(cat "$DEMO_DIR/sagad.pid")" \
		-p "$(cat "$DEMO_DIR/sagad.pid")"

	local ctl="./sagactl -s 127.0.0.1:$sagad_port"
	echo
	say "sagactl health"
	$ctl health
	say "sagactl flows"
	$ctl flows
	say "a sync booking that completes: sagactl run Booking amount=42"
	$ctl run --id demo-sync-1 Booking amount=42 || true
	say "a sync booking whose payment fails, so the order is compensated:"
	echo "    sagactl run Booking amount=42 fault=payment"
	$ctl run --id demo-rollback-1 Booking amount=42 fault=payment || true
	say "its events in order: sagactl watch demo-rollback-1"
	$ctl watch demo-rollback-1 || true
	say "a payment that is unavailable twice, then works: flaky=payment:2"
	$ctl run --id demo-retry-1 Booking amount=7 flaky=payment:2 || true
	say "async and throttling flows"
	$ctl run AsyncBooking amount=42 || true
	echo "    (they arrive with the NATS JetStream workers: see the README's status table)"

	cat <<EOF

The stack keeps running. Try it yourself:
  $ctl run Booking amount=10
  $ctl run Booking amount=10 fault=order        # the first step fails
  $ctl run Booking flaky=payment:2              # retried, then completes
  $ctl get demo-rollback-1
  $ctl --json get demo-sync-1
  $ctl bench Booking -r 200 -d 5s
Logs are in $DEMO_DIR; ./run.sh stop stops everything.
EOF
}

case "${1:-}" in
demo)	demo ;;
test)	test_all ;;
build)	build ;;
stop)	stop_demo ;;
deps)	deps ;;
*)	echo "usage: $0 demo|test|build|stop" >&2; exit 2 ;;
esac
