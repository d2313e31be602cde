//! The payment gateway's callback: its fields, parsed and checked once its signature is verified.

use serde_json::Value;

use crate::domain::Rials;

use super::REFERENCE_CHARS_MAX;

/// A callback's fields, once its signature is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The gateway's payment reference: one payment, however often it is posted.
    pub payment_reference: String,
    /// The order it pays.
    pub order_reference: String,
    /// The amount paid.
    pub amount: Rials,
    /// The currency paid in.
    pub currency: String,
    /// `true` for `"status": "paid"`, `false` for `"failed"`.
    pub paid: bool,
}

/// Parses a callback's body: every problem with its field. Unknown fields are ignored (a
/// gateway adds its own).
///
/// # Errors
/// The problems, field by field.
pub fn parse_callback(body: &[u8]) -> Result<Callback, Vec<(String, String)>> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        _ => return Err(vec![("body".to_owned(), "not a JSON object".to_owned())]),
    };
    let mut problems = Vec::new();
    let reference = |field: &str, problems: &mut Vec<(String, String)>| match object
        .get(field)
        .and_then(Value::as_str)
    {
        Some(text) if is_reference(text) => text.to_owned(),
        _ => {
            problems.push((
                field.to_owned(),
                "required: 1..=64 printable ASCII characters".to_owned(),
            ));
            String::new()
        }
    };
    let payment_reference = reference("payment_reference", &mut problems);
    let order_reference = reference("order_reference", &mut problems);
    let amount = object
        .get("amount_rials")
        .and_then(Value::as_i64)
        .filter(|amount| *amount > 0)
        .and_then(Rials::new);
    if amount.is_none() {
        problems.push((
            "amount_rials".to_owned(),
            "required, an integer 1..=999999999999".to_owned(),
        ));
    }
    let currency = match object.get("currency").and_then(Value::as_str) {
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
            code.to_owned()
        }
        _ => {
            problems.push((
                "currency".to_owned(),
                "required: three capital letters (ISO 4217)".to_owned(),
            ));
            String::new()
        }
    };
    let paid = match object.get("status").and_then(Value::as_str) {
        Some("paid") => Some(true),
        Some("failed") => Some(false),
        _ => {
            problems.push(("status".to_owned(), "required: paid or failed".to_owned()));
            None
        }
    };
    match (amount, paid) {
        (Some(amount), Some(paid)) if problems.is_empty() => Ok(Callback {
            payment_reference,
            order_reference,
            amount,
            currency,
            paid,
        }),
        _ => Err(problems),
    }
}

fn is_reference(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= REFERENCE_CHARS_MAX
        && text.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::top_up::Outcome;

    #[test]
    fn a_callback_parses_and_each_bad_field_is_named() {
        let body = br#"{"payment_reference":"PG-1","order_reference":"TU01","amount_rials":5000,"currency":"IRR","status":"paid","extra":1}"#;
        let parsed = parse_callback(body);
        assert_eq!(
            parsed.map(|c| (c.payment_reference, c.amount.get(), c.paid)),
            Ok(("PG-1".to_owned(), 5000, true))
        );
        let bad = br#"{"payment_reference":"","order_reference":"TU01","amount_rials":-5,"currency":"irr","status":"maybe"}"#;
        let fields: Vec<String> = parse_callback(bad)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            ["payment_reference", "amount_rials", "currency", "status"]
        );
        assert!(parse_callback(b"[1]").is_err());
        assert!(parse_callback(b"").is_err());
    }

    #[test]
    fn every_outcome_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> =
            Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
