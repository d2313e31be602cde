//! The files of a cycle (formats in docs/settlement.md): the payout CSV, the JSON summary and
//! the exceptions CSV. Rendering is a pure function of the stored cycle, so a re-run writes the
//! same bytes, and the console serves the same bytes `lsw-settle` writes (writing is the
//! settlement crate's `files::write_all`).

use crate::domain::CivilDate;
use serde::Serialize;

use crate::settlement::cycle::{local_text, Amounts, AMOUNT_COLUMNS};
use crate::settlement::error::SettleError;
use crate::settlement::store::CycleRecord;

/// The summary's `format` value.
pub const SUMMARY_FORMAT: &str = "lsw-settlement-summary";
/// The summary's `version`: bumped when a field changes meaning or goes away.
pub const SUMMARY_VERSION: u32 = 1;

/// The file names of the cycle of `date`: payout, summary, exceptions.
pub fn names(date: CivilDate) -> [String; 3] {
    [
        format!("cycle-{date}-payout.csv"),
        format!("cycle-{date}-summary.json"),
        format!("cycle-{date}-exceptions.csv"),
    ]
}

/// The payout CSV: a header, one row per merchant line by merchant code, and the trailer
/// `TOTAL,<rows>,<the twelve amount totals>`.
pub fn payout_csv(cycle: &CycleRecord) -> String {
    let mut out = String::from("cycle_id,business_date,due_date,merchant_code,merchant_name,iban");
    for name in AMOUNT_COLUMNS {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for line in &cycle.lines {
        let fields = [
            cycle.id.to_string(),
            cycle.business_date.to_string(),
            cycle.due_date.to_string(),
            csv_field(&line.merchant_code),
            csv_field(&line.merchant_name),
            csv_field(&line.iban),
        ];
        out.push_str(&fields.join(","));
        push_amounts(&mut out, &line.amounts);
        out.push('\n');
    }
    out.push_str(&format!("TOTAL,{}", cycle.lines.len()));
    push_amounts(&mut out, &cycle.totals);
    out.push('\n');
    out
}

/// The exceptions CSV: advice confirms with a shortfall, late reversals adjusted in this
/// cycle, and receivables carried forward.
pub fn exceptions_csv(cycle: &CycleRecord) -> String {
    let mut out = String::from("cycle_id,kind,merchant_code,txn_id,rrn,account,amount_rials,at\n");
    for row in &cycle.exceptions {
        let fields = [
            cycle.id.to_string(),
            row.kind.to_owned(),
            csv_field(&row.merchant_code),
            row.txn_id.map(|id| id.to_string()).unwrap_or_default(),
            row.rrn.as_deref().map(csv_field).unwrap_or_default(),
            csv_field(&row.account),
            row.amount_rials.to_string(),
            row.at.map(local_text).unwrap_or_default(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out.push_str(&format!("TOTAL,{}\n", cycle.exceptions.len()));
    out
}

/// The JSON summary, keys in a fixed order, ending in a newline.
///
/// # Errors
/// [`SettleError::Json`] (not expected: every field is plain data).
pub fn summary_json(cycle: &CycleRecord) -> Result<String, SettleError> {
    let summary = Summary {
        format: SUMMARY_FORMAT,
        version: SUMMARY_VERSION,
        cycle_id: cycle.id,
        business_date: cycle.business_date.to_string(),
        cutoff_at: local_text(cycle.cutoff_at),
        closed_at: local_text(cycle.closed_at),
        due_date: cycle.due_date.to_string(),
        totals: AmountsDto::from(&cycle.totals),
        merchants: cycle
            .lines
            .iter()
            .map(|line| MerchantDto {
                merchant_code: &line.merchant_code,
                merchant_name: &line.merchant_name,
                iban: &line.iban,
                amounts: AmountsDto::from(&line.amounts),
            })
            .collect(),
        adjustments: cycle
            .adjustments
            .iter()
            .map(|adjustment| AdjustmentDto {
                id: adjustment.id,
                merchant_code: &adjustment.merchant_code,
                amount_rials: adjustment.amount_rials,
                source: &adjustment.source,
                txn_id: adjustment.txn_id,
                reason: &adjustment.reason,
                created_at: local_text(adjustment.created_at),
            })
            .collect(),
        exceptions: cycle.exceptions.len(),
    };
    let mut text = serde_json::to_string_pretty(&summary)?;
    text.push('\n');
    Ok(text)
}

#[derive(Serialize)]
struct Summary<'a> {
    format: &'static str,
    version: u32,
    cycle_id: i64,
    business_date: String,
    cutoff_at: String,
    closed_at: String,
    due_date: String,
    totals: AmountsDto,
    merchants: Vec<MerchantDto<'a>>,
    adjustments: Vec<AdjustmentDto<'a>>,
    exceptions: usize,
}

#[derive(Serialize)]
struct MerchantDto<'a> {
    merchant_code: &'a str,
    merchant_name: &'a str,
    iban: &'a str,
    #[serde(flatten)]
    amounts: AmountsDto,
}

#[derive(Serialize)]
struct AdjustmentDto<'a> {
    id: i64,
    merchant_code: &'a str,
    amount_rials: i64,
    source: &'a str,
    txn_id: Option<i64>,
    reason: &'a str,
    created_at: String,
}

#[derive(Serialize)]
struct AmountsDto {
    txn_count: i64,
    gross_rials: i64,
    discount_rials: i64,
    fee_rials: i64,
    store_credit_rials: i64,
    club_rials: i64,
    bank_rest_rials: i64,
    cashback_rials: i64,
    adjustments_rials: i64,
    carried_in_rials: i64,
    payout_rials: i64,
    carried_out_rials: i64,
}

impl From<&Amounts> for AmountsDto {
    fn from(amounts: &Amounts) -> AmountsDto {
        AmountsDto {
            txn_count: amounts.txn_count,
            gross_rials: amounts.gross,
            discount_rials: amounts.discount,
            fee_rials: amounts.fee,
            store_credit_rials: amounts.store_credit,
            club_rials: amounts.club,
            bank_rest_rials: amounts.bank_rest,
            cashback_rials: amounts.cashback,
            adjustments_rials: amounts.adjustments,
            carried_in_rials: amounts.carried_in,
            payout_rials: amounts.payout,
            carried_out_rials: amounts.carried_out,
        }
    }
}

fn push_amounts(out: &mut String, amounts: &Amounts) {
    for value in amounts.columns() {
        out.push(',');
        out.push_str(&value.to_string());
    }
}

/// Quotes a field that holds a comma, a quote or a line break (RFC 4180), doubling quotes.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_quoting() {
        for (text, expected) in [
            ("Test Cafe", "Test Cafe"),
            ("Cafe, Bar", "\"Cafe, Bar\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("", ""),
        ] {
            assert_eq!(csv_field(text), expected);
        }
    }
}
