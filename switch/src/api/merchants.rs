//! A merchant's JSON: its record in the import format (`docs/import-format.md`), so what
//! `GET /api/v1/merchants/{code}` returns can be sent back with `PUT`. The handlers are the
//! record kind [`crate::api::records::MERCHANTS`].

use serde_json::{json, Value};

use crate::domain::reference::MerchantRecord;
use crate::domain::MerchantStatus;

/// A merchant as the import format writes it.
pub fn view(merchant: &MerchantRecord) -> Value {
    let profile = &merchant.profile;
    let groups: Vec<&str> = merchant.groups.iter().map(|code| code.as_str()).collect();
    json!({
        "code": merchant.code.as_str(),
        "name": profile.name,
        "iban": profile.iban.as_str(),
        "status": match profile.status {
            MerchantStatus::Active => "active",
            MerchantStatus::Inactive => "inactive",
        },
        "currency": profile.currency.get(),
        "fee_rate": profile.fee.rate().to_string(),
        "fee_rials_min": profile.fee.fee_rials_min().get(),
        "fee_rials_max": profile.fee.fee_rials_max().get(),
        "amount_rials_max": profile.amount_rials_max.get(),
        "cashback_allowed": profile.cashback_allowed,
        "credit_expiry_days": profile.credit_expiry_days,
        "utc_offset_minutes": profile.utc_offset_minutes,
        "groups": groups,
    })
}
