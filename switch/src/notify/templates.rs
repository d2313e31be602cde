//! The text of each notification, in Persian and in English (docs/notifications.md). Pure:
//! the group commit renders both languages of an event and the database keeps the member's.
//!
//! Amounts are whole rials with thousands separators: `1,250,000` in English; in Persian with
//! Persian digits and the Arabic thousands separator (U+066C), `۱٬۲۵۰٬۰۰۰`.

use crate::domain::{Locale, Rials};

/// What a notification tells the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
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
}

impl Message {
    /// The outbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Purchase { .. } => "purchase",
            Message::Cashback { .. } => "cashback",
            Message::TopUp { .. } => "top_up",
            Message::StoreCredit { .. } => "store_credit",
        }
    }

    /// The text in `locale`.
    pub fn render(&self, locale: Locale) -> String {
        let mut out = String::with_capacity(160);
        match (self, locale) {
            (
                Message::Purchase {
                    gross,
                    discount,
                    club,
                    store_credit,
                },
                Locale::En,
            ) => {
                out.push_str("Purchase of ");
                push_rials(&mut out, *gross, locale);
                out.push_str(" rials confirmed.");
                push_part(&mut out, " Discount: ", *discount, " rials.", locale);
                push_part(&mut out, " Club balance paid: ", *club, " rials.", locale);
                push_part(
                    &mut out,
                    " Store credit paid: ",
                    *store_credit,
                    " rials.",
                    locale,
                );
            }
            (
                Message::Purchase {
                    gross,
                    discount,
                    club,
                    store_credit,
                },
                Locale::Fa,
            ) => {
                out.push_str("خرید ");
                push_rials(&mut out, *gross, locale);
                out.push_str(" ریالی شما تأیید شد.");
                push_part(&mut out, " تخفیف: ", *discount, " ریال.", locale);
                push_part(&mut out, " از موجودی باشگاه: ", *club, " ریال.", locale);
                push_part(
                    &mut out,
                    " از اعتبار فروشگاه: ",
                    *store_credit,
                    " ریال.",
                    locale,
                );
            }
            (Message::Cashback { amount }, Locale::En) => {
                out.push_str("Cashback of ");
                push_rials(&mut out, *amount, locale);
                out.push_str(" rials was added to your store credit.");
            }
            (Message::Cashback { amount }, Locale::Fa) => {
                push_rials(&mut out, *amount, locale);
                out.push_str(" ریال بازگشت خرید به اعتبار فروشگاهی شما افزوده شد.");
            }
            (Message::TopUp { amount }, Locale::En) => {
                out.push_str("Your club balance was topped up by ");
                push_rials(&mut out, *amount, locale);
                out.push_str(" rials.");
            }
            (Message::TopUp { amount }, Locale::Fa) => {
                out.push_str("موجودی باشگاه شما ");
                push_rials(&mut out, *amount, locale);
                out.push_str(" ریال افزایش یافت.");
            }
            (Message::StoreCredit { amount }, Locale::En) => {
                out.push_str("You received ");
                push_rials(&mut out, *amount, locale);
                out.push_str(" rials of store credit.");
            }
            (Message::StoreCredit { amount }, Locale::Fa) => {
                push_rials(&mut out, *amount, locale);
                out.push_str(" ریال اعتبار فروشگاهی به شما هدیه داده شد.");
            }
        }
        out
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
    }
}
