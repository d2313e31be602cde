//! The console's two languages: English (left to right, Gregorian dates, Latin digits) and
//! Persian (right to left, Solar Hijri dates from ICU4X's calendar, Persian digits). Amounts
//! are rials with thousands grouping, and toman (rials / 10) beside them when the operator
//! asked for it. The same date conversion serves the Persian SMS templates
//! ([`jalali_date`]).

use crate::domain::time::{DAY_MS, MINUTE_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::CivilDate;

/// An operator's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    /// English, Gregorian.
    En,
    /// Persian, Solar Hijri, right to left.
    Fa,
}

impl Locale {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fa => "fa",
        }
    }

    /// Parses the stored spelling (anything else is English).
    pub fn parse(text: &str) -> Locale {
        if text == "fa" {
            Locale::Fa
        } else {
            Locale::En
        }
    }

    /// The page direction.
    pub fn dir(self) -> &'static str {
        match self {
            Locale::En => "ltr",
            Locale::Fa => "rtl",
        }
    }

    /// A text of the catalogue in this language; the key itself when it has none.
    pub fn t(self, key: &'static str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, fa)) => match self {
                Locale::En => en,
                Locale::Fa => fa,
            },
            None => key,
        }
    }

    /// `text` with its ASCII digits written in this language's digits.
    pub fn digits(self, text: &str) -> String {
        match self {
            Locale::En => text.to_owned(),
            Locale::Fa => persian_digits(text),
        }
    }

    /// An integer with thousands grouping, in this language's digits.
    pub fn number(self, value: i64) -> String {
        let grouped = group(value);
        match self {
            Locale::En => grouped,
            Locale::Fa => persian_digits(&grouped.replace(',', "٬")),
        }
    }

    /// An amount in rials, with toman beside it when `toman` is asked for.
    pub fn rials(self, value: i64, toman: bool) -> String {
        let rials = format!("{} {}", self.number(value), self.t("rials"));
        if toman {
            format!(
                "{rials} ({} {})",
                self.number(value.div_euclid(10)),
                self.t("toman")
            )
        } else {
            rials
        }
    }

    /// A civil date in this language's calendar: `2026-11-22`, or `۱۴۰۵/۰۹/۰۱`.
    pub fn date(self, date: CivilDate) -> String {
        match self {
            Locale::En => date.to_string(),
            Locale::Fa => persian_digits(&jalali_date(date)),
        }
    }

    /// An instant as its Tehran date and time.
    pub fn instant(self, unix_ms: i64) -> String {
        let (date, minute) = tehran(unix_ms);
        let time = format!("{:02}:{:02}", minute / 60, minute % 60);
        format!("{} {}", self.date(date), self.digits(&time))
    }
}

/// The Tehran calendar day and minute of the day of an instant.
pub fn tehran(unix_ms: i64) -> (CivilDate, i64) {
    let local = unix_ms + i64::from(TEHRAN_UTC_OFFSET_MINUTES) * MINUTE_MS;
    let days = local.div_euclid(DAY_MS);
    let minute = local.rem_euclid(DAY_MS) / MINUTE_MS;
    (CivilDate::from_days_since_epoch(days), minute)
}

/// The Solar Hijri (Jalali) date of a Gregorian date, `YYYY/MM/DD` in ASCII digits, by ICU4X's
/// Persian calendar.
pub fn jalali_date(date: CivilDate) -> String {
    let (year, month, day) = jalali(date);
    format!("{year:04}/{month:02}/{day:02}")
}

/// The Solar Hijri year, month and day of a Gregorian date.
pub fn jalali(date: CivilDate) -> (i32, u8, u8) {
    match icu_calendar::Date::try_new_iso(i32::from(date.year()), date.month(), date.day()) {
        Ok(iso) => {
            let persian = iso.to_calendar(icu_calendar::cal::Persian);
            (
                persian.era_year().year,
                persian.month().ordinal,
                persian.day_of_month().0,
            )
        }
        // A CivilDate is always a valid ISO date; keep a visible value rather than panic.
        Err(_) => (0, 0, 0),
    }
}

/// Persian digits for ASCII ones; everything else kept.
pub fn persian_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0x06F0 + d).unwrap_or(c),
            None => c,
        })
        .collect()
}

/// `1234567` as `1,234,567` (the sign kept).
pub fn group(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The catalogue: key, English, Persian.
const TEXTS: &[(&str, &str, &str)] = &[
    (
        "title",
        "Loyalty switch console",
        "کنسول سوییچ باشگاه مشتریان",
    ),
    ("dashboard", "Dashboard", "پیشخوان"),
    ("transactions", "Transactions", "تراکنش‌ها"),
    ("cards", "Cards", "کارت‌ها"),
    ("members", "Members", "اعضا"),
    ("merchants", "Merchants", "پذیرندگان"),
    ("terminals", "Terminals", "پایانه‌ها"),
    ("settlement", "Settlement", "تسویه"),
    ("loyalty", "Loyalty", "وفاداری"),
    ("reports", "Reports", "گزارش‌ها"),
    ("audit", "Audit log", "گزارش ممیزی"),
    ("settings", "Settings", "تنظیمات"),
    ("sign_in", "Sign in", "ورود"),
    ("sign_out", "Sign out", "خروج"),
    ("operator", "Operator", "اپراتور"),
    ("password", "Password", "گذرواژه"),
    ("token", "API token", "توکن API"),
    ("or", "or", "یا"),
    ("rials", "rials", "ریال"),
    ("toman", "toman", "تومان"),
    ("today", "Today", "امروز"),
    ("purchases", "Purchases", "خریدها"),
    ("gross", "Gross", "مبلغ کل"),
    ("discount", "Discount", "تخفیف"),
    ("fee", "Fee", "کارمزد"),
    ("store_credit", "Store credit", "اعتبار فروشگاهی"),
    ("club", "Club balance", "موجودی باشگاه"),
    ("bank_rest", "Bank card", "کارت بانکی"),
    ("cashback", "Cashback", "بازگشت وجه"),
    ("responses", "Responses by code", "پاسخ‌ها بر اساس کد"),
    ("code", "Code", "کد"),
    ("count", "Count", "تعداد"),
    ("last_hour", "Last hour", "ساعت گذشته"),
    (
        "throughput",
        "Approved purchases per minute",
        "خرید تأییدشده در دقیقه",
    ),
    ("p99", "p99 answer time", "صدک ۹۹ زمان پاسخ"),
    ("open_holds", "Open holds", "مبالغ در انتظار"),
    ("cycles", "Settlement cycles", "چرخه‌های تسویه"),
    ("search", "Search", "جستجو"),
    ("rrn", "RRN", "شماره مرجع"),
    ("card", "Card", "کارت"),
    ("terminal", "Terminal", "پایانه"),
    ("merchant", "Merchant", "پذیرنده"),
    ("state", "State", "وضعیت"),
    ("time", "Time", "زمان"),
    ("explanation", "Why it was priced so", "چرا این مبلغ"),
    ("rule", "Rule", "قاعده"),
    ("coupon", "Coupon", "کوپن"),
    ("tier", "Tier", "سطح"),
    ("snapshot", "Reference version", "نسخه داده‌های مرجع"),
    (
        "adds_up",
        "The explanation adds up to the amounts answered",
        "توضیح با مبالغ پاسخ داده‌شده برابر است",
    ),
    (
        "does_not_add_up",
        "The explanation does not add up",
        "توضیح با مبالغ برابر نیست",
    ),
    ("block", "Block", "مسدود کردن"),
    ("unblock", "Unblock", "رفع مسدودی"),
    ("renew", "Renew", "تمدید"),
    ("top_up", "Top up", "افزایش موجودی"),
    ("grant", "Grant store credit", "اعطای اعتبار فروشگاهی"),
    ("rotate_key", "Rotate key", "تعویض کلید"),
    ("status", "Status", "وضعیت"),
    ("expiry", "Expiry", "انقضا"),
    ("balance", "Balance", "موجودی"),
    ("history", "History", "تاریخچه"),
    ("language", "Language", "زبان"),
    (
        "show_toman",
        "Show toman beside rials",
        "نمایش تومان کنار ریال",
    ),
    ("save", "Save", "ذخیره"),
    ("download_csv", "Download CSV", "دریافت CSV"),
    ("next_page", "Next page", "صفحه بعد"),
    ("not_found", "Not found", "یافت نشد"),
    ("capture", "Capture", "تأیید نهایی"),
    ("reversal", "Reversal", "برگشت"),
    ("done", "Done", "انجام شد"),
    ("amount", "Amount", "مبلغ"),
    ("member", "Member", "عضو"),
    ("daily_volume", "Daily volume", "حجم روزانه"),
    ("tier_distribution", "Tier distribution", "توزیع سطوح"),
    ("rfm", "RFM", "RFM"),
    (
        "coupon_redemption",
        "Coupon redemption",
        "استفاده از کوپن‌ها",
    ),
    ("campaigns", "Campaigns", "کمپین‌ها"),
    ("segments", "Segments", "بخش‌ها"),
    ("surveys", "Surveys", "نظرسنجی‌ها"),
    ("payouts", "Payouts", "پرداخت‌ها"),
    ("exceptions", "Exceptions", "استثناها"),
    ("new_code", "New card code", "کد کارت جدید"),
    ("replace", "Replace", "جایگزینی"),
    ("percent", "Percent", "درصد"),
    ("discount_max", "Discount at most", "سقف تخفیف"),
    ("valid_days", "Valid days", "روزهای اعتبار"),
    ("issue_coupon", "Issue a coupon", "صدور کوپن"),
    ("no_tier", "No tier", "بدون سطح"),
    ("as_of", "As of", "به‌روز تا"),
    ("coupons_issued", "Coupons issued", "کوپن‌های صادرشده"),
    ("coupons_redeemed", "Coupons redeemed", "کوپن‌های استفاده‌شده"),
    ("from", "From", "از"),
    ("to", "To", "تا"),
    ("reached", "Members reached", "اعضای دریافت‌کننده"),
    (
        "messages_delivered",
        "Messages delivered",
        "پیامک‌های تحویل‌شده",
    ),
    ("campaign", "Campaign", "کمپین"),
    ("preview", "Preview", "پیش‌نمایش"),
    ("sample", "Sample", "نمونه"),
    ("report", "Report", "گزارش"),
    ("scores", "Scores", "امتیازها"),
    ("comments", "Comments", "نظرها"),
    ("computing", "Being computed since", "در حال محاسبه از"),
    ("showing", "Showing", "نمایش"),
    (
        "first_of_file",
        "The first ones only: the exceptions file has them all",
        "فقط نخستین موارد: فایل استثناها همه را دارد",
    ),
    ("cycle", "Cycle", "چرخه"),
    ("business_date", "Business date", "روز کاری"),
    ("cutoff", "Cutoff", "زمان بستن"),
    ("closed_at", "Closed", "بسته شده"),
    ("due_date", "Due", "موعد پرداخت"),
    ("name", "Name", "نام"),
    ("total", "Total", "جمع"),
    ("previous_page", "Previous page", "صفحه قبل"),
    ("club_captured", "Club captured", "برداشت از باشگاه"),
    ("adjustments", "Adjustments", "تعدیل‌ها"),
    ("carried_in", "Receivable brought in", "بدهی آورده"),
    ("payout", "Payout", "پرداختی"),
    ("carried_out", "Receivable carried out", "بدهی منتقل‌شده"),
    ("source", "Source", "منشأ"),
    ("reason", "Reason", "علت"),
    ("kind", "Kind", "نوع"),
    ("account", "Account", "حساب"),
    ("files", "Files", "فایل‌ها"),
    ("reconcile", "Reconcile", "تطبیق"),
    ("reconciliation", "Reconciliation", "تطبیق"),
    ("balanced", "Balanced", "متوازن"),
    ("checks_hold", "checks hold", "بررسی برقرار است"),
    ("not_balanced", "NOT BALANCED", "نامتوازن"),
    ("checks_fail", "checks fail", "بررسی برقرار نیست"),
    ("check", "Check", "بررسی"),
    ("left", "Left", "سمت چپ"),
    ("right", "Right", "سمت راست"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_jalali_conversion() {
        // 21 March 2025 was Nowruz, 1 Farvardin 1404; 22 November 2026 is 1 Azar 1405.
        let nowruz = CivilDate::parse("2025-03-21").unwrap_or_else(|_| unreachable!());
        assert_eq!(jalali_date(nowruz), "1404/01/01");
        let azar = CivilDate::parse("2026-11-22").unwrap_or_else(|_| unreachable!());
        assert_eq!(jalali_date(azar), "1405/09/01");
        assert_eq!(Locale::Fa.date(azar), "۱۴۰۵/۰۹/۰۱");
    }

    #[test]
    fn grouping_and_toman() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(-1000), "-1,000");
        assert_eq!(group(999), "999");
        assert_eq!(
            Locale::En.rials(125_000, true),
            "125,000 rials (12,500 toman)"
        );
        assert_eq!(Locale::Fa.number(1500), "۱٬۵۰۰");
    }
}
