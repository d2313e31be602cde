//! Responses: the switch builds them ([`build`]), the terminal reads them ([`Response::parse`]).
//!
//! A response echoes the request's fields 3, 4, 7, 11, 49 and 53, and 37, 70 and 90 where the
//! request has them (docs/protocol.md section 4). A decline carries field 39 only, besides the echo
//! (section 7).

use bytes::BytesMut;

use crate::builder::{BuildError, MessageBuilder};
use crate::codes::{Mti, ResponseCode};
use crate::field::RawMessage;
use crate::field54::{self, AmountSet};
use crate::field7::TransmissionTime;
use crate::ids::{ApprovalCode, Currency, Malformed, Rrn, Stan};
use crate::keys::WorkingKeys;
use crate::mac::{self, MacError};
use crate::spec;

/// What the switch adds to the echoed fields.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// Field 39.
    pub code: ResponseCode,
    /// Field 37, assigned by the switch in approved 0110/0210.
    pub rrn: Option<Rrn>,
    /// Field 38, set on approval.
    pub approval: Option<ApprovalCode>,
    /// Field 54, already encoded (amount sets).
    pub amounts: Option<&'a [u8]>,
    /// Fields 12 and 13 of an 0810: the switch's UTC time, in Unix seconds.
    pub switch_time: Option<i64>,
}

impl Answer<'_> {
    /// A response carrying only its code (declines, confirms, reversals, network).
    pub fn code(code: ResponseCode) -> Answer<'static> {
        Answer {
            code,
            rrn: None,
            approval: None,
            amounts: None,
            switch_time: None,
        }
    }
}

/// Builds the response to `request` into `out`: the response MTI, the echoed fields, the
/// answer's fields and, when the switch knows the KSI's keys, the MAC.
///
/// `request_mti` is the request's MTI as listed in section 4; fields the request does not have
/// (or that could not be read, in a format error) are not echoed.
///
/// # Errors
/// [`BuildError`] only for a programmer error (an answer field of the wrong length).
pub fn build(
    out: &mut BytesMut,
    request_mti: Mti,
    request: &RawMessage,
    answer: &Answer<'_>,
    keys: Option<&WorkingKeys>,
) -> Result<(), BuildError> {
    build_from(out, request_mti, Echo::Request(request), answer, keys)
}

/// Builds only what the switch adds: the response MTI and the answer's fields, with nothing
/// echoed but field 11 (`stan`, so that the record parses as any message) and no MAC. This
/// is the record the switch keeps of an answer so that it can build the
/// same response again for a retransmission, whose echoed fields are the original's (they are
/// in the retransmission key or its "same content" fields, docs/protocol.md section 7).
/// [`RawMessage::parse`] reads it back; fields 37, 38, 39 and 54 are where a full response
/// has them, so the full response the switch sent reads back the same way.
///
/// # Errors
/// [`BuildError`] only for a programmer error (an answer field of the wrong length).
pub fn build_record(
    out: &mut BytesMut,
    request_mti: Mti,
    stan: Stan,
    answer: &Answer<'_>,
) -> Result<(), BuildError> {
    build_from(out, request_mti, Echo::Stan(stan), answer, None)
}

/// Where a response's echoed fields come from.
#[derive(Clone, Copy)]
enum Echo<'a> {
    /// The request.
    Request(&'a RawMessage),
    /// Field 11 only.
    Stan(Stan),
}

fn build_from(
    out: &mut BytesMut,
    request_mti: Mti,
    echo: Echo<'_>,
    answer: &Answer<'_>,
    keys: Option<&WorkingKeys>,
) -> Result<(), BuildError> {
    let stan = match echo {
        Echo::Stan(stan) => Some(stan.to_digits()),
        Echo::Request(_) => None,
    };
    let echoed = |number: u8| match echo {
        Echo::Request(request) => request.field(number),
        Echo::Stan(_) if number == spec::STAN => stan.as_ref().map(|digits| &digits[..]),
        Echo::Stan(_) => None,
    };
    let mti = request_mti.response().unwrap_or(request_mti);
    let mut builder = MessageBuilder::new(out, *mti.as_bytes());
    let echo_rrn = matches!(request_mti, Mti::ConfirmAdvice | Mti::ReversalAdvice);
    for number in [
        spec::PROCESSING_CODE,
        spec::AMOUNT,
        spec::TRANSMITTED,
        spec::STAN,
    ] {
        if let Some(value) = echoed(number) {
            builder.field(number, value)?;
        }
    }
    if let Some(now) = answer.switch_time {
        let digits = TransmissionTime::from_unix(now).to_digits();
        let (date, time) = digits.split_at(4);
        builder.field(spec::LOCAL_TIME, time)?;
        builder.field(spec::LOCAL_DATE, date)?;
    }
    let rrn = answer.rrn.map(|rrn| *rrn.as_bytes());
    match (rrn, echo_rrn.then(|| echoed(spec::RRN)).flatten()) {
        (Some(assigned), _) => builder.field(spec::RRN, &assigned)?,
        (None, Some(echoed)) => builder.field(spec::RRN, echoed)?,
        (None, None) => &mut builder,
    };
    if let Some(approval) = answer.approval {
        builder.field(spec::APPROVAL_CODE, approval.as_bytes())?;
    }
    builder.field(spec::RESPONSE_CODE, answer.code.as_bytes())?;
    for number in [spec::CURRENCY, spec::KSI] {
        if let Some(value) = echoed(number) {
            builder.field(number, value)?;
        }
    }
    if let Some(amounts) = answer.amounts {
        builder.field(spec::ADDITIONAL_AMOUNTS, amounts)?;
    }
    for number in [spec::NETWORK_CODE, spec::ORIGINAL_DATA] {
        if let Some(value) = echoed(number) {
            builder.field(number, value)?;
        }
    }
    match keys {
        Some(keys) => builder.finish_with_mac(keys),
        None => builder.finish(),
    }
}

/// A response as a terminal reads it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The response MTI.
    pub mti: Mti,
    /// Field 11.
    pub stan: Stan,
    /// Field 39.
    pub code: ResponseCode,
    /// Field 37, if present.
    pub rrn: Option<Rrn>,
    /// Field 38, if present.
    pub approval: Option<ApprovalCode>,
    /// Field 54's sets (empty when absent).
    pub amounts: Vec<AmountSet>,
    /// Field 49, if present.
    pub currency: Option<Currency>,
    /// Whether a MAC (field 64 or 128) is present.
    pub has_mac: bool,
}

/// Why bytes are not a readable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The MTI is not a response MTI of LSTI-1, or a field is cut short.
    #[error("not an lsti-1 response")]
    NotResponse,
    /// A field does not fit its format.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// The MAC does not verify.
    #[error(transparent)]
    Mac(#[from] MacError),
}

impl Response {
    /// Reads a response; when `keys` is given and the response carries a MAC, verifies it.
    ///
    /// # Errors
    /// [`ResponseError`] when the message is not a well-formed response or its MAC is wrong.
    pub fn parse(raw: &RawMessage, keys: Option<&WorkingKeys>) -> Result<Response, ResponseError> {
        let mti = Mti::parse(&raw.mti_bytes())
            .filter(|mti| !mti.is_request())
            .ok_or(ResponseError::NotResponse)?;
        if raw.defect().is_some() {
            return Err(ResponseError::NotResponse);
        }
        let field = |n| {
            raw.field(n).ok_or(Malformed {
                what: "response field",
            })
        };
        let stan = Stan::parse(field(spec::STAN)?)?;
        let code = ResponseCode::parse(field(spec::RESPONSE_CODE)?).ok_or(Malformed {
            what: "response code",
        })?;
        let rrn = raw.field(spec::RRN).map(Rrn::parse).transpose()?;
        let approval = raw
            .field(spec::APPROVAL_CODE)
            .map(ApprovalCode::parse)
            .transpose()?;
        let currency = raw.field(spec::CURRENCY).map(Currency::parse).transpose()?;
        let amounts = match raw.field(spec::ADDITIONAL_AMOUNTS) {
            Some(text) => field54::parse(text)?,
            None => Vec::new(),
        };
        let has_mac = raw.bitmap().has(spec::MAC_PRIMARY) || raw.bitmap().has(spec::MAC_SECONDARY);
        if let (true, Some(keys)) = (has_mac, keys) {
            mac::verify(keys, raw)?;
        }
        Ok(Response {
            mti,
            stan,
            code,
            rrn,
            approval,
            amounts,
            currency,
            has_mac,
        })
    }

    /// The amount of the set of `kind`, if present.
    pub fn amount(&self, kind: field54::AmountKind) -> Option<u64> {
        self.amounts
            .iter()
            .find(|set| set.kind == kind)
            .map(|set| set.amount.get())
    }
}
