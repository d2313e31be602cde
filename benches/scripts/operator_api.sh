#!/bin/bash
# Operators at scale (docs/operator-api.md, "At a million cards"). Run from the workspace root
# after `cargo build --release -p switch -p terminal-sim`:
#
#   benches/scripts/operator_api.sh DIR base CARDS MERCHANTS   # network, import (timed), token
#   benches/scripts/operator_api.sh DIR latency [N]            # N calls of each kind, p50/p99/max
#   benches/scripts/operator_api.sh DIR terminals SECONDS RATE # lsw-sim load quiet, then with
#                                                              # 10 card changes a second
#
# `terminals` starts one switch, warms it up for 20 s, then alternates a quiet and a busy phase
# of the same load twice, printing each phase's report beside the changes' own latencies.
set -eu
DIR=$1; MODE=$2
BIN=${BIN:-$PWD/target/release}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$DIR"; cd "$DIR"
[ -f keys ] || echo "$(openssl rand -hex 32) $(openssl rand -hex 32)" > keys
read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
export LSW_DATABASE_URL=sqlite://base.db
ADMIN=http://127.0.0.1:5880
wait_ready() {
  for _ in $(seq 1 600); do curl -sf $ADMIN/readyz >/dev/null && return 0; sleep 0.2; done
  echo "the switch did not become ready" >&2; exit 1
}
serve() { "$BIN/lsw-switch" serve > "serve-$1.log" 2>&1 & SWITCH=$!; wait_ready; }
stop() { kill -TERM $SWITCH; wait $SWITCH || true; }
case "$MODE" in
base)
  rm -f base.db base.db-wal base.db-shm
  "$BIN/lsw-sim" network --merchants "$4" --terminals-per-merchant 1 --cards "$3" > network.json
  /usr/bin/time -f "import: %e s, %M KiB max resident" "$BIN/lsw-switch" import network.json
  "$BIN/lsw-switch" token add bench --role write > token
  ;;
latency)
  serve latency
  python3 "$HERE/operator_calls.py" latency network.json "$(cat token)" "${3:-200}"
  stop
  ;;
terminals)
  # One switch throughout: its start-up jobs (the loyalty and engagement passes over a million
  # members) run during a warm-up load, then quiet and busy phases alternate in one run.
  SECS=$3; RATE=$4
  serve terminals
  load() {
    "$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --connections 8 --depth 1 \
      --rate "$RATE" --seconds "$1" --seed "$2" --json
  }
  load 20 100 > /dev/null
  for round in 1 2; do
    echo "round $round quiet: $(load "$SECS" "${round}1")"
    python3 "$HERE/operator_calls.py" churn network.json "$(cat token)" "$SECS" 10 > churn.json &
    CHURN=$!
    echo "round $round busy: $(load "$SECS" "${round}2")"
    wait $CHURN; echo "round $round changes: $(cat churn.json)"
  done
  stop
  ;;
*) echo "mode: base, latency or terminals" >&2; exit 2 ;;
esac
