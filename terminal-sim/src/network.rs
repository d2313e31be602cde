//! A generated network in the import file's format (`docs/import-format.md`): merchants with
//! terminals, members with cards (half with a phone), tiers earned by activity, rules and
//! balances, from a seed, so a demo or a load run provisions the switch through the same import
//! path operators use.

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Confirmed spend in the rolling year that earns silver: less than the largest purchase the
/// load sends (500 000 rials), so one purchase can earn it.
pub const SILVER_SPEND_RIALS_MIN: u64 = 300_000;
/// Confirmed spend in the rolling year that earns gold: about six average purchases.
pub const GOLD_SPEND_RIALS_MIN: u64 = 1_500_000;

/// How big a network to generate.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Merchants (every fifth is a market, the rest cafes; all active).
    pub merchants: usize,
    /// Terminals per merchant.
    pub terminals_per_merchant: usize,
    /// Cards (one member each).
    pub cards: usize,
}

/// A Luhn-valid PAN from 15 digits of `body`.
pub fn luhn_pan(prefix: &str, body: u64) -> String {
    let mut digits = format!("{prefix}{body:0width$}", width = 15 - prefix.len());
    let mut sum = 0;
    for (position, c) in digits.bytes().rev().enumerate() {
        let mut value = u32::from(c - b'0');
        if position % 2 == 0 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    digits.push(char::from(
        b'0' + u8::try_from((10 - sum % 10) % 10).unwrap_or(0),
    ));
    digits
}

/// The import file of a generated network.
pub fn generate(seed: u64, size: Size) -> Value {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut merchants = Vec::new();
    let mut terminals = Vec::new();
    for m in 0..size.merchants {
        let market = m % 5 == 0;
        merchants.push(json!({
            "code": format!("M-{m:05}"),
            "name": if market { format!("Market {m}") } else { format!("Cafe {m}") },
            "iban": iban(m),
            "status": "active",
            "currency": 364,
            "fee_rate": if market { "0.8" } else { "1.5" },
            "fee_rials_min": 500,
            "fee_rials_max": 500_000,
            "amount_rials_max": 500_000_000,
            "cashback_allowed": true,
            "credit_expiry_days": 90,
            "utc_offset_minutes": 210,
            "groups": [if market { "markets" } else { "food" }],
        }));
    }
    // Terminals are listed round-robin over merchants, so the first N connections of a run
    // (which take the first N terminals) spread over N merchants.
    for t in 0..size.terminals_per_merchant {
        for m in 0..size.merchants {
            let index = t * size.merchants + m;
            let mut tmk = [0_u8; 32];
            rng.fill(&mut tmk);
            terminals.push(json!({
                "terminal_id": format!("T{index:07}"),
                "ksi": format!("{:016X}", 0xA000_0000_0000_0000_u64 + u64::try_from(index).unwrap_or(0)),
                "tmk_hex": hex::encode(tmk),
                "merchant": format!("M-{m:05}"),
                "status": "active",
            }));
        }
    }
    let mut members = Vec::new();
    let mut cards = Vec::new();
    let mut club = Vec::new();
    let mut store_credit = Vec::new();
    for c in 0..size.cards {
        let mut member = json!({ "code": format!("MB-{c:07}") });
        // Half the members gave a mobile number, so half get SMS messages in the outbox.
        if c % 2 == 0 {
            member["phone"] = json!(format!("+98912{c:07}"));
        }
        members.push(member);
        // A few members were brought over from an earlier programme with a tier (a floor);
        // everyone else starts with none and earns silver and gold by buying.
        let tier = match c % 10 {
            0 => Some("gold"),
            1 => Some("silver"),
            _ => None,
        };
        let mut card = json!({
            "code": format!("C-{c:07}"),
            "pan": luhn_pan("603799", 10_000_000 + u64::try_from(c).unwrap_or(0)),
            "member": format!("MB-{c:07}"),
            "expiry": "2030-12",
            "status": "active",
        });
        if let Some(tier) = tier {
            card["tier"] = json!(tier);
        }
        cards.push(card);
        club.push(json!({ "card": format!("C-{c:07}"), "amount_rials": rng.gen_range(5..=50_u64) * 1_000_000 }));
        if size.merchants > 0 && c % 2 == 0 {
            store_credit.push(json!({
                "card": format!("C-{c:07}"),
                "merchant": format!("M-{:05}", c % size.merchants),
                "amount_rials": rng.gen_range(1..=20_u64) * 10_000,
            }));
        }
    }
    json!({
        "format": "lsw-import",
        "version": 1,
        "tiers": [
            // Low thresholds, so that seconds of traffic promote members: one purchase of
            // SILVER_SPEND_RIALS_MIN or two purchases earn silver.
            { "code": "silver", "name": "Silver", "cashback_rate": "2", "rank": 1,
              "spend_rials_min": SILVER_SPEND_RIALS_MIN, "purchases_min": 2 },
            { "code": "gold", "name": "Gold", "cashback_rate": "4", "rank": 2,
              "spend_rials_min": GOLD_SPEND_RIALS_MIN, "purchases_min": 6 }
        ],
        "merchant_groups": [
            { "code": "food", "name": "Cafes and restaurants" },
            { "code": "markets", "name": "Markets" }
        ],
        "member_groups": [],
        "terminal_groups": [],
        "merchants": merchants,
        "terminals": terminals,
        "members": members,
        "cards": cards,
        "rules": [
            { "code": "R-FOOD-10", "name": "10% at cafes", "percent": "10", "basket_rials_min": 100_000,
              "discount_rials_max": 200_000, "merchant_groups": ["food"] },
            { "code": "R-MARKET-5", "name": "5% at markets", "percent": "5",
              "discount_rials_max": 100_000, "merchant_groups": ["markets"] },
            { "code": "R-GOLD-50K", "name": "50 000 off for gold", "fixed_rials": 50_000,
              "basket_rials_min": 300_000, "tiers": ["gold"] }
        ],
        "balances": { "club": club, "store_credit": store_credit },
    })
}

/// A valid Iranian IBAN (ISO 13616 mod-97) for merchant `index`.
fn iban(index: usize) -> String {
    let bban = format!("0170000000{:012}", index + 1);
    // Move "IR00" to the end, letters to numbers (I = 18, R = 27), then 98 − (n mod 97).
    let numeric = format!("{bban}182700");
    let remainder = numeric.bytes().fold(0_u32, |acc, digit| {
        (acc * 10 + u32::from(digit - b'0')) % 97
    });
    format!("IR{:02}{bban}", 98 - remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pans_pass_luhn_and_ibans_check() {
        for body in [0_u64, 1, 12_345, 99_999_999] {
            let pan = luhn_pan("603799", body);
            assert_eq!(pan.len(), 16);
            assert!(
                protocol::Pan::parse(pan.as_bytes()).is_ok_and(|p| p.luhn_valid()),
                "{pan}"
            );
        }
        let value = generate(
            1,
            Size {
                merchants: 3,
                terminals_per_merchant: 2,
                cards: 10,
            },
        );
        assert_eq!(value["terminals"].as_array().map(Vec::len), Some(6));
        // The operators' validator accepts it: IBAN checksums, PANs, references, balances.
        let key = switch::domain::PanTokenKey::from_bytes([7; 32]);
        let parsed = switch::import::parse(value.to_string().as_bytes(), &key);
        assert!(parsed.is_ok(), "{:?}", parsed.err().map(|e| e.to_string()));
    }
}
