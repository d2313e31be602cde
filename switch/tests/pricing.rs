//! Pricing (docs/design.md section 4) through its public functions.
//!
//! Goal: every rounding and every rule aspect has a one-line case, and the money invariants
//! hold for any input. Method: one `check_*` helper per function with table rows, the two
//! worked examples of the design priced end to end by `quote`, and proptest properties (parts
//! are never negative and sum to G, the fee stays in [min, max], a discount never passes its cap
//! or G, and the best rule wins).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switch::domain::{
    BinRange, CivilDate, Code, CouponTerms, CurrencyCode, Eligibility, FeeSchedule, GroupId, Iban,
    Merchant, MerchantId, MerchantProfile, MerchantStatus, MinuteWindow, Percent, Rials, Rule,
    RuleId, RuleKind, RuleTerms, TierId, UnixMillis, Weekday, Weekdays, Window,
};
use switch::pricing::{
    self, Account, Funding, Funds, Purchase, QuoteDecline, RuleDiscount, RuleUsage, Shortfall,
    Unlimited,
};

fn rials(value: i64) -> Rials {
    Rials::new(value).unwrap()
}

fn pct(text: &str) -> Percent {
    Percent::parse(text).unwrap()
}

/// Tehran local time `date hh:mm` as UnixMillis.
fn tehran(date: &str, hour: i64, minute: i64) -> UnixMillis {
    let day = UnixMillis::start_of_local_day(CivilDate::parse(date).unwrap(), 210);
    UnixMillis::new(day.get() + (hour * 60 + minute) * 60_000)
}

fn merchant(fee_rate: &str, fee_min: i64, fee_max: i64) -> Merchant {
    Merchant {
        id: MerchantId::new(1),
        code: Code::parse("M1").unwrap(),
        profile: MerchantProfile {
            name: "Cafe".to_string(),
            iban: Iban::parse("IR062960000000100324200001").unwrap(),
            status: MerchantStatus::Active,
            currency: CurrencyCode::IRR,
            fee: FeeSchedule::new(pct(fee_rate), rials(fee_min), rials(fee_max)).unwrap(),
            amount_rials_max: rials(100_000_000),
            cashback_allowed: true,
            credit_expiry_days: 90,
            utc_offset_minutes: 210,
        },
        groups: vec![GroupId::new(10)].into_boxed_slice(),
    }
}

/// A rule under construction: always open and eligible to all until narrowed.
struct R(Rule);

fn percent_rule(id: i64, rate: &str) -> R {
    R::new(id, RuleKind::Percent(pct(rate)))
}

fn fixed_rule(id: i64, amount: i64) -> R {
    R::new(id, RuleKind::Fixed(rials(amount)))
}

fn groups(ids: &[i64]) -> Vec<GroupId> {
    ids.iter().map(|id| GroupId::new(*id)).collect()
}

impl R {
    fn new(id: i64, kind: RuleKind) -> R {
        R(Rule {
            id: RuleId::new(id),
            code: Code::parse(&format!("R{id}")).unwrap(),
            terms: RuleTerms {
                name: format!("rule {id}"),
                kind,
                basket_rials_min: Rials::ZERO,
                discount_rials_max: None,
                window: Window::ALWAYS,
                budget_rials: None,
                member_daily_uses_max: None,
            },
            eligibility: Eligibility::any(),
        })
    }
    fn cap(mut self, cap: i64) -> R {
        self.0.terms.discount_rials_max = Some(rials(cap));
        self
    }
    fn basket_min(mut self, min: i64) -> R {
        self.0.terms.basket_rials_min = rials(min);
        self
    }
    fn days(mut self, days: &[Weekday]) -> R {
        self.0.terms.window.weekdays = Weekdays::from_days(days.iter().copied()).unwrap();
        self
    }
    fn hours(mut self, from: &str, until: &str) -> R {
        let from = MinuteWindow::parse_minute(from).unwrap();
        let until = MinuteWindow::parse_minute(until).unwrap();
        self.0.terms.window.hours = Some(MinuteWindow::new(from, until).unwrap());
        self
    }
    fn dates(mut self, from: &str, until: &str) -> R {
        self.0.terms.window.valid_from = Some(CivilDate::parse(from).unwrap());
        self.0.terms.window.valid_until = Some(CivilDate::parse(until).unwrap());
        self
    }
    fn bins(mut self, from: &str, to: &str) -> R {
        self.0
            .eligibility
            .bins
            .push(BinRange::from_prefixes(from, to).unwrap());
        self
    }
    fn tiers(mut self, ids: &[i64]) -> R {
        self.0.eligibility.tiers = ids.iter().map(|id| TierId::new(*id)).collect();
        self
    }
    fn merchants(mut self, ids: &[i64]) -> R {
        self.0.eligibility.merchants = ids.iter().map(|id| MerchantId::new(*id)).collect();
        self
    }
    fn merchant_groups(mut self, ids: &[i64]) -> R {
        self.0.eligibility.merchant_groups = groups(ids);
        self
    }
    fn member_groups(mut self, ids: &[i64]) -> R {
        self.0.eligibility.member_groups = groups(ids);
        self
    }
    fn terminal_groups(mut self, ids: &[i64]) -> R {
        self.0.eligibility.terminal_groups = groups(ids);
        self
    }
}

/// The purchase the discount table prices: merchant 1 in group 10, card of tier 1 with BIN
/// 603799, member in group 20, terminal in group 30, Saturday 2025-03-22 10:00 in Tehran.
struct Facts {
    gross: i64,
    now: Option<UnixMillis>,
    bin: &'static [u8; 6],
    tier: Option<i64>,
}

const SATURDAY_10: Facts = Facts {
    gross: 480_000,
    now: None,
    bin: b"603799",
    tier: Some(1),
};

/// A usage that refuses one rule, standing in for a spent budget or daily limit.
struct Refuse(i64);

impl RuleUsage for Refuse {
    fn allows(&self, rule: &Rule, _discount: Rials) -> bool {
        rule.id != RuleId::new(self.0)
    }
}

fn check_discount_with(
    rules: Vec<R>,
    facts: Facts,
    usage: &impl RuleUsage,
    expected: Option<(i64, i64)>,
) {
    let merchant = merchant("1.5", 0, 1_000_000);
    let now = facts.now.unwrap_or_else(|| tehran("2025-03-22", 10, 0));
    let member_groups = groups(&[20]);
    let terminal_groups = groups(&[30]);
    let purchase = Purchase {
        gross: rials(facts.gross),
        merchant: &merchant,
        terminal_groups: &terminal_groups,
        bin: facts.bin,
        tier: facts.tier.map(TierId::new),
        member_groups: &member_groups,
        now,
    };
    let rules: Vec<Rule> = rules.into_iter().map(|r| r.0).collect();
    let got = pricing::discount(&rules, &purchase, usage);
    let expected = expected.map(|(rule, amount)| RuleDiscount {
        rule: RuleId::new(rule),
        amount: rials(amount),
    });
    assert_eq!(got, expected);
}

fn check_discount(rules: Vec<R>, facts: Facts, expected: Option<(i64, i64)>) {
    check_discount_with(rules, facts, &Unlimited, expected);
}

#[test]
fn discount_rules() {
    let g = |gross| Facts {
        gross,
        ..SATURDAY_10
    };
    let at = |date, hour, minute| Facts {
        now: Some(tehran(date, hour, minute)),
        ..SATURDAY_10
    };
    // Amounts and rounding.
    check_discount(vec![], SATURDAY_10, None);
    check_discount(vec![percent_rule(1, "10")], SATURDAY_10, Some((1, 48_000)));
    check_discount(vec![percent_rule(1, "3.3")], g(12_345), Some((1, 407))); // 407.385 floors
    check_discount(vec![percent_rule(1, "0.5")], g(199), None); // floor(0.995) = 0: no discount
    check_discount(vec![fixed_rule(1, 50_000)], SATURDAY_10, Some((1, 50_000)));
    check_discount(vec![fixed_rule(1, 50_000)], g(30_000), Some((1, 30_000))); // capped by G
    check_discount(
        vec![percent_rule(1, "10").cap(20_000)],
        SATURDAY_10,
        Some((1, 20_000)),
    );
    check_discount(
        vec![fixed_rule(1, 50_000).cap(25_000)],
        SATURDAY_10,
        Some((1, 25_000)),
    );
    // Best rule wins; ties go to the lowest id whatever the order.
    check_discount(
        vec![percent_rule(1, "5"), fixed_rule(2, 30_000)],
        SATURDAY_10,
        Some((2, 30_000)),
    );
    check_discount(
        vec![fixed_rule(7, 48_000), percent_rule(3, "10")],
        SATURDAY_10,
        Some((3, 48_000)),
    );
    check_discount(
        vec![percent_rule(3, "10"), fixed_rule(2, 48_000)],
        SATURDAY_10,
        Some((2, 48_000)),
    );
    // Minimum basket: G must reach it.
    check_discount(
        vec![percent_rule(1, "10").basket_min(480_000)],
        SATURDAY_10,
        Some((1, 48_000)),
    );
    check_discount(
        vec![percent_rule(1, "10").basket_min(480_001)],
        SATURDAY_10,
        None,
    );
    // Weekday and hours in Tehran time: 2025-03-21 is a Friday.
    check_discount(
        vec![fixed_rule(1, 1_000).days(&[Weekday::Saturday])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).days(&[Weekday::Friday])],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).days(&[Weekday::Friday])],
        at("2025-03-21", 0, 0),
        Some((1, 1_000)),
    );
    // 23:59 Friday Tehran is 20:29 UTC Friday; 00:10 Saturday Tehran is 20:40 UTC Friday.
    check_discount(
        vec![fixed_rule(1, 1_000).days(&[Weekday::Friday])],
        at("2025-03-21", 23, 59),
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).days(&[Weekday::Friday])],
        at("2025-03-22", 0, 10),
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).hours("10:00", "14:00")],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).hours("10:00", "14:00")],
        at("2025-03-22", 14, 0),
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).hours("10:00", "14:00")],
        at("2025-03-22", 9, 59),
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).hours("22:00", "02:00")],
        at("2025-03-22", 1, 30),
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).hours("22:00", "02:00")],
        SATURDAY_10,
        None,
    );
    // Validity dates are inclusive local dates.
    check_discount(
        vec![fixed_rule(1, 1_000).dates("2025-03-22", "2025-03-22")],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).dates("2025-03-23", "2025-12-31")],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).dates("2025-01-01", "2025-03-21")],
        SATURDAY_10,
        None,
    );
    // BIN ranges.
    check_discount(
        vec![fixed_rule(1, 1_000).bins("6037", "6037")],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).bins("603800", "603899")],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000)
            .bins("5892", "5892")
            .bins("603799", "603799")],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    // Tiers, member groups, terminal groups.
    check_discount(
        vec![fixed_rule(1, 1_000).tiers(&[1, 2])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(vec![fixed_rule(1, 1_000).tiers(&[2])], SATURDAY_10, None);
    check_discount(
        vec![fixed_rule(1, 1_000).tiers(&[1])],
        Facts {
            tier: None,
            ..SATURDAY_10
        },
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).member_groups(&[20])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).member_groups(&[21])],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).terminal_groups(&[5, 30])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).terminal_groups(&[31])],
        SATURDAY_10,
        None,
    );
    // Merchants: named, by group, or either.
    check_discount(
        vec![fixed_rule(1, 1_000).merchants(&[1])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).merchants(&[2])],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).merchant_groups(&[10])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    check_discount(
        vec![fixed_rule(1, 1_000).merchant_groups(&[11])],
        SATURDAY_10,
        None,
    );
    check_discount(
        vec![fixed_rule(1, 1_000).merchants(&[2]).merchant_groups(&[10])],
        SATURDAY_10,
        Some((1, 1_000)),
    );
    // A refused budget or daily limit hands the purchase to the next best rule.
    check_discount_with(
        vec![percent_rule(1, "10"), fixed_rule(2, 1_000)],
        SATURDAY_10,
        &Refuse(1),
        Some((2, 1_000)),
    );
    check_discount_with(vec![percent_rule(1, "10")], SATURDAY_10, &Refuse(1), None);
}

type SplitExpected = Result<(i64, i64, i64), (Account, i64, i64)>;

fn check_split(
    gross: i64,
    discount: i64,
    credit: i64,
    club: i64,
    funding: Funding,
    expected: SplitExpected,
) {
    let got = pricing::split(
        rials(gross),
        rials(discount),
        rials(credit),
        rials(club),
        funding,
    )
    .map(|s| (s.store_credit().get(), s.club().get(), s.bank_rest().get()))
    .map_err(|s| (s.account, s.needed.get(), s.available.get()));
    assert_eq!(
        got, expected,
        "{gross} {discount} {credit} {club} {funding:?}"
    );
}

#[test]
fn splits() {
    use Funding::*;
    check_split(100, 10, 50, 50, BankOnly, Ok((0, 0, 90)));
    check_split(100, 10, 50, 50, BankWithStoreCredit, Ok((50, 0, 40)));
    check_split(100, 10, 500, 50, BankWithStoreCredit, Ok((90, 0, 0)));
    check_split(100, 10, 0, 0, BankWithStoreCredit, Ok((0, 0, 90)));
    check_split(100, 10, 50, 90, Club, Ok((0, 90, 0)));
    check_split(100, 10, 50, 89, Club, Err((Account::Club, 90, 89)));
    check_split(100, 10, 90, 0, StoreCredit, Ok((90, 0, 0)));
    check_split(
        100,
        10,
        89,
        1_000,
        StoreCredit,
        Err((Account::StoreCredit, 90, 89)),
    );
    check_split(100, 10, 50, 40, Mixed, Ok((50, 40, 0)));
    check_split(100, 10, 50, 39, Mixed, Err((Account::Club, 40, 39)));
    check_split(100, 10, 100, 0, Mixed, Ok((90, 0, 0)));
    check_split(100, 100, 0, 0, Club, Ok((0, 0, 0))); // fully discounted: nothing to cover
}

fn check_fee(gross: i64, rate: &str, min: i64, max: i64, expected: i64) {
    let schedule = FeeSchedule::new(pct(rate), rials(min), rials(max)).unwrap();
    assert_eq!(
        pricing::fee(rials(gross), &schedule),
        rials(expected),
        "{gross} {rate}"
    );
}

#[test]
fn fees() {
    check_fee(480_000, "1.5", 0, 1_000_000, 7_200);
    check_fee(100, "0.5", 0, 100, 1); // 0.5 rounds up
    check_fee(99, "0.5", 0, 100, 0); // 0.495 rounds down
    check_fee(333, "1.5", 0, 100, 5); // 4.995 rounds up
    check_fee(233, "1.5", 0, 100, 3); // 3.495 rounds down
    check_fee(350_000, "1.5", 0, 1_000_000, 5_250);
    check_fee(10_000, "1.5", 500, 1_000_000, 500); // raised to the minimum
    check_fee(100_000_000, "1.5", 0, 200_000, 200_000); // lowered to the maximum
    check_fee(1, "0", 0, 0, 0);
}

#[test]
fn cashbacks() {
    let check = |rate: &str, base: i64, expected: i64| {
        assert_eq!(
            pricing::cashback(pct(rate), rials(base)),
            rials(expected),
            "{rate} {base}"
        );
    };
    check("2", 332_000, 6_640);
    check("2", 312_500, 6_250);
    check("2", 49, 0); // 0.98 floors to 0
    check("4", 1_249, 49); // 49.96 floors
    check("0", 1_000, 0);
}

#[test]
fn worked_examples() {
    let cafe = merchant("1.5", 0, 1_000_000);
    let groups_none: [GroupId; 0] = [];
    let purchase = |gross| Purchase {
        gross: rials(gross),
        merchant: &cafe,
        terminal_groups: &groups_none,
        bin: b"603799",
        tier: Some(TierId::new(1)),
        member_groups: &groups_none,
        now: tehran("2025-03-22", 10, 0),
    };
    let ten = [percent_rule(1, "10").0];
    let funds = Funds {
        store_credit: rials(100_000),
        club: Rials::ZERO,
    };
    let quote = pricing::quote(
        &purchase(480_000),
        &ten,
        &Unlimited,
        funds,
        Funding::BankWithStoreCredit,
        Some(pct("2")),
        None,
    )
    .unwrap();
    assert_eq!(
        quote.rule,
        Some(RuleDiscount {
            rule: RuleId::new(1),
            amount: rials(48_000)
        })
    );
    assert_eq!(
        quote.split.parts(),
        [rials(48_000), rials(100_000), Rials::ZERO, rials(332_000)]
    );
    assert_eq!(quote.fee, rials(7_200));
    assert_eq!(quote.cashback, rials(6_640));

    let five = [percent_rule(1, "5").0];
    let funds = Funds {
        store_credit: rials(20_000),
        club: rials(2_000_000),
    };
    let quote = pricing::quote(
        &purchase(350_000),
        &five,
        &Unlimited,
        funds,
        Funding::Mixed,
        Some(pct("2")),
        None,
    )
    .unwrap();
    assert_eq!(
        quote.split.parts(),
        [rials(17_500), rials(20_000), rials(312_500), Rials::ZERO]
    );
    assert_eq!(quote.fee, rials(5_250));
    assert_eq!(quote.cashback, rials(6_250));

    // A member coupon adds to the rule's discount, computed on G, within what G leaves.
    let coupon = |kind, basket, cap: Option<i64>| CouponTerms {
        kind,
        basket_rials_min: rials(basket),
        discount_rials_max: cap.map(rials),
        merchant: None,
        expires_at: UnixMillis::new(i64::MAX),
    };
    let funds = Funds {
        store_credit: Rials::ZERO,
        club: Rials::ZERO,
    };
    let with = |terms: CouponTerms| {
        pricing::quote(
            &purchase(480_000),
            &ten,
            &Unlimited,
            funds,
            Funding::BankOnly,
            Some(pct("2")),
            Some(&terms),
        )
        .unwrap()
    };
    let fixed = with(coupon(RuleKind::Fixed(rials(50_000)), 100_000, None));
    assert_eq!(fixed.coupon, rials(50_000));
    assert_eq!(
        fixed.split.parts(),
        [rials(98_000), Rials::ZERO, Rials::ZERO, rials(382_000)]
    );
    // Cashback on what the member paid (2 % of 382 000, rounded down); the fee on G.
    assert_eq!(fixed.cashback, rials(7_640));
    assert_eq!(fixed.fee, rials(7_200));
    // 15 % of 480 000 is 72 000, capped at 60 000.
    let capped = with(coupon(RuleKind::Percent(pct("15")), 0, Some(60_000)));
    assert_eq!(capped.coupon, rials(60_000));
    // 95 % would pass G with the rule's 48 000: the coupon gives the 432 000 left.
    let whole = with(coupon(RuleKind::Percent(pct("95")), 0, None));
    assert_eq!(whole.coupon, rials(432_000));
    assert_eq!(
        whole.split.parts(),
        [rials(480_000), Rials::ZERO, Rials::ZERO, Rials::ZERO]
    );
    // Below its minimum basket it gives nothing.
    let basket = with(coupon(RuleKind::Fixed(rials(50_000)), 500_000, None));
    assert_eq!(basket.coupon, Rials::ZERO);
    assert_eq!(basket.split.discount(), rials(48_000));
}

#[test]
fn quote_declines() {
    let mut cafe = merchant("1.5", 0, 1_000_000);
    cafe.profile.amount_rials_max = rials(1_000_000);
    let none: [GroupId; 0] = [];
    let purchase = |gross| Purchase {
        gross: rials(gross),
        merchant: &cafe,
        terminal_groups: &none,
        bin: b"603799",
        tier: None,
        member_groups: &none,
        now: tehran("2025-03-22", 10, 0),
    };
    let funds = Funds {
        store_credit: Rials::ZERO,
        club: rials(10),
    };
    let quote = |gross, funding| {
        pricing::quote(
            &purchase(gross),
            &[],
            &Unlimited,
            funds,
            funding,
            None,
            None,
        )
    };
    assert_eq!(quote(0, Funding::BankOnly), Err(QuoteDecline::AmountZero));
    assert_eq!(
        quote(1_000_001, Funding::BankOnly),
        Err(QuoteDecline::AmountLimit {
            limit: rials(1_000_000)
        })
    );
    assert_eq!(
        quote(11, Funding::Club),
        Err(QuoteDecline::Insufficient(Shortfall {
            account: Account::Club,
            needed: rials(11),
            available: rials(10)
        }))
    );
    let ok = quote(1_000_000, Funding::BankOnly).unwrap();
    assert_eq!(ok.cashback, Rials::ZERO); // no tier, no cashback
    let mut no_cashback = merchant("1.5", 0, 1_000_000);
    no_cashback.profile.cashback_allowed = false;
    let purchase = Purchase {
        merchant: &no_cashback,
        ..purchase(1_000)
    };
    let quote = pricing::quote(
        &purchase,
        &[],
        &Unlimited,
        funds,
        Funding::BankOnly,
        Some(pct("4")),
        None,
    )
    .unwrap();
    assert_eq!(quote.cashback, Rials::ZERO);
}

const AMOUNT_MAX: i64 = 999_999_999_999;

fn funding() -> impl Strategy<Value = Funding> {
    prop_oneof![
        Just(Funding::BankOnly),
        Just(Funding::BankWithStoreCredit),
        Just(Funding::Club),
        Just(Funding::StoreCredit),
        Just(Funding::Mixed),
    ]
}

fn rate() -> impl Strategy<Value = Percent> {
    (0..=100_000_000_u64).prop_map(|micro| {
        Percent::new(rust_decimal::Decimal::new(i64::try_from(micro).unwrap(), 6)).unwrap()
    })
}

fn kind() -> impl Strategy<Value = RuleKind> {
    prop_oneof![
        rate().prop_map(RuleKind::Percent),
        (0..=AMOUNT_MAX).prop_map(|a| RuleKind::Fixed(rials(a))),
    ]
}

fn terms() -> impl Strategy<Value = RuleTerms> {
    (kind(), proptest::option::of(0..=AMOUNT_MAX), 0..=AMOUNT_MAX).prop_map(|(kind, cap, min)| {
        RuleTerms {
            name: String::new(),
            kind,
            basket_rials_min: rials(min / 1_000),
            discount_rials_max: cap.map(rials),
            window: Window::ALWAYS,
            budget_rials: None,
            member_daily_uses_max: None,
        }
    })
}

proptest! {
    #[test]
    fn split_covers_gross(
        g in 1..=AMOUNT_MAX, d in 0..=AMOUNT_MAX, credit in 0..=AMOUNT_MAX, club in 0..=AMOUNT_MAX,
        funding in funding(),
    ) {
        let gross = rials(g);
        let discount = rials(d % (g + 1));
        if let Ok(split) = pricing::split(gross, discount, rials(credit), rials(club), funding) {
            prop_assert_eq!(split.total(), Some(gross));
            prop_assert!(split.parts().iter().all(|part| *part >= Rials::ZERO));
            prop_assert!(split.store_credit() <= rials(credit));
            prop_assert!(split.club() <= rials(club));
            prop_assert_eq!(split.discount(), discount);
        }
    }

    /// The engine looks up only the balances a funding uses (`Funding::uses_club`,
    /// `uses_store_credit`) and passes zero for the others: that must never change a split.
    #[test]
    fn split_ignores_balances_its_funding_does_not_use(
        g in 1..=AMOUNT_MAX, d in 0..=AMOUNT_MAX, credit in 0..=AMOUNT_MAX, club in 0..=AMOUNT_MAX,
        funding in funding(),
    ) {
        let gross = rials(g);
        let discount = rials(d % (g + 1));
        let full = pricing::split(gross, discount, rials(credit), rials(club), funding);
        let credit_seen = if funding.uses_store_credit() { credit } else { 0 };
        let club_seen = if funding.uses_club() { club } else { 0 };
        let looked_up = pricing::split(gross, discount, rials(credit_seen), rials(club_seen), funding);
        prop_assert_eq!(full, looked_up);
    }

    #[test]
    fn fee_within_bounds(g in 0..=AMOUNT_MAX, rate in rate(), a in 0..=AMOUNT_MAX, b in 0..=AMOUNT_MAX) {
        let schedule = FeeSchedule::new(rate, rials(a.min(b)), rials(a.max(b))).unwrap();
        let fee = pricing::fee(rials(g), &schedule);
        prop_assert!(fee >= schedule.fee_rials_min());
        prop_assert!(fee <= schedule.fee_rials_max());
    }

    #[test]
    fn discount_within_cap_and_gross(g in 0..=AMOUNT_MAX, terms in terms()) {
        let discount = pricing::rule_discount(&terms, rials(g));
        prop_assert!(discount <= rials(g));
        if let Some(cap) = terms.discount_rials_max {
            prop_assert!(discount <= cap);
        }
    }

    /// A coupon on top of a rule: the two never pass G, the coupon never passes its cap, it
    /// gives nothing below its basket, and otherwise exactly its own discount or what G leaves.
    #[test]
    fn coupon_stacks_within_gross(g in 1..=AMOUNT_MAX, d in 0..=AMOUNT_MAX, terms in terms()) {
        let gross = rials(g);
        let ruled = rials(d % (g + 1));
        let coupon = CouponTerms {
            kind: terms.kind,
            basket_rials_min: terms.basket_rials_min,
            discount_rials_max: terms.discount_rials_max,
            merchant: None,
            expires_at: UnixMillis::new(i64::MAX),
        };
        let given = pricing::coupon_discount(&coupon, gross, ruled);
        prop_assert!(given.get() + ruled.get() <= g);
        if let Some(cap) = coupon.discount_rials_max {
            prop_assert!(given <= cap);
        }
        if gross < coupon.basket_rials_min {
            prop_assert_eq!(given, Rials::ZERO);
        } else {
            let alone = pricing::rule_discount(&terms, gross);
            prop_assert_eq!(given, alone.min(rials(g - ruled.get())));
        }
    }

    #[test]
    fn best_rule_wins(g in 1..=AMOUNT_MAX, all in proptest::collection::vec(terms(), 0..8)) {
        let cafe = merchant("1", 0, 0);
        let none: [GroupId; 0] = [];
        let purchase = Purchase {
            gross: rials(g), merchant: &cafe, terminal_groups: &none, bin: b"603799",
            tier: None, member_groups: &none, now: UnixMillis::new(0),
        };
        let rules: Vec<Rule> = all.iter().enumerate().map(|(i, terms)| {
            let id = i64::try_from(i).unwrap() + 1;
            Rule { terms: terms.clone(), ..R::new(id, RuleKind::Fixed(Rials::ZERO)).0 }
        }).collect();
        let expected = rules.iter()
            .map(|rule| (pricing::rule_discount(&rule.terms, rials(g)), rule.id))
            .filter(|(amount, _)| *amount > Rials::ZERO)
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(amount, rule)| RuleDiscount { rule, amount });
        prop_assert_eq!(pricing::discount(&rules, &purchase, &Unlimited), expected);
    }

    /// Rules whose budget or daily limit is spent never win, whatever their place in the list:
    /// the best of the others does, exactly as if the spent ones were not offered at all.
    #[test]
    fn spent_rules_never_win(
        g in 1..=AMOUNT_MAX,
        all in proptest::collection::vec((terms(), proptest::bool::ANY), 0..8),
    ) {
        let cafe = merchant("1", 0, 0);
        let none: [GroupId; 0] = [];
        let purchase = Purchase {
            gross: rials(g), merchant: &cafe, terminal_groups: &none, bin: b"603799",
            tier: None, member_groups: &none, now: UnixMillis::new(0),
        };
        let rules: Vec<Rule> = all.iter().enumerate().map(|(i, (terms, _))| {
            let id = i64::try_from(i).unwrap() + 1;
            Rule { terms: terms.clone(), ..R::new(id, RuleKind::Fixed(Rials::ZERO)).0 }
        }).collect();
        let spent: Vec<RuleId> = rules.iter().zip(&all)
            .filter(|(_, (_, spent))| *spent)
            .map(|(rule, _)| rule.id)
            .collect();
        let open: Vec<Rule> = rules.iter().filter(|rule| !spent.contains(&rule.id)).cloned().collect();
        let usage = Spent(spent);
        prop_assert_eq!(
            pricing::discount(&rules, &purchase, &usage),
            pricing::discount(&open, &purchase, &Unlimited)
        );
    }
}

/// A usage that refuses a set of rules (their budget or daily limit spent).
struct Spent(Vec<RuleId>);

impl RuleUsage for Spent {
    fn allows(&self, rule: &Rule, _discount: Rials) -> bool {
        !self.0.contains(&rule.id)
    }
}
