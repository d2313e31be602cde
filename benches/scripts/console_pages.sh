#!/bin/bash
# The console at a million cards (docs/benchmarks.md). Run from the workspace root after
# `cargo build --release -p switch -p terminal-sim -p settlement` and
# `benches/scripts/operator_api.sh DIR base 1000000 10000` (the network, its keys and token):
#
#   benches/scripts/console_pages.sh DIR setup [SECONDS] [RATE]
#   benches/scripts/console_pages.sh DIR time [N] [PAGES]
#
# `setup` copies DIR/base.db to DIR/console.db (the base stays as operator_api.sh left it),
# adds a console operator (its password in DIR/console-password) and gives the pages something
# to show, through a release `lsw-switch serve`: SECONDS (default 60) of purchases, confirms and
# reversals from `lsw-sim load` at RATE pairs a second (default 0: as fast as the switch
# answers), all today; a manual adjustment for every merchant, dated three days ago, and the
# latest due settlement cycle closed by `lsw-settle run`, which takes them, so the cycle has
# one line per merchant (today's purchases are after its cutoff); a survey for one merchant and
# a campaign over every member.
# `time` serves DIR/console.db, waits WARMUP seconds (default 30) for the switch's start-up
# passes, times each page N times (default 50) with console_pages.py, one JSON line per page
# (PAGES, a regular expression, picks pages by name), and prints from the switch's log how long
# each figure computed off the request took.
set -eu
DIR=$1; MODE=$2
BIN=${BIN:-$PWD/target/release}
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$DIR"
read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
export LSW_DATABASE_URL=sqlite://console.db
ADMIN=127.0.0.1:5880
TOKEN=$(cat token)
serve() {
  "$BIN/lsw-switch" serve > "serve-console-$1.log" 2>&1 & SWITCH=$!
  trap 'kill -TERM $SWITCH 2>/dev/null; wait $SWITCH 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do curl -sf http://$ADMIN/readyz >/dev/null && return 0; sleep 0.2; done
  echo "the switch did not become ready" >&2; exit 1
}
api() {
  curl -sf -o /dev/null -w '%{http_code}\n' -X "$1" "http://$ADMIN$2" \
    -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$3" >&2
}
case "$MODE" in
setup)
  SECS=${3:-60}; RATE=${4:-0}
  rm -f console.db console.db-wal console.db-shm
  rm -rf console.db.journal settlement-out
  cp base.db console.db
  [ -f base.db-wal ] && cp base.db-wal console.db-wal
  openssl rand -hex 12 > console-password
  LSW_OPERATOR_PASSWORD=$(cat console-password) \
    "$BIN/lsw-switch" operator add console-bench --role write > /dev/null
  serve setup
  "$BIN/lsw-sim" load --addr 127.0.0.1:5800 --fixture network.json --connections 8 --depth 4 \
    --rate "$RATE" --seconds "$SECS" --seed 7 --reversal-percent 5 --json > console-load.json
  python3 -c 'import json; r = json.load(open("console-load.json")); print("load:", r["pairs"], "pairs,", round(r["pairs_per_second"]), "a second")' >&2
  python3 - <<'EOF'
import sqlite3, time
db = sqlite3.connect("console.db", timeout=60)
then = int(time.time() * 1000) - 3 * 86_400_000
db.execute("INSERT INTO settlement_adjustments (merchant_id, amount_rials, reason, source, created_at_ms) "
           "SELECT id, 1000 + id % 5000, 'bench', 'manual', ? FROM merchants", (then,))
db.commit()
EOF
  "$BIN/lsw-settle" --out settlement-out run >&2
  MERCHANT=$(python3 -c 'import json; print(json.load(open("network.json"))["merchants"][0]["code"])')
  api PUT "/api/v1/merchants/$MERCHANT/survey" '{"question_fa": "راضی بودید؟", "question_en": "How was it?", "scale_min": 1, "scale_max": 5, "delay_minutes": 30, "surveys_max": 2, "period_days": 30}'
  api PUT /api/v1/segments/ALL '{"name": "Everyone", "expression": {"all": []}}'
  TODAY=$(TZ=Asia/Tehran date +%F); LATER=$(TZ=Asia/Tehran date -d '+7 days' +%F)
  api PUT /api/v1/occasions/BENCH "{\"name\": \"Bench week\", \"starts_on\": \"$TODAY\", \"ends_on\": \"$LATER\"}"
  api PUT /api/v1/campaigns/BENCH '{"name": "Bench", "segment": "ALL", "occasion": {"kind": "event", "code": "BENCH"}, "coupon": {"fixed_rials": 50000, "valid_days": 30}}'
  ;;
time)
  N=${3:-50}; PAGES=${4:-.}
  serve time
  # The switch's start-up passes over a million members run after /readyz: let them finish.
  sleep "${WARMUP:-30}"
  python3 "$HERE/console_pages.py" "$ADMIN" console-bench "$(cat console-password)" network.json \
    "$TOKEN" "$N" "$PAGES"
  # How long the figures computed off the request took (the switch's log).
  grep -a 'console: computed' serve-console-time.log | sed 's/^.*figures=/figures=/' >&2 || true
  ;;
*) echo "mode: setup or time" >&2; exit 2 ;;
esac
