#!/usr/bin/env python3
"""Operator API calls against a running switch, timed one by one (docs/operator-api.md).

  operator_calls.py latency FIXTURE TOKEN [N]     N calls of each kind, back to back
  operator_calls.py churn FIXTURE TOKEN SECONDS [PER_SECOND]
                                                  card blocks and unblocks at a fixed pace

Kinds timed by `latency`: a card's read, a page of the member list, a card block and its
unblock, a card issue; and, when the switch serves them, a transaction search by card and a
page of a card's history. Prints one JSON object: per kind, calls, p50, p99 and max in ms.
Card codes come from the import file (FIXTURE). Uses one keep-alive connection, as an
operator's script would. Only the standard library.
"""
import http.client
import json
import random
import sys
import time

ADMIN = ("127.0.0.1", 5880)


def cards_of(fixture):
    with open(fixture) as f:
        network = json.load(f)
    return [card["code"] for card in network["cards"]], [m["code"] for m in network["members"]]


class Api:
    def __init__(self, token):
        self.token = token
        self.conn = http.client.HTTPConnection(*ADMIN, timeout=30)

    def call(self, method, path, body=None):
        headers = {"authorization": f"Bearer {self.token}", "content-type": "application/json"}
        data = None if body is None else json.dumps(body)
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        return response.status, payload, elapsed


def summary(samples):
    samples = sorted(samples)
    if not samples:
        return None
    at = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"calls": len(samples), "p50_ms": round(at(0.5), 2), "p99_ms": round(at(0.99), 2),
            "max_ms": round(samples[-1], 2)}


def luhn(body):
    total = 0
    for i, d in enumerate(int(c) for c in reversed(body)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def expect(status, payload, ok, what):
    if status not in ok:
        sys.exit(f"{what}: {status} {payload[:200]!r}")


def latency(fixture, token, n):
    cards, members = cards_of(fixture)
    api = Api(token)
    rng = random.Random(1)
    times = {}
    def timed(kind, method, path, body=None, ok=(200,)):
        status, payload, ms = api.call(method, path, body)
        expect(status, payload, ok, f"{method} {path}")
        times.setdefault(kind, []).append(ms)
        return status, payload
    optional = api.call("GET", f"/api/v1/transactions?card={cards[0]}&limit=50")[0] == 200
    for i in range(n):
        card = rng.choice(cards)
        timed("card_read", "GET", f"/api/v1/cards/{card}")
        timed("member_list_page", "GET", f"/api/v1/members?after={rng.choice(members)}&limit=100")
        timed("card_block", "POST", f"/api/v1/cards/{card}/block")
        timed("card_unblock", "POST", f"/api/v1/cards/{card}/unblock")
        code = f"BENCH-{time.time_ns()}-{i}"
        pan = luhn("999999" + str(rng.randrange(10**9)).zfill(9))
        timed("card_issue", "POST", "/api/v1/cards",
              {"code": code, "pan": pan, "member": rng.choice(members), "expiry": "2030-12"},
              ok=(201, 409))
        if optional:
            timed("transaction_search", "GET", f"/api/v1/transactions?card={card}&limit=50")
            timed("card_history_page", "GET", f"/api/v1/cards/{card}/view?limit=50")
    print(json.dumps({kind: summary(ms) for kind, ms in times.items()}))


def churn(fixture, token, seconds, per_second):
    cards, _ = cards_of(fixture)
    api = Api(token)
    rng = random.Random(2)
    times = []
    interval = 1.0 / per_second
    next_at = time.monotonic()
    end = next_at + seconds
    blocked = []
    while time.monotonic() < end:
        # Half the changes block a card, half unblock one blocked before.
        if blocked and rng.random() < 0.5:
            status, payload, ms = api.call("POST", f"/api/v1/cards/{blocked.pop()}/unblock")
        else:
            card = rng.choice(cards)
            status, payload, ms = api.call("POST", f"/api/v1/cards/{card}/block")
            blocked.append(card)
        expect(status, payload, (200,), "change")
        times.append(ms)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    for card in blocked:
        api.call("POST", f"/api/v1/cards/{card}/unblock")
    print(json.dumps({"changes": summary(times), "per_second": per_second}))


if __name__ == "__main__":
    mode, fixture, token = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "latency":
        latency(fixture, token, int(sys.argv[4]) if len(sys.argv) > 4 else 200)
    elif mode == "churn":
        churn(fixture, token, float(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 10)
    else:
        sys.exit("mode: latency or churn")
