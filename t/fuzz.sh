#!/bin/bash
# t/fuzz.sh - replays every fuzz target's corpus (t/fuzz-corpus/TARGET)
# through the target, built with the ordinary toolchain (t/fuzz/replay.c):
# each input must run to its end without a crash, and, in the
# --enable-sanitizers build, without an ASan or UBSan report.
# ./run.sh fuzz [SECONDS] runs the same targets under libFuzzer.

. "$top_srcdir/t/lib.sh"
lib_init

for n in server client proto store config; do
	bin=$top_builddir/t/fuzz/replay_$n
	[ -x "$bin" ] || fail "build first: $bin"
	out=$("$bin" "$top_srcdir/t/fuzz-corpus/$n" 2>&1) ||
		{ echo "$out" | tail -30; fail "fuzz target $n"; }
	pass "fuzz target $n: $(echo "$out" | tail -1)"
done
