#!/usr/bin/env bash
# run.sh - the two commands of the README's Quick start, and their helpers.
#   ./run.sh demo    install what is missing, build, start the stack, run sagas
#                    (QUEUE=rabbitmq ./run.sh demo: on RabbitMQ, not NATS)
#                    (TLS=1 ./run.sh demo: TLS end to end, a throwaway CA)
#   ./run.sh test    install what is missing, build, run every test
#                    (SANITIZE=1: the same under ASan+UBSan, as test-asan)
#   ./run.sh test-asan  every test of a build with --enable-sanitizers, in
#                    .asan/ (a copy of the tree), with zero reports allowed
#   ./run.sh fuzz [SECONDS]  each libFuzzer target (t/fuzz/) for SECONDS
#                    (default 60), its corpus in t/fuzz-corpus/TARGET
#   ./run.sh chaos [SECONDS]  the chaos test (t/chaos.sh) for SECONDS (default
#                    600) at RATE Runs/s (default 80): two pods, a mixed
#                    load, faults at random, then every saga's invariants
#   ./run.sh build   install and build only
#   ./run.sh stop    stop what demo started
set -euo pipefail
cd "$(dirname "$0")"
TOP=$(pwd)

PACKAGES="build-essential autoconf automake libtool pkg-config
libevent-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libnats-dev
nats-server libhiredis-dev redis-server libconfig-dev check nghttp2-client
nghttp2-server python3-grpcio protobuf-compiler libjansson-dev clang
valgrind python3-h2 python3-pika librabbitmq-dev rabbitmq-server chromium libssl-dev
openssl curl"

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

# The dashboard's browser test (t/dashboard.sh) drives chromium with
# playwright-core from npm, installed into t/js (node_modules, not in git).
js_deps() {
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	if ! command -v npm >/dev/null; then
		say "installing nodejs npm"
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			--no-install-recommends nodejs npm ||
			{ say "no npm: t/dashboard.sh will be skipped"; return 0; }
	fi
	[ -d t/js/node_modules/playwright-core ] && return 0
	say "npm ci in t/js (playwright-core)"
	(cd t/js && npm ci --no-audit --no-fund) ||
		say "npm ci failed: t/dashboard.sh will be skipped"
}

build() {
	deps
	js_deps
	if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
		say "autoreconf"
		autoreconf -fi
	fi
	if [ ! -f Makefile ] || [ configure -nt config.status ]; then
		say "configure"
		./configure --prefix=/usr/local --enable-werror ${CONFIGURE_FLAGS:-}
	fi
	say "make"
	make -j"$(nproc)"
}

test_all() {
	build
	say "make check"
	if ! make -j"$(nproc)" check; then
		for f in t/*.log t/*/*.log; do
			[ -f "$f" ] || continue
			grep -q '^:test-result: \(FAIL\|ERROR\)' "${f%.log}.trs" 2>/dev/null ||
				continue
			echo "--- $f (last 150 lines)"; tail -n 150 "$f"
		done
		exit 1
	fi
}

# The whole test suite under ASan and UBSan. An in-tree build cannot also
# be configured out of tree, so the sanitized build lives in a copy of the
# sources (.asan/, refreshed from the tree each time). Any report fails the
# test that triggered it: ASan aborts, UBSan does not recover.
test_asan() {
	deps
	js_deps
	local dir=$TOP/.asan
	say "copying the tree to $dir for a sanitized build"
	mkdir -p "$dir"
	git ls-files -z | rsync -a --files-from=- --from0 ./ "$dir/" 2>/dev/null ||
		{ git ls-files -z | tar --null -T - -cf - | tar -C "$dir" -xf -; }
	cd "$dir"
	# The dashboard's browser driver, installed once in the tree.
	[ -d "$TOP/t/js/node_modules" ] && [ ! -e t/js/node_modules ] &&
		ln -s "$TOP/t/js/node_modules" t/js/node_modules
	if [ ! -f Makefile ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
		autoreconf -fi
		./configure --prefix=/usr/local --enable-sanitizers
	fi
	make -j"$(nproc)"
	say "make check (ASan+UBSan)"
	# Daemons log to files the tests delete when they pass: every process
	# also writes its reports to $dir/reports/, which must stay empty.
	rm -rf "$dir/reports"
	mkdir -p "$dir/reports"
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:log_path=$dir/reports/asan}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:log_path=$dir/reports/ubsan}
	local rc=0
	make -j"$(nproc)" check || rc=$?
	if grep -l 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer' \
	    t/*.log 2>/dev/null || [ -n "$(ls -A reports)" ]; then
		say "sanitizer reports: the logs above, and reports/"
		head -n 60 reports/* 2>/dev/null || true
		rc=1
	fi
	if [ "$rc" -ne 0 ]; then
		for f in t/*.log t/*/*.log; do
			[ -f "$f" ] || continue
			grep -q '^:test-result: \(FAIL\|ERROR\)' "${f%.log}.trs" 2>/dev/null ||
				continue
			echo "--- $f (last 150 lines)"; tail -n 150 "$f"
		done
		exit 1
	fi
	say "ASan+UBSan: every test passed, no report"
}

# Each fuzz target under libFuzzer for $1 seconds (default 60), new inputs
# kept in .fuzz/TARGET, the seeds read from t/fuzz-corpus/TARGET; a summary
# line per target: executions, coverage, corpus. A crash stops it.
fuzz_all() {
	local secs=${1:-60} n log
	build
	say "make fuzz (clang, libFuzzer, ASan+UBSan)"
	make fuzz
	for n in server client proto store config; do
		mkdir -p ".fuzz/$n"
		log=.fuzz/$n.log
		say "fuzz_$n for ${secs} s"
		if ! LSAN_OPTIONS=suppressions=$TOP/t/fuzz/lsan.supp \
		    t/fuzz/fuzz_"$n" -max_total_time="$secs" -print_final_stats=1 \
		    -timeout=10 -rss_limit_mb=2048 -artifact_prefix=".fuzz/$n-" \
		    ".fuzz/$n" "t/fuzz-corpus/$n" >"$log" 2>&1; then
			tail -n 40 "$log"
			say "fuzz_$n found a problem: .fuzz/$n-*"
			exit 1
		fi
		printf '%-8s %s; %s\n' "$n" \
		    "$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2 " executions"}')" \
		    "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/a-zA-Z]*' | tail -1)"
	done
}

# t/chaos.sh for $1 seconds (default 600) at RATE (default 80) Runs a
# second, with the environment make check gives it; its temp dir (logs, the
# ids sent, invariants.json) is kept in .chaos/ (KEEP_TMP= drops it).
chaos() {
	local secs=${1:-600}
	build
	say "t/chaos.sh for ${secs} s at ${RATE:-80} Runs/s"
	rm -rf "$TOP/.chaos"
	mkdir -p "$TOP/.chaos"
	top_srcdir=$TOP top_builddir=$TOP PYTHON_GRPC=/usr/bin/python3 \
	    PROTOC=$(command -v protoc) DURATION=$secs RATE=${RATE:-80} \
	    SETTLE=${SETTLE:-300} CHAOS_REPORT=$TOP/.chaos/report.json \
	    TMPDIR=$TOP/.chaos KEEP_TMP=${KEEP_TMP-1} bash t/chaos.sh
}

DEMO_DIR=$TOP/.demo

# Stops what demo started, by the pids it recorded: TERM, then KILL whatever
# is still there 10 s later (sagad lets its sagas in flight end first).
stop_demo() {
	[ -d "$DEMO_DIR" ] || { echo "nothing running"; return 0; }
	local f pid pids=() i
	for f in "$DEMO_DIR"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		[ -n "$pid" ] || continue
		if kill -TERM "$pid" 2>/dev/null; then
			echo "stopped $(basename "$f" .pid) ($pid)"
			pids+=("$pid")
		fi
	done
	for pid in "${pids[@]}"; do
		for i in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null && echo "killed $pid, which outlived SIGTERM by 10 s"
	done
	# The Erlang port mapper a demo on RabbitMQ started on its own port.
	[ -f "$DEMO_DIR/epmd.port" ] &&
		epmd -port "$(cat "$DEMO_DIR/epmd.port")" -kill >/dev/null 2>&1
	rm -rf "$DEMO_DIR"
}

# spawn NAME COMMAND...: runs it in the background, its output in
# $DEMO_DIR/NAME.log and its pid in $DEMO_DIR/NAME.pid, for stop_demo.
spawn() {
	local name=$1; shift
	"$@" >"$DEMO_DIR/$name.log" 2>&1 &
	echo $! >"$DEMO_DIR/$name.pid"
}

# saga_state ID: the state Get answers, without its prefix: COMPLETED...
saga_state() {
	# sagactl exits 1 for a compensated saga: only its JSON counts here.
	{ $CTL --json get "$1" || true; } | /usr/bin/python3 -c \
	    'import json, sys; print(json.load(sys.stdin).get("state", "?").replace("STATE_", ""))'
}

# expect_state ID STATE: says so, and fails the demo when it is not.
expect_state() {
	local got
	got=$(saga_state "$1") || got="(no answer)"
	if [ "$got" != "$2" ]; then
		printf '\033[1;31mFAIL: saga %s is %s, expected %s\033[0m\n' "$1" "$got" "$2"
		exit 1
	fi
	printf '\033[32m    ok: %s is %s\033[0m\n' "$1" "$2"
}

# On a failure: the logs, then stop everything demo started.
demo_exit() {
	local rc=$? f
	[ "$rc" -eq 0 ] && return 0
	printf '\033[1;31m==> the demo failed (exit %s); the logs:\033[0m\n' "$rc"
	for f in "$DEMO_DIR"/*.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last 20 lines)"; tail -n 20 "$f"
	done
	stop_demo
	exit "$rc"
}

# run_saga TITLE STATE SAGACTL-ARGS...: shows the command, runs it (its
# timeline is sagactl's own output) and checks where the saga ended.
run_saga() {
	local title=$1 want=$2 id; shift 2
	say "$title"
	echo "    \$ sagactl run $*"
	$CTL run "$@" || true
	id=$2	# every call below starts with --id ID
	expect_state "$id" "$want"
}

demo() {
	build
	local t0=$SECONDS
	# shellcheck source=t/lib.sh
	. "$TOP/t/lib.sh"
	stop_demo >/dev/null
	mkdir -p "$DEMO_DIR/nats" "$DEMO_DIR/redis" "$DEMO_DIR/callbacks"
	trap demo_exit EXIT
	local nats_port redis_port sagad_port order_port payment_port cb_port i cb
	local queue=${QUEUE:-nats} queue_sed
	nats_port=$(free_port); redis_port=$(free_port); sagad_port=$(free_port)
	order_port=$(free_port); payment_port=$(free_port)

	case $queue in
	nats)
		say "starting nats-server -js on 127.0.0.1:$nats_port"
		spawn nats-server nats-server -js -a 127.0.0.1 -p "$nats_port" \
			-sd "$DEMO_DIR/nats"
		queue_sed="s|nats://127.0.0.1:4222|nats://127.0.0.1:$nats_port|"
		;;
	rabbitmq)
		say "starting rabbitmq-server (a node of its own in $DEMO_DIR/rabbitmq; Erlang takes seconds)"
		LIB_TMP=$DEMO_DIR LIB_PIDS=() LIB_HOOKS=()
		start_rabbitmq
		echo "$RABBITMQ_PID" >"$DEMO_DIR/rabbitmq-server.pid"
		echo "$RABBITMQ_EPMD_PORT" >"$DEMO_DIR/epmd.port"
		nats_port=$RABBITMQ_PORT
		queue_sed="s|^#queue = \"rabbitmq\";|queue = \"rabbitmq\";|; s|^#rabbitmq = { url = \"amqp://sagad:secret@127.0.0.1:5672/saga\";|rabbitmq = { url = \"$RABBITMQ_URL\";|; s|^#             queue_type|             queue_type|"
		;;
	*)
		echo "QUEUE=$queue: expected nats or rabbitmq" >&2
		exit 2
		;;
	esac
	say "starting redis-server on 127.0.0.1:$redis_port"
	spawn redis-server redis-server --bind 127.0.0.1 --port "$redis_port" \
		--dir "$DEMO_DIR/redis" --save '' --daemonize no
	# TLS=1: TLS end to end (issue 15), certificates of a throwaway CA.
	local part_tls=() tls_sed=() ctl_tls=""
	if [ -n "${TLS:-}" ]; then
		local pki=$DEMO_DIR/pki
		mkdir -p "$pki"
		say "TLS: a throwaway CA and a certificate for 127.0.0.1 in $pki (openssl)"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		    -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj /CN=demo-ca 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		    -keyout "$pki/s.key" -out "$pki/s.csr" -subj /CN=demo 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$pki/s.ext"
		openssl x509 -req -in "$pki/s.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
		    -CAcreateserial -out "$pki/s.pem" -days 2 -extfile "$pki/s.ext" 2>/dev/null
		part_tls=(--tls-cert "$pki/s.pem" --tls-key "$pki/s.key")
		tls_sed=(-e "s|\"127.0.0.1:$order_port\";|& tls = { ca = \"$pki/ca.pem\"; };|"
		    -e "s|\"127.0.0.1:$payment_port\";|& tls = { ca = \"$pki/ca.pem\"; };|"
		    -e "\$a tls = { cert = \"$pki/s.pem\"; key = \"$pki/s.key\"; };")
		ctl_tls="--ca $pki/ca.pem"
	fi
	say "starting the example services: order on :$order_port, payment on :$payment_port (5 ms per call)${TLS:+, over TLS}"
	spawn order examples/booking/order --listen "127.0.0.1:$order_port" --latency 5 "${part_tls[@]}"
	spawn payment examples/booking/payment --listen "127.0.0.1:$payment_port" --latency 5 "${part_tls[@]}"
	say "starting a receiver for the callbacks of async sagas (t/py/demo_receiver.py)"
	spawn receiver /usr/bin/python3 "$TOP/t/py/demo_receiver.py" \
		"$DEMO_DIR/receiver.port" "$DEMO_DIR/callbacks"
	wait_port "$nats_port"; wait_port "$redis_port"
	wait_port "$order_port"; wait_port "$payment_port"
	for i in $(seq 100); do
		[ -s "$DEMO_DIR/receiver.port" ] && break
		sleep 0.1
	done
	cb_port=$(cat "$DEMO_DIR/receiver.port")
	wait_port "$cb_port"

	sed -e "s|^listen = .*|listen = \"127.0.0.1:$sagad_port\";|" \
	    -e "$queue_sed" \
	    -e "s|port = 6379;|port = $redis_port;|" \
	    -e "s|127.0.0.1:50051|127.0.0.1:$order_port|" \
	    -e "s|127.0.0.1:50052|127.0.0.1:$payment_port|" \
	    -e "s|allow = \[ \"127.0.0.1\",|allow = [ \"127.0.0.1:$cb_port\",|" \
	    "${tls_sed[@]}" etc/sagad.conf >"$DEMO_DIR/sagad.conf"
	say "checking the configuration: sagad -t -c $DEMO_DIR/sagad.conf"
	./sagad -t -c "$DEMO_DIR/sagad.conf"
	say "starting sagad on 127.0.0.1:$sagad_port"
	export SAGAD_WORKER="$TOP/sagad-worker"
	spawn sagad ./sagad -d \
		-c "$DEMO_DIR/sagad.conf" -p "$DEMO_DIR/sagad.pidfile" -P demo
	wait_port "$sagad_port"
	CTL="./sagactl -s 127.0.0.1:$sagad_port $ctl_tls"
	for i in $(seq 50); do
		[ "$($CTL health 2>/dev/null)" = SERVING ] && break
		sleep 0.2
	done
	say "the processes: sagad's master, and its workers for the steps of the async and throttling flows"
	ps -o pid,ppid,rss,args --ppid "$(cat "$DEMO_DIR/sagad.pid")" \
		-p "$(cat "$DEMO_DIR/sagad.pid")"
	echo
	say "sagactl health"
	$CTL health
	say "sagactl flows"
	$CTL flows
	echo

	run_saga "1. a sync booking: Run answers when the saga has ended" \
		COMPLETED --id demo-sync-1 Booking amount=42
	run_saga "2. a sync booking whose payment fails: the started steps are compensated, last first" \
		COMPENSATED --id demo-rollback-1 Booking amount=42 fault=payment
	say "   its events in order: sagactl watch demo-rollback-1"
	$CTL watch demo-rollback-1 || true
	run_saga "3. a payment unavailable twice, then up: retried with backoff" \
		COMPLETED --id demo-retry-1 Booking amount=7 flaky=payment:2

	cb="http://127.0.0.1:$cb_port/bookings"
	say "4. an async booking: Run answers PENDING once the saga is queued in JetStream;"
	say "   workers run its steps and POST its end to the callback_url"
	echo "    \$ sagactl run --id demo-async-1 --callback $cb AsyncBooking amount=99"
	$CTL run --id demo-async-1 --callback "$cb" AsyncBooking amount=99 || true
	say "   its events until it ends: sagactl watch demo-async-1"
	$CTL watch demo-async-1 || true
	expect_state demo-async-1 COMPLETED
	say "   sagactl get demo-async-1"
	$CTL get demo-async-1 || true
	say "   what the callback receiver got"
	for i in $(seq 150); do
		[ -f "$DEMO_DIR/callbacks/demo-async-1.json" ] && break
		sleep 0.1
	done
	if [ ! -f "$DEMO_DIR/callbacks/demo-async-1.json" ]; then
		printf '\033[1;31mFAIL: no callback for demo-async-1 after 15 s\033[0m\n'
		exit 1
	fi
	sed 's/^/    /' "$DEMO_DIR/callbacks/demo-async-1.json"
	echo "    (protobuf's JSON mapping: context values are bytes, so base64)"
	printf '\033[32m    ok: the callback of demo-async-1 arrived\033[0m\n'

	run_saga "5. a throttling booking: the call is held until the saga ends, and this pod's workers bound the calls each service gets at once" \
		COMPLETED --id demo-throttle-1 ThrottlingBooking amount=5
	run_saga "6. a throttling booking whose order fails: only the failed step is undone" \
		COMPENSATED --id demo-throttle-2 ThrottlingBooking amount=5 fault=order

	trap - EXIT
	say "every saga ended as expected; the demo took $((SECONDS - t0)) s after the build"
	cat <<EOF

The stack keeps running. Try it yourself:
  export SAGAD_SERVER=127.0.0.1:$sagad_port
  ./sagactl run Booking amount=10
  ./sagactl run Booking amount=10 fault=order            # the first step fails
  ./sagactl run Booking flaky=payment:5                  # retries spent: rolled back
  ./sagactl run --wait --callback $cb AsyncBooking amount=3   # follows it to its end
  ./sagactl run ThrottlingBooking delay=payment:1500    # over payment's 500 ms timeout
  ./sagactl get demo-rollback-1; ./sagactl watch demo-async-1
  ./sagactl --json get demo-sync-1
  ./sagactl list --state COMPENSATED                     # the operator's view
  ./sagactl run --id slow-1 Booking delay=order:1900 & sleep 0.5; ./sagactl cancel slow-1 not wanted
  ./sagactl bench Booking -r 200 -d 5s --plot /tmp/booking.svg
Callbacks land in $DEMO_DIR/callbacks, logs in $DEMO_DIR.
./run.sh stop stops everything.
EOF
	[ -z "$ctl_tls" ] || echo "TLS: sagad and the services speak TLS only; give sagactl $ctl_tls"
}

case "${1:-}" in
demo)	demo ;;
test)	if [ "${SANITIZE:-0}" = 1 ]; then test_asan; else test_all; fi ;;
test-asan) test_asan ;;
fuzz)	shift; fuzz_all "${1:-60}" ;;
chaos)	shift; chaos "${1:-600}" ;;
build)	build ;;
stop)	stop_demo ;;
deps)	deps ;;
*)	echo "usage: $0 demo|test|test-asan|fuzz [SECONDS]|chaos [SECONDS]|build|stop" >&2; exit 2 ;;
esac
