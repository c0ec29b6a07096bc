#!/usr/bin/env bash
# End-to-end: pre-fill a topic with a backlog, then measure `klaxon ingest`
# draining it into the lake under a memory budget.
#
#   benches/backlog.sh [POINTS] [SERIES] [FORMAT] [MEMORY_BUDGET]
#
# Prints points/s, MB/s, points/s per CPU second of the ingest process,
# peak RSS, and bytes per point on disk. Uses the release binary and the
# embedded broker (sqlite storage) on a free port; everything lives in a
# temporary directory that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

points=${1:-2000000}
series=${2:-10000}
format=${3:-json}
budget=${4:-128MiB}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/klaxon/target}"
cargo build --release --locked --quiet --bin klaxon
klaxon="$CARGO_TARGET_DIR/release/klaxon"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    { kill -9 "$pid" && wait "$pid"; } 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
brokers="127.0.0.1:$port"
(cd "$work" && exec "$klaxon" broker --listen "$brokers" --storage sqlite://broker.db) >"$work/broker.log" 2>&1 &
pids+=($!)
sleep 2

cat >"$work/klaxon.toml" <<TOML
[[sources]]
topic = "bench"
format = "$format"
[ingest]
memory_budget = "$budget"
flush_interval = "2s"
TOML

echo "pre-filling $points $format points over $series series..." >&2
"$klaxon" --config "$work/klaxon.toml" produce --brokers "$brokers" --topic bench \
  --format "$format" --count "$points" --series "$series" --points-per-record 100 2>/dev/null
input_bytes=$(du -sb "$work/broker.db"* | awk '{s+=$1} END {print s}')

start=$(date +%s.%N)
"$klaxon" --config "$work/klaxon.toml" ingest --brokers "$brokers" --lake "$work/lake" \
  --http-listen 127.0.0.1:0 >"$work/ingest.log" 2>&1 &
ingest=$!
pids+=($ingest)

count() {
  "$klaxon" query --lake "$work/lake" --format csv "SELECT count(*) FROM metrics" 2>/dev/null | tail -1
}
peak_kb=0
while :; do
  rss=$(awk '/VmHWM/ {print $2}' /proc/$ingest/status 2>/dev/null || echo 0)
  [ "$rss" -gt "$peak_kb" ] && peak_kb=$rss
  if [ -d "$work/lake/metrics" ] && [ "$(count)" = "$points" ]; then break; fi
  sleep 0.5
done
end=$(date +%s.%N)
read -r utime stime < <(awk '{print $14, $15}' /proc/$ingest/stat)
ticks=$(getconf CLK_TCK)
lake_bytes=$(du -sb "$work/lake/metrics" | awk '{print $1}')

python3 - "$points" "$start" "$end" "$utime" "$stime" "$ticks" "$peak_kb" "$lake_bytes" "$input_bytes" "$format" "$series" "$budget" <<'PY'
import sys
points, start, end, ut, st, tck, peak_kb, lake, inp = (float(x) for x in sys.argv[1:10])
fmt, series, budget = sys.argv[10:13]
secs = end - start
cpu = (ut + st) / tck
rows = [
    ("points", f"{points:,.0f} ({fmt}, {series} series)"),
    ("drain time", f"{secs:.1f} s"),
    ("points/s", f"{points / secs:,.0f}"),
    ("input MB/s (broker storage)", f"{inp / secs / 1e6:.1f}"),
    ("CPU seconds (user+sys)", f"{cpu:.1f}"),
    ("points/s per CPU second", f"{points / cpu:,.0f}"),
    ("peak RSS", f"{peak_kb / 1024:.0f} MiB (budget {budget})"),
    ("bytes per point on disk", f"{lake / points:.2f}"),
]
w = max(len(k) for k, _ in rows)
print(f"| {'measure'.ljust(w)} | value |")
print(f"| {'-' * w} | ----- |")
for k, v in rows:
    print(f"| {k.ljust(w)} | {v} |")
PY
