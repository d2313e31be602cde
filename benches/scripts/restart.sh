#!/bin/bash
# Restart at scale: how long a release `lsw-switch serve` takes from its exec to `/readyz`
# answering 200 and to its terminal port accepting, with a million cards and 100 000 pending
# holds (docs/benchmarks.md, "Restart"). Run from the workspace root after
# `cargo build --release -p switch -p terminal-sim`:
#
#   benches/scripts/restart.sh DIR base CARDS MERCHANTS HOLDS   # network, import, holds
#   benches/scripts/restart.sh DIR run RUNS BIN [BIN...]        # RUNS restarts of each BIN
#
# `base` makes DIR/base.db with benches/scripts/operator_api.sh (CARDS cards, MERCHANTS
# merchants, one terminal each, keys in DIR/keys), then starts the switch with a hold timeout
# of 30 days and drives it with `lsw-sim load --abandon-percent 100`: every approved purchase
# is left unconfirmed, so each one is a pending hold (its transaction row, its answered
# message, the held amount on the card's balance) until the timeout. It loads at 2 000
# purchases/s until HOLDS transactions are pending, then stops the switch with SIGTERM (which
# projects the journal). Runs must follow `base` within 24 hours: the answered messages of the
# holds are what the switch loads as its retransmission window (docs/protocol.md section 7), and
# only the last 24 hours of them are loaded.
#
# `run` copies base.db to run.db before each start (so the start-up jobs of one run do not
# change what the next loads; the copy leaves the file in the page cache, as a restart finds
# it), execs BIN/lsw-switch serve, polls the terminal port and `/readyz` every 10 ms, then
# stops the switch with SIGTERM. The binaries alternate run by run. It prints one line per run
# (seconds to the port accepting and to ready, and each start-up phase from the switch's log)
# and, per binary, the median, min and max over the runs. A run during which the poller itself
# was held up for a second (the machine stopped or starved it) is printed but not counted, and
# the rounds go on until each binary has RUNS counted runs.
#
# The switch listens on LSW_LISTEN and LSW_ADMIN_LISTEN (default 127.0.0.1:5800 and :5880);
# set both to run beside another switch.
set -eu
DIR=$1; MODE=$2
export LSW_LISTEN=${LSW_LISTEN:-127.0.0.1:5800} LSW_ADMIN_LISTEN=${LSW_ADMIN_LISTEN:-127.0.0.1:5880}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$PWD
case "$MODE" in
base)
  CARDS=$3; MERCHANTS=$4; HOLDS=$5
  BIN=${BIN:-$ROOT/target/release}
  BIN=$BIN "$HERE/operator_api.sh" "$DIR" base "$CARDS" "$MERCHANTS"
  cd "$DIR"
  read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
  export LSW_DATABASE_URL=sqlite://base.db LSW_HOLD_TIMEOUT_MS=2592000000
  "$BIN/lsw-switch" serve > holds.log 2>&1 & SWITCH=$!
  for _ in $(seq 1 600); do curl -sf --noproxy "*" "http://$LSW_ADMIN_LISTEN/readyz" >/dev/null && break; sleep 0.2; done
  pending() { sqlite3 base.db "SELECT COUNT(*) FROM transactions WHERE state = 'pending'"; }
  SEED=1
  while [ "$(pending)" -lt "$HOLDS" ]; do
    LEFT=$((HOLDS - $(pending)))
    "$BIN/lsw-sim" load --addr "$LSW_LISTEN" --fixture network.json --connections 8 \
      --depth 4 --rate 2000 --seconds $((LEFT / 2000 + 1)) --abandon-percent 100 \
      --seed $SEED --json > holds-load-$SEED.json
    SEED=$((SEED + 1))
    sleep 2  # the projection catches up before the count
  done
  kill -TERM $SWITCH; wait $SWITCH || true
  rm -rf base.db.journal
  echo "pending holds: $(pending); transactions: $(sqlite3 base.db 'SELECT COUNT(*) FROM transactions')"
  ;;
run)
  RUNS=$3; shift 3
  cd "$DIR"
  read -r LSW_KEK LSW_PAN_TOKEN_KEY < keys; export LSW_KEK LSW_PAN_TOKEN_KEY
  export LSW_DATABASE_URL=sqlite://run.db
  python3 - "$RUNS" "$@" <<'PY'
import os, re, shutil, signal, socket, statistics, subprocess, sys, time, urllib.request

runs, bins = int(sys.argv[1]), sys.argv[2:]
terminal = os.environ["LSW_LISTEN"].rsplit(":", 1)
admin = os.environ["LSW_ADMIN_LISTEN"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PHASES = ["store opened and migrated", "reference data read", "snapshot built",
          "journal recovered", "ledger state read", "state loaded"]

def up():
    try:
        socket.create_connection((terminal[0], int(terminal[1])), timeout=0.05).close()
        return True
    except OSError:
        return False

def ready():
    try:
        with NO_PROXY.open(f"http://{admin}/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False

def phases(log):
    out = {}
    for line in open(log, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        for phase in PHASES:
            if phase in line:
                m = re.search(r'\bms[=":]+(\d+)', line)
                if m:
                    out[phase] = int(m.group(1)) / 1000
    return out

stalled = [False]

def once(binary, n):
    for suffix in ["", "-wal", "-shm"]:
        if os.path.exists("run.db" + suffix):
            os.remove("run.db" + suffix)
        if os.path.exists("base.db" + suffix):
            shutil.copyfile("base.db" + suffix, "run.db" + suffix)
    shutil.rmtree("run.db.journal", ignore_errors=True)
    log = f"restart-{n}.log"
    began = time.monotonic()
    proc = subprocess.Popen([os.path.join(binary, "lsw-switch"), "serve"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    port = ok = None
    last = began
    while ok is None:
        if proc.poll() is not None:
            sys.exit(f"the switch exited with {proc.returncode}; see {log}")
        now = time.monotonic() - began
        if time.monotonic() - last > 1.0:
            stalled[0] = True  # this poller was held up a second: the machine stopped us
        last = time.monotonic()
        if port is None and up():
            port = now
        if ready():
            ok = time.monotonic() - began
        elif now > 300:
            sys.exit("not ready in 300 s")
        else:
            time.sleep(0.01)
    if port is None:
        port = ok
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    return port, ok, phases(log)

results = {b: [] for b in bins}
n = 0
while min(len(r) for r in results.values()) < runs:
    for binary in bins:
        stalled[0] = False
        port, ok, ph = once(binary, n)
        n += 1
        note = " (stalled: not counted)" if stalled[0] else ""
        if not stalled[0]:
            results[binary].append((port, ok, ph))
        print(f"{binary}: port {port:.2f} s, ready {ok:.2f} s; " +
              ", ".join(f"{k} {v:.2f}" for k, v in ph.items()) + note, flush=True)
for binary, rs in results.items():
    for i, name in [(0, "port accepting"), (1, "ready")]:
        xs = [r[i] for r in rs]
        print(f"{binary}: {name}: median {statistics.median(xs):.2f} s, "
              f"min {min(xs):.2f}, max {max(xs):.2f} over {len(xs)} runs")
    for phase in PHASES:
        xs = [r[2][phase] for r in rs if phase in r[2]]
        if xs:
            print(f"{binary}:   {phase}: median {statistics.median(xs):.2f} s")
PY
  ;;
*) echo "mode: base or run" >&2; exit 2 ;;
esac
