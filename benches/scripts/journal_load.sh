#!/bin/bash
# Durable request+confirm pairs per second and latency per message, release switch on SQLite,
# the load generator on the same two cores (docs/benchmarks.md, "The journal"). Run from the
# workspace root after `cargo build --release -p switch -p terminal-sim`:
#
#   benches/scripts/journal_load.sh DIR base [BIN]               # network and a short history
#   benches/scripts/journal_load.sh DIR run BIN SECONDS [RATE]   # one measured run
#
# `base` provisions 64 merchants and 10 000 cards in DIR/base.db with the binaries in BIN
# (default target/release) and runs a 10 s load so the tables have a history. Build `base` with
# the OLDEST binary you compare: a newer switch migrates its copy forward, an older one refuses
# a database migrated past it. Each `run` copies base.db (and removes any journal), starts
# BIN/lsw-switch serve and drives it with BIN/lsw-sim load (32 connections x 8 deep) for
# SECONDS, at RATE purchases/s or as fast as it goes, then stops the switch with SIGTERM (which
# projects everything) and checks the database with `lsw-sim check`. Prints one line:
# pairs/s, p50/p99/p99.9 per message type, errors, and the check's verdict. Alternate the
# binaries run by run: the machine's noise is as large as what is compared.
set -eu
DIR=$1; MODE=$2
mkdir -p "$DIR"; cd "$DIR"
[ -f keys ] || echo "$(openssl rand -hex 32) $(openssl rand -hex 32)" > keys
read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
ADMIN=http://127.0.0.1:5880
wait_ready() {
  for _ in $(seq 1 300); do curl -sf $ADMIN/readyz >/dev/null && return 0; sleep 0.1; done
  echo "the switch did not become ready" >&2; exit 1
}
if [ "$MODE" = base ]; then
  BIN=${3:-$OLDPWD/target/release}
  rm -rf base.db base.db-wal base.db-shm base.db.journal
  export LSW_DATABASE_URL=sqlite://base.db
  "$BIN/lsw-sim" network --merchants 64 --cards 10000 > network.json
  "$BIN/lsw-switch" import network.json >/dev/null
  "$BIN/lsw-switch" serve > base.log 2>&1 & SWITCH=$!; wait_ready
  "$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --seconds 10 >/dev/null 2>&1
  kill -TERM $SWITCH; wait $SWITCH
  rm -rf base.db.journal
  exit 0
fi
BIN=$3; SECONDS_RUN=$4; RATE=${5:-0}
rm -rf run.db run.db-wal run.db-shm run.db.journal
for f in base.db base.db-wal base.db-shm; do [ -f "$f" ] && cp "$f" "run${f#base}"; done
export LSW_DATABASE_URL=sqlite://run.db
"$BIN/lsw-switch" serve > run.log 2>&1 & SWITCH=$!; wait_ready
"$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --seconds "$SECONDS_RUN" \
  --rate "$RATE" --json > load.json 2>/dev/null
kill -TERM $SWITCH; wait $SWITCH
CHECK=$("$BIN/lsw-sim" check --db run.db >/dev/null 2>&1 && echo "check green" || echo "CHECK RED")
python3 - load.json "$CHECK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print(round(r["pairs_per_second"]), "pairs/s;",
      "; ".join(f"{m} p50 {l[m]['p50_us'] / 1000:.2f} p99 {l[m]['p99_us'] / 1000:.2f} "
                f"p99.9 {l[m]['p999_us'] / 1000:.2f} ms" for m in sorted(l)),
      "; errors", r["errors"], ";", sys.argv[2])
PY
