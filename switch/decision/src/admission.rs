//! Admission: steps 2 and 3 of docs/protocol.md section 7 for one frame, as a pure function. The
//! server runs it on every frame; tests and the deterministic simulation run the same code, so
//! what they drive the engine with is exactly what a connection would.

use bytes::{Bytes, BytesMut};
use protocol::message::{Reject, SecurityError};
use protocol::response::{self, Answer};
use protocol::{Ksi, Mti, RawMessage, Request, ResponseCode, WorkingKeys};

use crate::domain::{PanToken, PanTokenKey};
use crate::engine::{self, CardRef, Fingerprint};
use crate::snapshot::Snapshot;

/// What becomes of a frame.
// Admitted is the common, large case; boxing it would add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Admission {
    /// MTI or field 11 unreadable, or an MTI LSTI-1 does not list: no response, and it counts
    /// towards the connection's unparseable frames.
    Unparseable,
    /// Refused before the engine (`30` or `63`): the response to send.
    Refused {
        /// The response bytes.
        response: Bytes,
        /// Its code.
        code: ResponseCode,
        /// The request MTI (for metrics).
        mti: Mti,
    },
    /// Well-formed, from a known terminal, MAC and envelope good: for the engine.
    Admitted(Admitted),
}

/// A request that passed admission, as the engine takes it.
#[derive(Debug)]
pub struct Admitted {
    /// The request.
    pub request: Request,
    /// The card, tokenised (purchases and inquiries).
    pub card: Option<CardRef>,
    /// Its content's hash for the idempotency window ([`engine::fingerprint`]), taken here,
    /// on the connection's task, so that the engine's single task does not spend two SHA-256
    /// blocks per message on it.
    pub fingerprint: Fingerprint,
}

impl Admitted {
    /// `request` and its card, with their fingerprint.
    pub fn new(request: Request, card: Option<CardRef>) -> Admitted {
        let fingerprint = engine::fingerprint(&request, card.as_ref());
        Admitted {
            request,
            card,
            fingerprint,
        }
    }
}

/// Parses, validates and verifies one frame against `snapshot`; the PAN is turned into its
/// keyed token here and goes no further.
pub fn admit(message: Bytes, snapshot: &Snapshot, pan_key: &PanTokenKey) -> Admission {
    let Ok(raw) = RawMessage::parse(message) else {
        return Admission::Unparseable;
    };
    let Some(mti) = Mti::parse(&raw.mti_bytes()).filter(|mti| mti.is_request()) else {
        return Admission::Unparseable;
    };
    let ksi = raw
        .field(protocol::spec::KSI)
        .and_then(|bytes| Ksi::parse(bytes).ok());
    // The keys of the KSI the request names: a terminal's current key, or its previous one
    // during a rotation's overlap (whose end the engine checks, as it holds the clock).
    let keyed = ksi.and_then(|ksi| snapshot.keys_by_ksi(ksi.as_bytes()));
    let terminal = keyed.map(|keyed| keyed.terminal);
    let keys = keyed.map(|keyed| keyed.keys);
    let request = match Request::from_raw(raw.clone()) {
        Ok(request) => request,
        Err(error) => return refuse(mti, &raw, Reject::from(error), keys),
    };
    let Some(terminal) = terminal else {
        return refuse(mti, &raw, Reject::from(SecurityError::UnknownKsi), None);
    };
    let Ok(expected) = protocol::TerminalId::parse(terminal.terminal_id.as_bytes()) else {
        return refuse(mti, &raw, Reject::from(SecurityError::OtherTerminal), keys);
    };
    let Some(keys) = keys else {
        return refuse(mti, &raw, Reject::from(SecurityError::UnknownKsi), None);
    };
    match request.verify(keys, &expected) {
        Ok(identity) => {
            let card = identity.map(|identity| CardRef {
                token: PanToken::compute(pan_key, &identity.pan),
                luhn_valid: identity.pan.luhn_valid(),
                terminal_id: *identity.terminal_id.as_bytes(),
            });
            Admission::Admitted(Admitted::new(request, card))
        }
        Err(error) => refuse(mti, &raw, Reject::from(error), Some(keys)),
    }
}

fn refuse(mti: Mti, raw: &RawMessage, reject: Reject, keys: Option<&WorkingKeys>) -> Admission {
    let code = reject.response_code();
    let mut out = BytesMut::with_capacity(256);
    // The echoed fields were read to their layout's lengths and the answer is a code only, so
    // building cannot fail; if it ever did, the frame is treated as unanswerable.
    if response::build(&mut out, mti, raw, &Answer::code(code), keys).is_err() {
        return Admission::Unparseable;
    }
    Admission::Refused {
        response: out.freeze(),
        code,
        mti,
    }
}
