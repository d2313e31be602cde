//! What the engine answers: the fields the switch adds to a response (docs/design.md section 1: the
//! engine returns response fields). The response bytes are built from them and the request,
//! and MACed, off the engine's task ([`AnswerFields::response`]): by the committer's writer for
//! answers that wait for their batch, and for the simulator by its own loop.
//!
//! The answered window keeps these fields, not bytes. A retransmission is answered by building
//! the response again from the retransmission itself, which gives the same bytes: every echoed
//! field is in the retransmission key (KSI, MTI, fields 7 and 11) or in its "same content"
//! fields (3, 4, 49, 90 and 37, docs/protocol.md section 7), and the MAC is a function of the bytes
//! and the KSI's keys. Field 70 is the one echoed field in neither; only network messages carry
//! it, and the window keeps of those only format declines, whose retransmission then echoes its
//! own field 70. The durable record ([`AnswerFields::record`]) is the same fields as an
//! ISO 8583 message with nothing echoed and no MAC.

use bytes::{Bytes, BytesMut};
use protocol::field54::{self, PurchaseAmounts, SETS_MAX, SET_BYTES};
use protocol::response::{self, Answer};
use protocol::{
    spec, Amount, ApprovalCode, Currency, Mti, RawMessage, Request, ResponseCode, Rrn, Stan,
    WorkingKeys,
};

use crate::domain::Rials;
use crate::engine::decline::approved;
use crate::engine::state::{Txn, TxnId};

/// What the answered window keeps of an answer. It holds a day of answers, so an entry is
/// kept small: an approved purchase's fields are its transaction's, which the engine keeps
/// anyway ([`purchase_answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// An approved purchase: [`purchase_answer`] of the transaction, in the request's currency
    /// (field 49, one of the retransmission's "same content" fields).
    Purchase(TxnId, Currency),
    /// An answer carrying its code only (declines, confirms, reversals).
    Code(ResponseCode),
    /// Any other answer (balance inquiries).
    Fields(Box<AnswerFields>),
}

impl Kept {
    /// What to keep of `answer`, given the transaction it approved if it approved one: the
    /// transaction is kept in its place only when it gives back exactly `answer`.
    pub fn of(answer: AnswerFields, approved: Option<(&Txn, Currency)>) -> Kept {
        if let Some((txn, currency)) = approved {
            if purchase_answer(txn, currency) == answer {
                return Kept::Purchase(txn.id, currency);
            }
        }
        if answer == AnswerFields::code(answer.code) {
            Kept::Code(answer.code)
        } else {
            Kept::Fields(Box::new(answer))
        }
    }
}

/// The answer to an approved purchase: its transaction's RRN, the approval code made of it,
/// and field 54's six sets of the transaction's amounts in `currency`.
pub fn purchase_answer(txn: &Txn, currency: Currency) -> AnswerFields {
    let amounts = &txn.amounts;
    let text = PurchaseAmounts {
        discount: to_amount(amounts.discount),
        fee: to_amount(amounts.fee),
        store_credit: to_amount(amounts.store_credit),
        club: to_amount(amounts.club),
        bank_rest: to_amount(amounts.bank_rest),
        cashback: to_amount(amounts.cashback),
    }
    .encode(currency);
    let mut sets = AmountsText::default();
    sets.push(&text);
    AnswerFields {
        code: approved(),
        rrn: Some(txn.rrn),
        approval: Some(approval_code(txn.rrn)),
        switch_time: None,
        amounts: sets,
    }
}

/// The currency of an answer's field 54 (its first set's), if it has one.
pub fn currency_of(answer: &AnswerFields) -> Option<Currency> {
    field54::parse(answer.amounts.as_slice())
        .ok()?
        .first()
        .map(|set| set.currency)
}

/// A field 54 amount. Every amount of rials is one: both are n12 (`Rials::MAX` is the width of
/// field 4), and rials are never negative.
pub(crate) fn to_amount(rials: Rials) -> Amount {
    let amount = u64::try_from(rials.get())
        .ok()
        .and_then(|value| Amount::new(value).ok());
    match amount {
        Some(amount) => amount,
        None => unreachable!("an amount of rials is an n12 amount"),
    }
}

// Field 4's bound and the largest amount of rials are the same n12 bound.
const _: () = assert!(protocol::ids::AMOUNT_MAX == 999_999_999_999);
const _: () = assert!(Rials::MAX.get() == 999_999_999_999);

/// The approval code of an approved purchase: the RRN's last six digits.
pub(crate) fn approval_code(rrn: Rrn) -> ApprovalCode {
    let digits = rrn.as_bytes();
    ApprovalCode::parse(digits.get(6..).unwrap_or(b"000000"))
        .unwrap_or_else(|_| fallback_approval())
}

fn fallback_approval() -> ApprovalCode {
    match ApprovalCode::parse(b"000000") {
        Ok(code) => code,
        Err(_) => unreachable!("a literal approval code is valid"),
    }
}

/// The fields of an answer, owned and fixed in size (no allocation per decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnswerFields {
    /// Field 39.
    pub code: ResponseCode,
    /// Field 37, assigned by the switch.
    pub rrn: Option<Rrn>,
    /// Field 38.
    pub approval: Option<ApprovalCode>,
    /// Fields 12 and 13 of an 0810 (Unix seconds). Network answers are never kept.
    pub switch_time: Option<i64>,
    /// Field 54, encoded.
    pub amounts: AmountsText,
}

/// Why a kept answer record cannot be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("answer record unreadable: {what}")]
pub struct RecordError {
    /// What is wrong with it.
    pub what: &'static str,
}

impl AnswerFields {
    /// An answer carrying only its code (declines, confirms, reversals).
    pub fn code(code: ResponseCode) -> AnswerFields {
        AnswerFields {
            code,
            rrn: None,
            approval: None,
            switch_time: None,
            amounts: AmountsText::default(),
        }
    }

    /// The protocol's view of these fields, for building.
    pub fn as_answer(&self) -> Answer<'_> {
        Answer {
            code: self.code,
            rrn: self.rrn,
            approval: self.approval,
            amounts: (!self.amounts.is_empty()).then(|| self.amounts.as_slice()),
            switch_time: self.switch_time,
        }
    }

    /// The response to `request`: its echoed fields, these fields and the MAC under `keys`,
    /// built in `out` (reused between calls).
    ///
    /// # Panics
    /// Never for a request the protocol parsed: a build error is an answer field of the wrong
    /// length, which the types here rule out.
    pub fn response(&self, out: &mut BytesMut, request: &Request, keys: &WorkingKeys) -> Bytes {
        out.clear();
        let built = response::build(
            out,
            request.mti,
            request.raw(),
            &self.as_answer(),
            Some(keys),
        );
        assert!(built.is_ok(), "response build failed: {built:?}");
        out.split().freeze()
    }

    /// The durable record of this answer to the request of `mti` and `stan` (the `response`
    /// column of `answered_messages`).
    ///
    /// # Panics
    /// As [`AnswerFields::response`].
    pub fn record(&self, mti: Mti, stan: Stan) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(64 + self.amounts.as_slice().len());
        let built = response::build_record(&mut out, mti, stan, &self.as_answer());
        assert!(built.is_ok(), "answer record build failed: {built:?}");
        out.to_vec()
    }

    /// Reads a record back. A whole response (as rows written before records were kept as
    /// fields) reads the same: the fields are where a record has them.
    ///
    /// # Errors
    /// [`RecordError`] when the bytes are not a message with a field 39 and well-formed
    /// fields 37, 38 and 54.
    pub fn from_record(bytes: &[u8]) -> Result<AnswerFields, RecordError> {
        let raw = RawMessage::parse(Bytes::copy_from_slice(bytes))
            .ok()
            .filter(|raw| raw.defect().is_none())
            .ok_or(RecordError {
                what: "not an ISO 8583 message",
            })?;
        let code = raw
            .field(spec::RESPONSE_CODE)
            .and_then(ResponseCode::parse)
            .ok_or(RecordError { what: "field 39" })?;
        let rrn = raw
            .field(spec::RRN)
            .map(Rrn::parse)
            .transpose()
            .map_err(|_| RecordError { what: "field 37" })?;
        let approval = raw
            .field(spec::APPROVAL_CODE)
            .map(ApprovalCode::parse)
            .transpose()
            .map_err(|_| RecordError { what: "field 38" })?;
        let mut amounts = AmountsText::default();
        if let Some(text) = raw.field(spec::ADDITIONAL_AMOUNTS) {
            if !amounts.try_push(text) {
                return Err(RecordError { what: "field 54" });
            }
        }
        Ok(AnswerFields {
            code,
            rrn,
            approval,
            switch_time: None,
            amounts,
        })
    }
}

/// Field 54 of an answer: at most six sets, kept inline (an allocation per decision
/// otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountsText {
    bytes: [u8; SET_BYTES * SETS_MAX],
    len: u8,
}

/// In the journal: the sets' bytes, without the unused room.
impl serde::Serialize for AmountsText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(self.as_slice(), serializer)
    }
}

impl<'de> serde::Deserialize<'de> for AmountsText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = <Vec<u8> as serde::Deserialize>::deserialize(deserializer)?;
        let mut text = AmountsText::default();
        if text.try_push(&bytes) {
            Ok(text)
        } else {
            Err(serde::de::Error::custom(
                "field 54: whole sets, at most six",
            ))
        }
    }
}

impl Default for AmountsText {
    fn default() -> AmountsText {
        AmountsText {
            bytes: [0; SET_BYTES * SETS_MAX],
            len: 0,
        }
    }
}

impl AmountsText {
    /// Appends `sets` (whole sets). More than [`SETS_MAX`] sets is a programmer error.
    pub(crate) fn push(&mut self, sets: &[u8]) {
        let pushed = self.try_push(sets);
        assert!(pushed, "field 54 takes whole sets, at most six");
    }

    /// Appends `sets` when they are whole sets and fit; otherwise changes nothing and says so.
    fn try_push(&mut self, sets: &[u8]) -> bool {
        let start = usize::from(self.len);
        let end = start + sets.len();
        if sets.len() % SET_BYTES != 0 {
            return false;
        }
        let (Some(slot), Ok(len)) = (self.bytes.get_mut(start..end), u8::try_from(end)) else {
            return false;
        };
        slot.copy_from_slice(sets);
        self.len = len;
        true
    }

    /// Whether no set was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use protocol::field54::{AmountKind, AmountSet};
    use protocol::{Amount, Currency};

    fn approved_purchase() -> AnswerFields {
        let mut amounts = AmountsText::default();
        let currency = Currency::parse(b"364").unwrap();
        for (kind, value) in [
            (AmountKind::Discount, 1_500),
            (AmountKind::MerchantFee, 270),
        ] {
            amounts.push(&AmountSet::new(kind, currency, Amount::new(value).unwrap()).encode());
        }
        AnswerFields {
            code: ResponseCode::parse(b"00").unwrap(),
            rrn: Some(Rrn::from_number(123_456_789_012).unwrap()),
            approval: Some(ApprovalCode::parse(b"789012").unwrap()),
            switch_time: None,
            amounts,
        }
    }

    #[test]
    fn a_record_reads_back_as_the_same_fields() {
        for answer in [
            approved_purchase(),
            AnswerFields::code(ResponseCode::parse(b"51").unwrap()),
        ] {
            for mti in [Mti::FinancialRequest, Mti::ConfirmAdvice] {
                let record = answer.record(mti, Stan::parse(b"000042").unwrap());
                assert_eq!(AnswerFields::from_record(&record), Ok(answer));
            }
        }
    }

    #[test]
    fn a_record_is_refused_when_it_is_not_an_answer() {
        assert!(AnswerFields::from_record(b"").is_err());
        assert!(AnswerFields::from_record(b"0210garbage").is_err());
        let mut out = BytesMut::new();
        let answer = approved_purchase();
        // No field 39: not an answer.
        let mut builder = protocol::builder::MessageBuilder::new(&mut out, *b"0210");
        builder.field(spec::STAN, b"000042").unwrap();
        builder
            .field(spec::RRN, answer.rrn.unwrap().as_bytes())
            .unwrap();
        builder.finish().unwrap();
        assert_eq!(
            AnswerFields::from_record(&out),
            Err(RecordError { what: "field 39" })
        );
    }

    #[test]
    fn field_54_takes_only_whole_sets_that_fit() {
        let mut amounts = AmountsText::default();
        assert!(!amounts.try_push(&[b'0'; SET_BYTES - 1]));
        assert!(amounts.is_empty());
        for _ in 0..SETS_MAX {
            assert!(amounts.try_push(&[b'0'; SET_BYTES]));
        }
        assert!(!amounts.try_push(&[b'0'; SET_BYTES]));
        assert_eq!(amounts.as_slice().len(), SET_BYTES * SETS_MAX);
    }
}
