#!/usr/bin/env python3
"""Times the operator console's pages against a running switch (docs/benchmarks.md, "The
console at a million cards"). Run by console_pages.sh.

  console_pages.py ADMIN NAME PASSWORD FIXTURE TOKEN N [PAGES]

Signs in with NAME and PASSWORD (the sign-in form, its cookie and CSRF token), then requests
each page N times back to back on one keep-alive connection, as one operator's browser would
(the HTML only: the style sheet is one cached file). Card and member pages take a random card
or member of the import file (FIXTURE) each time; a transaction's page one of the newest
transactions (read with the API TOKEN). Before the N timed requests each page is requested
once (its time printed as `first_ms`). A page whose figures the console computes off the
request (console::computed) answers at once that they are being computed: the script asks
again every 100 ms until they are there (`computed_after_ms`: from the first request to the
page with the figures), then times the N requests, which show the kept figures. Prints one JSON object per page: status, bytes, first, p50, p99 and max in ms.
Only the standard library.
"""
import http.client
import json
import random
import re
import sys
import time
import urllib.parse

ADMIN, NAME, PASSWORD, FIXTURE, TOKEN, N = sys.argv[1:7]
N = int(N)
PAGES = re.compile(sys.argv[7] if len(sys.argv) > 7 else ".")
HOST, PORT = ADMIN.split(":")


class Browser:
    def __init__(self):
        self.conn = http.client.HTTPConnection(HOST, int(PORT), timeout=120)
        self.cookies = {}

    def request(self, method, path, form=None, token=None):
        headers = {}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if token:
            headers["authorization"] = f"Bearer {token}"
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["content-type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, int(PORT), timeout=120)
        elapsed = (time.perf_counter() - started) * 1000
        for value in response.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return response.status, payload, elapsed


def summary(samples):
    samples = sorted(samples)
    at = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"p50_ms": round(at(0.5), 2), "p99_ms": round(at(0.99), 2),
            "max_ms": round(samples[-1], 2)}


def main():
    with open(FIXTURE) as f:
        network = json.load(f)
    cards = [c["code"] for c in network["cards"]]
    members = [m["code"] for m in network["members"]]
    browser = Browser()
    status, page, _ = browser.request("GET", "/console/sign-in")
    csrf = re.search(rb'name="csrf" value="([0-9a-f]+)"', page).group(1).decode()
    status, _, _ = browser.request("POST", "/console/sign-in",
                                   {"csrf": csrf, "name": NAME, "password": PASSWORD})
    assert status == 303, f"sign-in answered {status}"
    api = Browser()
    status, body, _ = api.request("GET", "/api/v1/transactions?limit=100", token=TOKEN)
    items = json.loads(body)["items"]
    txns = [t["id"] for t in items]
    rrn = items[0]["rrn"] if items else "000000000000"
    merchant = network["merchants"][0]["code"]
    status, page, _ = browser.request("GET", "/console/settlement")
    cycle = re.search(rb'data-cycle="(\d+)"', page)
    cycle = cycle.group(1).decode() if cycle else "1"
    status, page, _ = browser.request("GET", "/console/loyalty")
    while b'id="computing"' in page:
        time.sleep(0.1)
        status, page, _ = browser.request("GET", "/console/loyalty")
    campaigns = re.findall(rb'href="/console/campaigns/([^"]+)"', page)
    pages = [
        ("dashboard", lambda: "/console"),
        ("transactions (newest page)", lambda: "/console/transactions"),
        ("transactions by RRN", lambda: f"/console/transactions?rrn={rrn}"),
        ("transactions of a merchant", lambda: f"/console/transactions?merchant={merchant}"),
        ("transaction and its explanation", lambda: f"/console/transactions/{random.choice(txns)}"),
        ("card", lambda: f"/console/cards/{random.choice(cards)}"),
        ("member", lambda: f"/console/members/{random.choice(members)}"),
        ("merchants", lambda: "/console/merchants"),
        ("terminals", lambda: "/console/terminals"),
        ("settlement cycles", lambda: "/console/settlement"),
        ("settlement cycle", lambda: f"/console/settlement/{cycle}"),
        ("settlement payout file", lambda: f"/console/settlement/{cycle}/files/payout.csv"),
        ("settlement reconciliation", lambda: f"/console/settlement/{cycle}/reconciliation"),
        ("loyalty", lambda: "/console/loyalty"),
        ("reports", lambda: "/console/reports"),
        ("surveys of a merchant", lambda: f"/console/surveys?merchant={merchant}"),
        ("audit log", lambda: "/console/audit"),
        ("settings", lambda: "/console/settings"),
    ]
    if campaigns:
        code = campaigns[0].decode()
        pages.append(("campaign (preview and report)", lambda: f"/console/campaigns/{code}"))
    for name, path in pages:
        if not PAGES.search(name):
            continue
        status, body, first = browser.request("GET", path())
        # A page whose figures are computed off the request says so until they are.
        ready_after = None
        if b'id="computing"' in body:
            since = time.perf_counter()
            while b'id="computing"' in body:
                time.sleep(0.1)
                status, body, _ = browser.request("GET", path())
            ready_after = round((time.perf_counter() - since) * 1000 + first, 2)
        samples = []
        for _ in range(N):
            status, body, elapsed = browser.request("GET", path())
            samples.append(elapsed)
        record = {"page": name, "status": status, "bytes": len(body), "first_ms": round(first, 2)}
        if ready_after is not None:
            record["computed_after_ms"] = ready_after
        print(json.dumps({**record, **summary(samples)}), flush=True)


main()
