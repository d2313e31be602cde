#!/bin/bash
# Member engagement's cost to the switch under load (docs/campaigns.md, "What it costs the
# switch"). Run from the workspace root after `cargo build --release -p switch -p terminal-sim`:
#
#   benches/scripts/engagement_load.sh DIR base [SECONDS]       # a network and its history
#   benches/scripts/engagement_load.sh DIR idle|busy SECONDS [RATE]
#
# `base` provisions 64 merchants and 10 000 cards in DIR/base.db and runs a load on it (40 s by
# default) so the transactions table has a history. Each run copies base.db, starts the switch
# and drives it with `lsw-sim load` (32 connections x 8 deep; RATE pairs/s, or as fast as it
# goes). `busy` runs the engagement job every 10 s (six times the default) and, through the
# operator API, defines two rule tags, a segment over them, reminders at 16 merchants and,
# 3 s into the load, a campaign with a coupon and an SMS for the segment's members (about
# 10 000). Prints pairs/s and p99 per message type; for `busy`, what the job wrote.
# Alternate idle and busy runs: the machine's noise is as large as what is measured.
set -eu
DIR=$1; MODE=$2
BIN=${BIN:-$PWD/target/release}
mkdir -p "$DIR"; cd "$DIR"
[ -f keys ] || echo "$(openssl rand -hex 32) $(openssl rand -hex 32)" > keys
read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
ADMIN=http://127.0.0.1:5880
wait_ready() {
  for _ in $(seq 1 100); do curl -sf $ADMIN/readyz >/dev/null && return 0; sleep 0.2; done
  echo "the switch did not become ready" >&2; exit 1
}
if [ "$MODE" = base ]; then
  rm -f base.db base.db-wal base.db-shm
  export LSW_DATABASE_URL=sqlite://base.db
  "$BIN/lsw-sim" network --merchants 64 --cards 10000 > network.json
  "$BIN/lsw-switch" import network.json >/dev/null
  "$BIN/lsw-switch" token add bench --role write > token
  "$BIN/lsw-switch" serve > base.log 2>&1 & SWITCH=$!; wait_ready
  "$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --seconds "${3:-40}" >/dev/null 2>&1
  kill -TERM $SWITCH; wait $SWITCH
  exit 0
fi
SECONDS_RUN=$3; RATE=${4:-0}
rm -f run.db run.db-wal run.db-shm
for f in base.db*; do cp "$f" "run${f#base}"; done
export LSW_DATABASE_URL=sqlite://run.db
[ "$MODE" = busy ] && export LSW_ENGAGEMENT_EVERY_MS=10000
"$BIN/lsw-switch" serve > "run-$MODE.log" 2>&1 & SWITCH=$!; wait_ready
api() {
  curl -sf -X "$1" -H "Authorization: Bearer $(cat token)" -H 'content-type: application/json' \
    "$ADMIN/api/v1/$2" --data "$3" >/dev/null || echo "PUT $2 failed" >&2
}
if [ "$MODE" = busy ]; then
  TODAY=$(TZ=Asia/Tehran date +%F); END=$(TZ=Asia/Tehran date -d tomorrow +%F)
  api PUT tags/MARKET1 '{"name":"bought at market 1","rule":{"bought_at":{"merchant":"M-00001","days":30}}}'
  api PUT tags/CLUB '{"name":"used club","rule":{"used_club":{"days":90}}}'
  api PUT segments/CLUBBERS '{"name":"club users","expression":{"any":[{"tag":"CLUB"},{"tag":"MARKET1"}]}}'
  for m in $(seq -f 'M-%05g' 0 15); do
    api PUT "merchants/$m/reminder" '{"days":1,"period_days":30,"text_fa":"سلام","text_en":"hello","active":true}'
  done
  ( sleep 3; api PUT campaigns/WEEK "{\"name\":\"week\",\"segment\":\"CLUBBERS\",\"starts_on\":\"$TODAY\",\"ends_on\":\"$END\",\"coupon\":{\"fixed_rials\":50000,\"valid_days\":30},\"sms_en\":\"50,000 rials off\"}" ) &
fi
"$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --seconds "$SECONDS_RUN" \
  --rate "$RATE" --json > "load-$MODE.json" 2>/dev/null
python3 - "$MODE" "load-$MODE.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
l = r["latency"]
print(sys.argv[1], round(r["pairs_per_second"]), "pairs/s;",
      "; ".join(f"{m} p99 {l[m]['p99_us'] // 1000} ms p99.9 {l[m]['p999_us'] // 1000} ms"
                for m in sorted(l)), "; errors", r["errors"])
PY
if [ "$MODE" = busy ]; then
  sqlite3 run.db "SELECT 'campaign ' || state || ', members reached ' || \
    (SELECT COUNT(*) FROM campaign_members) || ', coupons ' || \
    (SELECT COUNT(*) FROM coupons WHERE kind = 'campaign') || ', tags ' || \
    (SELECT COUNT(*) FROM member_tags) FROM campaigns"
fi
kill -TERM $SWITCH; wait $SWITCH
