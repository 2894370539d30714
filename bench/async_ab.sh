#!/usr/bin/env bash
# bench/async_ab.sh - two builds of sagad side by side: bench/async.sh with
# PROFILE=1 run on each, without and with a callback_url (CALLBACK=1), the
# builds interleaved in each of ROUNDS rounds, then the median of each
# figure per build and case. Not a test: its table goes in bench/RESULTS.md.
#
#   [ROUNDS=3] [RATE=3000] [DUR=10s] [CASES="plain callback"]
#   bench/async_ab.sh OLD_BUILD_DIR NEW_BUILD_DIR [OUT_DIR]
#
# Each BUILD_DIR holds sagad, sagad-worker, sagactl and
# examples/booking/{order,payment}; give both the same sagactl (the load
# generator: --callback is needed for CALLBACK=1) and participants.
# Figures per run: throttling closed loop (sagas/s), async: every accepted
# saga ended (sagas/s overall), the steady state while Runs arrived, and CPU
# microseconds per async saga in all and per process (the workers summed,
# nats-server, redis-server, the master).
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
OLD=$(cd "$1" && pwd)
NEW=$(cd "$2" && pwd)
OUT=${3:-$(mktemp -d /tmp/async_ab.XXXXXX)}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-plain callback}
export RATE=${RATE:-3000} DUR=${DUR:-10s} PROFILE=1
mkdir -p "$OUT"
echo "# bench/async_ab.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), RATE=$RATE DUR=$DUR, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	for c in $CASES; do
		for b in old new; do
			dir=$OLD; [ "$b" = new ] && dir=$NEW
			cb=""; [ "$c" = callback ] && cb=1
			f=$OUT/$b.$c.$r.txt
			CALLBACK=$cb "$top_srcdir/bench/async.sh" "$dir" >"$f" 2>&1 || true
			echo "round $r $c $b: $(grep -m1 'in all:' "$f" || echo 'no figures') (load $(cut -d' ' -f1 /proc/loadavg))"
		done
	done
done
# One line of figures per run: case build thr async steady cpu workers nats redis master
for f in "$OUT"/*.txt; do
	n=${f##*/}; b=${n%%.*}; c=${n#*.}; c=${c%%.*}
	awk -v b="$b" -v c="$c" '
		/^Requests/ { req++; if (req == 1) thr = $NF + 0 }
		/sagas\/s overall/ { for (i = 1; i <= NF; i++) if ($i == "sagas/s") all = $(i - 1) }
		/completed while Runs arrived/ { for (i = 1; i <= NF; i++) if ($i == "sagas/s") st = $(i - 1) }
		/in all:/ { for (i = 1; i <= NF; i++) if ($i == "us") cpu = $(i - 1) }
		/ s  sagad: worker / { w += $1 }
		/ s  nats-server / { nats += $1 }
		/ s  redis-server / { redis += $1 }
		/ s  sagad: master/ { m += $1 }
		/accepted sagas completed/ { n = $2 }
		END { if (n > 0) printf "%s %s %.0f %s %s %s %.0f %.0f %.0f %.0f\n", c, b, thr, all, st, cpu,
			w * 1e6 / n, nats * 1e6 / n, redis * 1e6 / n, m * 1e6 / n }' "$f"
done >"$OUT/figures.txt"
echo
echo "| case | build | throttling closed loop, sagas/s | async, all ended, sagas/s | async steady state, sagas/s | CPU us/saga | workers | nats-server | redis | master |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for c in $CASES; do
	for b in old new; do
		awk -v b="$b" -v c="$c" '$1 == c && $2 == b' "$OUT/figures.txt" |
		python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
if rows:
    med = [statistics.median(float(r[i]) for r in rows) for i in range(2, 10)]
    print("| %s | %s | " % (rows[0][0], rows[0][1]) + " | ".join("%.0f" % m for m in med) + " |")
'
	done
done
echo
echo "medians of $ROUNDS interleaved rounds; runs: $OUT"
