//! The text of each notification, in Persian and in English (docs/notifications.md). Pure:
//! the group commit renders both languages of an event and the database keeps the member's.
//!
//! Amounts are whole rials with thousands separators: `1,250,000` in English; in Persian with
//! Persian digits and the Arabic thousands separator (U+066C), `۱٬۲۵۰٬۰۰۰`.

use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{LocalDateTime, Locale, Rials, RuleKind, UnixMillis};

/// What a notification tells the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A confirmed purchase, with what the club and the store credit paid and the discount.
    Purchase {
        /// G, the purchase amount.
        gross: Rials,
        /// The discount given.
        discount: Rials,
        /// Paid from the club balance.
        club: Rials,
        /// Paid from store credit.
        store_credit: Rials,
    },
    /// Cashback credited as store credit by a confirmed purchase.
    Cashback {
        /// The amount.
        amount: Rials,
    },
    /// A club top-up.
    TopUp {
        /// The amount.
        amount: Rials,
    },
    /// Store credit granted by a merchant.
    StoreCredit {
        /// The amount.
        amount: Rials,
    },
    /// A coupon issued to the member.
    Coupon {
        /// Percent or fixed.
        kind: RuleKind,
        /// Its cap, if any.
        cap: Option<Rials>,
        /// When it stops being usable (shown as the Tehran date of its last day).
        expires_at: UnixMillis,
    },
    /// Store credit about to expire.
    StoreCreditExpiring {
        /// What is left of the lot.
        amount: Rials,
        /// When it expires.
        expires_at: UnixMillis,
    },
    /// An unused coupon about to expire.
    CouponExpiring {
        /// When it expires.
        expires_at: UnixMillis,
    },
    /// The member's tier changed (activity earned a better one, or left the window).
    Tier {
        /// The tier's display name; `None` when the member holds no tier any more.
        name: Option<&'a str>,
        /// Up (true) or down.
        promoted: bool,
    },
    /// A survey after a purchase (docs/surveys.md): the operator's question in the member's
    /// language, how to answer, and the optional comment prompt.
    Survey {
        /// The question, in the language rendered.
        question: &'a str,
        /// The lowest score.
        scale_min: u8,
        /// The highest score.
        scale_max: u8,
        /// Asks for a comment after the score, if the survey has one.
        prompt: Option<&'a str>,
    },
    /// An occasion campaign's message (docs/campaigns.md): the operator's text, as written.
    Campaign {
        /// The text, in the language rendered.
        text: &'a str,
    },
    /// A repurchase reminder of a merchant (docs/campaigns.md): the operator's text.
    Reminder {
        /// The text, in the language rendered.
        text: &'a str,
    },
    /// A reply to a survey that did not parse: how to answer, once per survey.
    SurveyClarify {
        /// The lowest score.
        scale_min: u8,
        /// The highest score.
        scale_max: u8,
    },
}

impl Message<'_> {
    /// The outbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Purchase { .. } => "purchase",
            Message::Cashback { .. } => "cashback",
            Message::TopUp { .. } => "top_up",
            Message::StoreCredit { .. } => "store_credit",
            Message::Coupon { .. } => "coupon",
            Message::StoreCreditExpiring { .. } | Message::CouponExpiring { .. } => "expiry",
            Message::Tier { .. } => "tier",
            Message::Survey { .. } => "survey",
            Message::SurveyClarify { .. } => "survey_clarify",
            Message::Campaign { .. } => "campaign",
            Message::Reminder { .. } => "reminder",
        }
    }

    /// The text in `locale`.
    pub fn render(&self, locale: Locale) -> String {
        let mut out = String::with_capacity(160);
        match self {
            Message::Coupon {
                kind,
                cap,
                expires_at,
            } => push_coupon(&mut out, *kind, *cap, *expires_at, locale),
            Message::Campaign { text } | Message::Reminder { text } => out.push_str(text),
            Message::Survey {
                question,
                scale_min,
                scale_max,
                prompt,
            } => {
                out.push_str(question);
                out.push(' ');
                push_scale(&mut out, *scale_min, *scale_max, locale);
                if let Some(prompt) = prompt {
                    out.push(' ');
                    out.push_str(prompt);
                }
            }
            _ => match locale {
                Locale::En => self.english(&mut out),
                Locale::Fa => self.persian(&mut out),
            },
        }
        out
    }

    /// The English text of a message written per language.
    fn english(&self, out: &mut String) {
        match self {
            Message::Purchase {
                gross,
                discount,
                club,
                store_credit,
            } => {
                out.push_str("Purchase of ");
                push_rials(out, *gross, Locale::En);
                out.push_str(" rials confirmed.");
                push_part(out, " Discount: ", *discount, " rials.", Locale::En);
                push_part(out, " Club balance paid: ", *club, " rials.", Locale::En);
                push_part(
                    out,
                    " Store credit paid: ",
                    *store_credit,
                    " rials.",
                    Locale::En,
                );
            }
            Message::Cashback { amount } => {
                out.push_str("Cashback of ");
                push_rials(out, *amount, Locale::En);
                out.push_str(" rials was added to your store credit.");
            }
            Message::TopUp { amount } => {
                out.push_str("Your club balance was topped up by ");
                push_rials(out, *amount, Locale::En);
                out.push_str(" rials.");
            }
            Message::StoreCredit { amount } => {
                out.push_str("You received ");
                push_rials(out, *amount, Locale::En);
                out.push_str(" rials of store credit.");
            }
            Message::StoreCreditExpiring { amount, expires_at } => {
                push_rials(out, *amount, Locale::En);
                out.push_str(" rials of your store credit expire after ");
                out.push_str(&last_day(*expires_at));
                out.push('.');
            }
            Message::CouponExpiring { expires_at } => {
                out.push_str("Your coupon expires after ");
                out.push_str(&last_day(*expires_at));
                out.push_str(": use it on your next purchase.");
            }
            Message::Tier { name, promoted } => match (name, promoted) {
                (Some(name), true) => {
                    out.push_str("Congratulations! You are now a ");
                    out.push_str(name);
                    out.push_str(" member.");
                }
                (Some(name), false) => {
                    out.push_str("Your membership tier is now ");
                    out.push_str(name);
                    out.push('.');
                }
                (None, _) => out.push_str("Your membership tier has ended."),
            },
            // The same in every language: `render` writes them.
            Message::Coupon { .. }
            | Message::Campaign { .. }
            | Message::Reminder { .. }
            | Message::Survey { .. } => {}
            Message::SurveyClarify {
                scale_min,
                scale_max,
            } => {
                out.push_str("Sorry, we could not read your answer. ");
                push_scale(out, *scale_min, *scale_max, Locale::En);
                out.push_str(" You may add a comment after the number.");
            }
        }
    }

    /// The Persian text of a message written per language (Persian digits, Solar Hijri dates).
    fn persian(&self, out: &mut String) {
        match self {
            Message::Purchase {
                gross,
                discount,
                club,
                store_credit,
            } => {
                out.push_str("خرید ");
                push_rials(out, *gross, Locale::Fa);
                out.push_str(" ریالی شما تأیید شد.");
                push_part(out, " تخفیف: ", *discount, " ریال.", Locale::Fa);
                push_part(out, " از موجودی باشگاه: ", *club, " ریال.", Locale::Fa);
                push_part(
                    out,
                    " از اعتبار فروشگاه: ",
                    *store_credit,
                    " ریال.",
                    Locale::Fa,
                );
            }
            Message::Cashback { amount } => {
                push_rials(out, *amount, Locale::Fa);
                out.push_str(" ریال بازگشت خرید به اعتبار فروشگاهی شما افزوده شد.");
            }
            Message::TopUp { amount } => {
                out.push_str("موجودی باشگاه شما ");
                push_rials(out, *amount, Locale::Fa);
                out.push_str(" ریال افزایش یافت.");
            }
            Message::StoreCredit { amount } => {
                push_rials(out, *amount, Locale::Fa);
                out.push_str(" ریال اعتبار فروشگاهی به شما هدیه داده شد.");
            }
            Message::StoreCreditExpiring { amount, expires_at } => {
                push_rials(out, *amount, Locale::Fa);
                out.push_str(" ریال از اعتبار فروشگاهی شما پس از ");
                push_digits(out, &last_day_jalali(*expires_at), Locale::Fa);
                out.push_str(" منقضی می‌شود.");
            }
            Message::CouponExpiring { expires_at } => {
                out.push_str("کوپن تخفیف شما پس از ");
                push_digits(out, &last_day_jalali(*expires_at), Locale::Fa);
                out.push_str(" منقضی می‌شود.");
            }
            Message::Tier { name, promoted } => match (name, promoted) {
                (Some(name), true) => {
                    out.push_str("تبریک! سطح عضویت شما به ");
                    out.push_str(name);
                    out.push_str(" ارتقا یافت.");
                }
                (Some(name), false) => {
                    out.push_str("سطح عضویت شما اکنون ");
                    out.push_str(name);
                    out.push_str(" است.");
                }
                (None, _) => out.push_str("سطح عضویت شما به پایان رسید."),
            },
            // The same in every language: `render` writes them.
            Message::Coupon { .. }
            | Message::Campaign { .. }
            | Message::Reminder { .. }
            | Message::Survey { .. } => {}
            Message::SurveyClarify {
                scale_min,
                scale_max,
            } => {
                out.push_str("متأسفیم، پاسخ شما را متوجه نشدیم. ");
                push_scale(out, *scale_min, *scale_max, Locale::Fa);
                out.push_str(" می‌توانید پس از عدد، نظرتان را هم بنویسید.");
            }
        }
    }
}

/// The last Tehran day something expiring at `expires_at` can be used: the day of the last
/// millisecond before it expires, as YYYY-MM-DD.
fn last_day(expires_at: UnixMillis) -> String {
    let last = LocalDateTime::at(
        UnixMillis::new(expires_at.get() - 1),
        TEHRAN_UTC_OFFSET_MINUTES,
    )
    .date;
    format!("{:04}-{:02}-{:02}", last.year(), last.month(), last.day())
}

/// The same last day in the Solar Hijri calendar, as YYYY/MM/DD (the Persian messages).
fn last_day_jalali(expires_at: UnixMillis) -> String {
    let last = LocalDateTime::at(
        UnixMillis::new(expires_at.get() - 1),
        TEHRAN_UTC_OFFSET_MINUTES,
    )
    .date;
    crate::console::i18n::jalali_date(last)
}

/// "A coupon for 10% off your next purchase (up to 50,000 rials), valid until 2026-12-31."
fn push_coupon(
    out: &mut String,
    kind: RuleKind,
    cap: Option<Rials>,
    expires_at: UnixMillis,
    locale: Locale,
) {
    let date = match locale {
        Locale::En => last_day(expires_at),
        Locale::Fa => last_day_jalali(expires_at),
    };
    match locale {
        Locale::En => {
            out.push_str("A coupon for ");
            match kind {
                RuleKind::Percent(rate) => {
                    out.push_str(&rate.to_string());
                    out.push('%');
                }
                RuleKind::Fixed(amount) => {
                    push_rials(out, amount, locale);
                    out.push_str(" rials");
                }
            }
            out.push_str(" off your next purchase");
            if let Some(cap) = cap {
                out.push_str(" (up to ");
                push_rials(out, cap, locale);
                out.push_str(" rials)");
            }
            out.push_str(" is waiting for you, valid until ");
            out.push_str(&date);
            out.push('.');
        }
        Locale::Fa => {
            out.push_str("یک کوپن ");
            match kind {
                RuleKind::Percent(rate) => {
                    push_digits(out, &rate.to_string(), locale);
                    out.push_str(" درصد");
                }
                RuleKind::Fixed(amount) => {
                    push_rials(out, amount, locale);
                    out.push_str(" ریالی");
                }
            }
            out.push_str(" تخفیف برای خرید بعدی شما");
            if let Some(cap) = cap {
                out.push_str(" (تا ");
                push_rials(out, cap, locale);
                out.push_str(" ریال)");
            }
            out.push_str(" صادر شد؛ معتبر تا ");
            push_digits(out, &date, locale);
            out.push('.');
        }
    }
}

/// How to answer a survey: `Reply with a number from 1 to 5.`
fn push_scale(out: &mut String, scale_min: u8, scale_max: u8, locale: Locale) {
    let (min, max) = (scale_min.to_string(), scale_max.to_string());
    match locale {
        Locale::En => {
            out.push_str("Reply with a number from ");
            out.push_str(&min);
            out.push_str(" to ");
            out.push_str(&max);
            out.push('.');
        }
        Locale::Fa => {
            out.push_str("لطفاً با عددی از ");
            push_digits(out, &min, locale);
            out.push_str(" تا ");
            push_digits(out, &max, locale);
            out.push_str(" پاسخ دهید.");
        }
    }
}

/// `prefix amount suffix`, left out when the amount is zero (a purchase without a discount
/// says nothing about one).
fn push_part(out: &mut String, prefix: &str, amount: Rials, suffix: &str, locale: Locale) {
    if amount == Rials::ZERO {
        return;
    }
    out.push_str(prefix);
    push_rials(out, amount, locale);
    out.push_str(suffix);
}

/// An amount with thousands separators, in the digits of `locale`.
/// `text` with its ASCII digits in the locale's digits (dates, rates); other characters as
/// they are.
fn push_digits(out: &mut String, text: &str, locale: Locale) {
    for ch in text.chars() {
        match (locale, ch.to_digit(10)) {
            (Locale::Fa, Some(value)) => {
                let index = usize::try_from(value).unwrap_or(0);
                out.push(PERSIAN_DIGITS.get(index).copied().unwrap_or(ch));
            }
            _ => out.push(ch),
        }
    }
}

fn push_rials(out: &mut String, amount: Rials, locale: Locale) {
    let (digits, separator): (&[char; 10], char) = match locale {
        Locale::En => (&LATIN_DIGITS, ','),
        Locale::Fa => (&PERSIAN_DIGITS, '\u{066C}'),
    };
    // Rials are never negative: `Rials` is 0..=999_999_999_999.
    let text = amount.get().unsigned_abs().to_string();
    let count = text.len();
    for (index, byte) in text.bytes().enumerate() {
        if index > 0 && (count - index) % 3 == 0 {
            out.push(separator);
        }
        let value = usize::from(byte.wrapping_sub(b'0'));
        out.push(digits.get(value).copied().unwrap_or('?'));
    }
}

const LATIN_DIGITS: [char; 10] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const PERSIAN_DIGITS: [char; 10] = ['۰', '۱', '۲', '۳', '۴', '۵', '۶', '۷', '۸', '۹'];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rials(n: i64) -> Rials {
        Rials::new(n).unwrap()
    }

    fn check(message: Message, locale: Locale, expected: &str) {
        assert_eq!(message.render(locale), expected);
    }

    #[test]
    fn surveys_in_both_languages() {
        let survey = Message::Survey {
            question: "How was your coffee?",
            scale_min: 1,
            scale_max: 5,
            prompt: Some("Tell us why."),
        };
        check(
            survey,
            Locale::En,
            "How was your coffee? Reply with a number from 1 to 5. Tell us why.",
        );
        let survey = Message::Survey {
            question: "از خرید خود راضی بودید؟",
            scale_min: 0,
            scale_max: 10,
            prompt: None,
        };
        check(
            survey,
            Locale::Fa,
            "از خرید خود راضی بودید؟ لطفاً با عددی از ۰ تا ۱۰ پاسخ دهید.",
        );
        let clarify = Message::SurveyClarify {
            scale_min: 1,
            scale_max: 5,
        };
        check(
            clarify,
            Locale::En,
            "Sorry, we could not read your answer. Reply with a number from 1 to 5. \
             You may add a comment after the number.",
        );
        check(
            clarify,
            Locale::Fa,
            "متأسفیم، پاسخ شما را متوجه نشدیم. لطفاً با عددی از ۱ تا ۵ پاسخ دهید. \
             می‌توانید پس از عدد، نظرتان را هم بنویسید.",
        );
    }

    #[test]
    fn amounts_have_thousands_separators() {
        let text = |n, locale| {
            let mut out = String::new();
            push_rials(&mut out, rials(n), locale);
            out
        };
        assert_eq!(text(0, Locale::En), "0");
        assert_eq!(text(999, Locale::En), "999");
        assert_eq!(text(1_000, Locale::En), "1,000");
        assert_eq!(text(1_250_000, Locale::En), "1,250,000");
        assert_eq!(text(999_999_999_999, Locale::En), "999,999,999,999");
        assert_eq!(text(0, Locale::Fa), "۰");
        assert_eq!(text(1_250_000, Locale::Fa), "۱٬۲۵۰٬۰۰۰");
        assert_eq!(text(100_000, Locale::Fa), "۱۰۰٬۰۰۰");
    }

    #[test]
    fn every_kind_in_both_languages() {
        let purchase = Message::Purchase {
            gross: rials(500_000),
            discount: rials(50_000),
            club: rials(350_000),
            store_credit: rials(100_000),
        };
        check(
            purchase,
            Locale::En,
            "Purchase of 500,000 rials confirmed. Discount: 50,000 rials. \
             Club balance paid: 350,000 rials. Store credit paid: 100,000 rials.",
        );
        check(
            purchase,
            Locale::Fa,
            "خرید ۵۰۰٬۰۰۰ ریالی شما تأیید شد. تخفیف: ۵۰٬۰۰۰ ریال. \
             از موجودی باشگاه: ۳۵۰٬۰۰۰ ریال. از اعتبار فروشگاه: ۱۰۰٬۰۰۰ ریال.",
        );
        let by_card = Message::Purchase {
            gross: rials(80_000),
            discount: Rials::ZERO,
            club: Rials::ZERO,
            store_credit: Rials::ZERO,
        };
        check(by_card, Locale::En, "Purchase of 80,000 rials confirmed.");
        check(by_card, Locale::Fa, "خرید ۸۰٬۰۰۰ ریالی شما تأیید شد.");
        let cashback = Message::Cashback {
            amount: rials(7_000),
        };
        check(
            cashback,
            Locale::En,
            "Cashback of 7,000 rials was added to your store credit.",
        );
        check(
            cashback,
            Locale::Fa,
            "۷٬۰۰۰ ریال بازگشت خرید به اعتبار فروشگاهی شما افزوده شد.",
        );
        let top_up = Message::TopUp {
            amount: rials(2_000_000),
        };
        check(
            top_up,
            Locale::En,
            "Your club balance was topped up by 2,000,000 rials.",
        );
        check(
            top_up,
            Locale::Fa,
            "موجودی باشگاه شما ۲٬۰۰۰٬۰۰۰ ریال افزایش یافت.",
        );
        let grant = Message::StoreCredit {
            amount: rials(30_000),
        };
        check(
            grant,
            Locale::En,
            "You received 30,000 rials of store credit.",
        );
        check(
            grant,
            Locale::Fa,
            "۳۰٬۰۰۰ ریال اعتبار فروشگاهی به شما هدیه داده شد.",
        );
        // Expires at the start of 2027-01-01 Tehran (20:30 UTC the day before): last day 12-31.
        let expires_at = UnixMillis::new(1_798_749_000_000);
        let percent = Message::Coupon {
            kind: RuleKind::Percent(crate::domain::Percent::parse("10").unwrap()),
            cap: Some(rials(50_000)),
            expires_at,
        };
        check(
            percent,
            Locale::En,
            "A coupon for 10% off your next purchase (up to 50,000 rials) is waiting for you, \
             valid until 2026-12-31.",
        );
        check(
            percent,
            Locale::Fa,
            "یک کوپن ۱۰ درصد تخفیف برای خرید بعدی شما (تا ۵۰٬۰۰۰ ریال) صادر شد؛ معتبر تا ۱۴۰۵/۱۰/۱۰.",
        );
        let fixed = Message::Coupon {
            kind: RuleKind::Fixed(rials(100_000)),
            cap: None,
            expires_at,
        };
        check(
            fixed,
            Locale::En,
            "A coupon for 100,000 rials off your next purchase is waiting for you, valid until \
             2026-12-31.",
        );
        let lot = Message::StoreCreditExpiring {
            amount: rials(12_500),
            expires_at,
        };
        check(
            lot,
            Locale::En,
            "12,500 rials of your store credit expire after 2026-12-31.",
        );
        check(
            lot,
            Locale::Fa,
            "۱۲٬۵۰۰ ریال از اعتبار فروشگاهی شما پس از ۱۴۰۵/۱۰/۱۰ منقضی می‌شود.",
        );
        check(
            Message::CouponExpiring { expires_at },
            Locale::En,
            "Your coupon expires after 2026-12-31: use it on your next purchase.",
        );
        let up = Message::Tier {
            name: Some("Gold"),
            promoted: true,
        };
        check(
            up,
            Locale::En,
            "Congratulations! You are now a Gold member.",
        );
        check(up, Locale::Fa, "تبریک! سطح عضویت شما به Gold ارتقا یافت.");
        let down = Message::Tier {
            name: Some("Silver"),
            promoted: false,
        };
        check(down, Locale::En, "Your membership tier is now Silver.");
        check(down, Locale::Fa, "سطح عضویت شما اکنون Silver است.");
        let gone = Message::Tier {
            name: None,
            promoted: false,
        };
        check(gone, Locale::En, "Your membership tier has ended.");
        check(gone, Locale::Fa, "سطح عضویت شما به پایان رسید.");
    }
}
