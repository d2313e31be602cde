//! Typed requests, validated against docs/protocol.md sections 4 and 7, and the one mapping of every
//! protocol-level failure to its response code ([`Reject::response_code`]).
//!
//! Validation is split the way section 7 orders the checks: [`Request::from_raw`] is step 2
//! (format, `30`); [`Request::verify`] is step 3 (MAC and envelope, `63`); [`Request::classify`]
//! is the first half of step 6 (`12`, `13`). Steps 4 and 5 (retransmission, clock) and the
//! business codes belong to the switch.

use bytes::Bytes;

use crate::codes::{Mti, NetworkCode, ProcessingCode, ResponseCode};
use crate::envelope::{self, EnvelopeError, Identity};
use crate::field::RawMessage;
use crate::field54;
use crate::field7::TransmissionTime;
use crate::field90::OriginalData;
use crate::ids::{Amount, Currency, Ksi, Rrn, Stan};
use crate::keys::WorkingKeys;
use crate::mac::{self, MacError};
use crate::spec;

/// Fields docs/protocol.md section 2 lists that a request may carry: a listed field a message does
/// not use is ignored; anything else is `30`. Fields 2 and 41 are listed only to be refused.
const LISTED: [u8; 17] = [
    1, 3, 4, 7, 11, 12, 13, 37, 38, 39, 49, 53, 54, 62, 64, 70, 90,
];
const LISTED_MAC_SECONDARY: u8 = spec::MAC_SECONDARY;

/// Why a request is malformed (step 2 of docs/protocol.md section 7; always `30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A mandatory field is absent.
    #[error("field {0} missing")]
    Missing(u8),
    /// A field's content does not fit its format.
    #[error("field {0} malformed")]
    Malformed(u8),
    /// Field 2 or 41 in clear.
    #[error("field {0} must not travel in clear")]
    InClear(u8),
    /// A field outside docs/protocol.md's list.
    #[error("field {0} is not part of lsti-1")]
    Unexpected(u8),
    /// The message is cut short or has bytes after its last field.
    #[error("message cut short or overlong at field {0}")]
    Cut(u8),
}

/// Why the terminal's credentials are refused (step 3; `63`, except a malformed PAN: `30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// Field 53 names no key the switch knows (the response carries no MAC).
    #[error("unknown ksi")]
    UnknownKsi,
    /// The MAC is missing, misplaced or wrong.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// The envelope does not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The envelope names another terminal than the one bound to the KSI.
    #[error("envelope names another terminal")]
    OtherTerminal,
    /// Field 7 is more than 300 s from the switch clock.
    #[error("transmission time outside the window")]
    Clock,
}

/// Every failure the protocol layer can find, each with its response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// `30`.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// `63`, or `30` for an envelope whose PAN is malformed.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// `12`: a processing code the MTI does not allow, or an unknown network code.
    #[error("processing code not allowed with this mti")]
    InvalidTransaction,
    /// `13`: zero purchase amount, or a non-zero inquiry amount.
    #[error("invalid amount")]
    InvalidAmount,
    /// `14`: the PAN fails the Luhn check.
    #[error("pan fails the luhn check")]
    Luhn,
}

impl Reject {
    /// The response code of this failure (docs/protocol.md sections 6 and 7).
    pub fn response_code(&self) -> ResponseCode {
        match self {
            Reject::Format(_) => ResponseCode::FormatError,
            Reject::Security(SecurityError::Envelope(EnvelopeError::Pan(_))) => {
                ResponseCode::FormatError
            }
            Reject::Security(_) => ResponseCode::Security,
            Reject::InvalidTransaction => ResponseCode::InvalidTransaction,
            Reject::InvalidAmount => ResponseCode::InvalidAmount,
            Reject::Luhn => ResponseCode::CardNotEnrolled,
        }
    }
}

/// A request whose fields are well-formed (step 2 passed).
#[derive(Debug, Clone)]
pub struct Request {
    /// 0100, 0200, 0220, 0420 or 0800.
    pub mti: Mti,
    /// Field 11.
    pub stan: Stan,
    /// Field 7, parsed.
    pub transmitted: TransmissionTime,
    /// Field 7 as sent (part of the retransmission key and of the envelope's AAD).
    pub transmitted_raw: [u8; 10],
    /// Field 53.
    pub ksi: Ksi,
    /// What the MTI carries.
    pub body: Body,
    raw: RawMessage,
}

/// The MTI-specific part of a request.
#[derive(Debug, Clone)]
pub enum Body {
    /// 0100 or 0200: a purchase or a balance inquiry.
    Financial(Financial),
    /// 0220.
    Confirm(FollowUp),
    /// 0420.
    Reversal(FollowUp),
    /// 0800, field 70 as sent (3 digits).
    Network([u8; 3]),
}

/// A 0100 or 0200.
#[derive(Clone)]
pub struct Financial {
    /// Field 3 as sent (6 digits; its meaning is checked by [`Request::classify`]).
    pub code: [u8; 6],
    /// Field 4, absent only in inquiries.
    pub amount: Option<Amount>,
    /// Field 49.
    pub currency: Currency,
    /// Field 62, the sealed identity (its `Debug` shows only its length).
    pub envelope: Bytes,
}

impl std::fmt::Debug for Financial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Financial")
            .field("code", &String::from_utf8_lossy(&self.code))
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("envelope_bytes", &self.envelope.len())
            .finish()
    }
}

/// A 0220 or 0420.
#[derive(Debug, Clone, Copy)]
pub struct FollowUp {
    /// Field 3 as sent; must equal the original's.
    pub code: [u8; 6],
    /// Field 4; must equal the original's.
    pub amount: Amount,
    /// Field 49.
    pub currency: Currency,
    /// Field 37: mandatory in 0220, optional in 0420.
    pub rrn: Option<Rrn>,
    /// Field 90.
    pub original: OriginalData,
}

/// What a request asks for, once step 6's `12`/`13` checks pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A purchase (0100/0200) of a non-zero amount.
    Purchase {
        /// Its funding.
        code: ProcessingCode,
        /// G.
        amount: Amount,
    },
    /// A balance inquiry (0100, single-phase).
    Inquiry {
        /// Club or store credit.
        code: ProcessingCode,
    },
    /// A confirm (0220).
    Confirm,
    /// A reversal (0420).
    Reversal,
    /// A network management message.
    Network(NetworkCode),
}

impl Request {
    /// Step 2: checks which fields are present and that each is well-formed.
    ///
    /// # Errors
    /// [`FormatError`] (answered `30`). A message whose MTI LSTI-1 does not list is not a
    /// request at all: check [`Mti::parse`] and [`Mti::is_request`] first; here it is
    /// reported as `Malformed(0)`.
    pub fn from_raw(raw: RawMessage) -> Result<Request, FormatError> {
        let mti = Mti::parse(&raw.mti_bytes())
            .filter(|mti| mti.is_request())
            .ok_or(FormatError::Malformed(0))?;
        if let Some(defect) = raw.defect() {
            return Err(FormatError::Cut(defect.field));
        }
        check_listed(&raw)?;
        let stan = Stan::parse(need(&raw, spec::STAN)?).map_err(|_| malformed(spec::STAN))?;
        let transmitted_raw: [u8; 10] = need(&raw, spec::TRANSMITTED)?
            .try_into()
            .map_err(|_| malformed(spec::TRANSMITTED))?;
        let transmitted =
            TransmissionTime::parse(&transmitted_raw).map_err(|_| malformed(spec::TRANSMITTED))?;
        let ksi = Ksi::parse(need(&raw, spec::KSI)?).map_err(|_| malformed(spec::KSI))?;
        if let Some(amounts) = raw.field(spec::ADDITIONAL_AMOUNTS) {
            field54::parse(amounts).map_err(|_| malformed(spec::ADDITIONAL_AMOUNTS))?;
        }
        let body = match mti {
            Mti::AuthorizationRequest | Mti::FinancialRequest => Body::Financial(financial(&raw)?),
            Mti::ConfirmAdvice => {
                let follow_up = follow_up(&raw)?;
                if follow_up.rrn.is_none() {
                    return Err(FormatError::Missing(spec::RRN));
                }
                Body::Confirm(follow_up)
            }
            Mti::ReversalAdvice => Body::Reversal(follow_up(&raw)?),
            Mti::NetworkRequest => Body::Network(digits(&raw, spec::NETWORK_CODE)?),
            Mti::AuthorizationResponse
            | Mti::FinancialResponse
            | Mti::ConfirmResponse
            | Mti::ReversalResponse
            | Mti::NetworkResponse => return Err(FormatError::Malformed(0)),
        };
        Ok(Request {
            mti,
            stan,
            transmitted,
            transmitted_raw,
            ksi,
            body,
            raw,
        })
    }

    /// Step 3: the MAC, then (for 0100/0200) the envelope: it must open under this terminal's
    /// keys, with this message's AAD, and name `terminal_id`.
    ///
    /// # Errors
    /// [`SecurityError`]; see [`Reject::response_code`] for the code of each.
    pub fn verify(
        &self,
        keys: &WorkingKeys,
        terminal_id: &crate::ids::TerminalId,
    ) -> Result<Option<Identity>, SecurityError> {
        mac::verify(keys, &self.raw)?;
        let Body::Financial(financial) = &self.body else {
            return Ok(None);
        };
        let aad = envelope::aad(
            *self.mti.as_bytes(),
            &self.transmitted_raw,
            self.stan,
            &self.ksi,
        );
        let identity = envelope::open(keys, &financial.envelope, &aad)?;
        if identity.terminal_id != *terminal_id {
            return Err(SecurityError::OtherTerminal);
        }
        Ok(Some(identity))
    }

    /// Step 6, first half: the processing code must be defined and allowed with the MTI (`12`),
    /// a purchase amount non-zero and an inquiry amount absent or zero (`13`).
    ///
    /// # Errors
    /// [`Reject::InvalidTransaction`] or [`Reject::InvalidAmount`].
    pub fn classify(&self) -> Result<Kind, Reject> {
        match &self.body {
            Body::Financial(financial) => {
                let code = ProcessingCode::parse(&financial.code)
                    .filter(|code| code.request_mti() == self.mti)
                    .ok_or(Reject::InvalidTransaction)?;
                let amount = financial.amount.unwrap_or(Amount::ZERO);
                match (code.is_inquiry(), amount == Amount::ZERO) {
                    (true, true) => Ok(Kind::Inquiry { code }),
                    (false, false) => Ok(Kind::Purchase { code, amount }),
                    (true, false) | (false, true) => Err(Reject::InvalidAmount),
                }
            }
            Body::Confirm(follow_up) | Body::Reversal(follow_up) => {
                ProcessingCode::parse(&follow_up.code).ok_or(Reject::InvalidTransaction)?;
                Ok(if matches!(self.body, Body::Confirm(_)) {
                    Kind::Confirm
                } else {
                    Kind::Reversal
                })
            }
            Body::Network(code) => NetworkCode::parse(code)
                .map(Kind::Network)
                .ok_or(Reject::InvalidTransaction),
        }
    }

    /// The parsed message (for echoing fields in the response and fingerprinting).
    pub fn raw(&self) -> &RawMessage {
        &self.raw
    }
}

fn check_listed(raw: &RawMessage) -> Result<(), FormatError> {
    for number in raw.bitmap().fields() {
        if number == spec::PAN || number == spec::TERMINAL_ID {
            return Err(FormatError::InClear(number));
        }
        if !LISTED.contains(&number) && number != LISTED_MAC_SECONDARY {
            return Err(FormatError::Unexpected(number));
        }
    }
    Ok(())
}

fn financial(raw: &RawMessage) -> Result<Financial, FormatError> {
    let code = digits(raw, spec::PROCESSING_CODE)?;
    let inquiry = ProcessingCode::parse(&code).is_some_and(ProcessingCode::is_inquiry);
    let amount = match raw.field(spec::AMOUNT) {
        Some(bytes) => Some(Amount::parse(bytes).map_err(|_| malformed(spec::AMOUNT))?),
        None if inquiry => None,
        None => return Err(FormatError::Missing(spec::AMOUNT)),
    };
    let currency = currency(raw)?;
    let envelope = raw
        .field_bytes(spec::ENVELOPE)
        .ok_or(FormatError::Missing(spec::ENVELOPE))?;
    Ok(Financial {
        code,
        amount,
        currency,
        envelope,
    })
}

fn follow_up(raw: &RawMessage) -> Result<FollowUp, FormatError> {
    let code = digits(raw, spec::PROCESSING_CODE)?;
    let amount = Amount::parse(need(raw, spec::AMOUNT)?).map_err(|_| malformed(spec::AMOUNT))?;
    let currency = currency(raw)?;
    let rrn = match raw.field(spec::RRN) {
        Some(bytes) => Some(Rrn::parse(bytes).map_err(|_| malformed(spec::RRN))?),
        None => None,
    };
    let original = OriginalData::parse(need(raw, spec::ORIGINAL_DATA)?)
        .map_err(|_| malformed(spec::ORIGINAL_DATA))?;
    Ok(FollowUp {
        code,
        amount,
        currency,
        rrn,
        original,
    })
}

fn currency(raw: &RawMessage) -> Result<Currency, FormatError> {
    Currency::parse(need(raw, spec::CURRENCY)?).map_err(|_| malformed(spec::CURRENCY))
}

fn need(raw: &RawMessage, number: u8) -> Result<&[u8], FormatError> {
    raw.field(number).ok_or(FormatError::Missing(number))
}

fn digits<const N: usize>(raw: &RawMessage, number: u8) -> Result<[u8; N], FormatError> {
    let bytes: [u8; N] = need(raw, number)?
        .try_into()
        .map_err(|_| malformed(number))?;
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(malformed(number));
    }
    Ok(bytes)
}

fn malformed(number: u8) -> FormatError {
    FormatError::Malformed(number)
}
