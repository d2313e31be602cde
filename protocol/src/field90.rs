//! Field 90, original data elements: original MTI (4) + original STAN (6) + original field 7
//! (10) + 22 zeros. It names the original of a confirm or a reversal.

use crate::codes::Mti;
use crate::field7::TransmissionTime;
use crate::ids::{Malformed, Stan};

/// Characters of field 90.
pub const FIELD_BYTES: usize = 42;

/// What field 90 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginalData {
    /// The original's MTI; only 0100 and 0200 can be confirmed or reversed, which the engine
    /// checks (a wrong MTI finds no original).
    pub mti: Mti,
    /// The original's STAN.
    pub stan: Stan,
    /// The original's field 7, as sent.
    pub transmitted: [u8; 10],
}

impl OriginalData {
    /// # Errors
    /// [`Malformed`] unless 42 digits: a listed MTI, a STAN, a valid field 7 and 22 zeros.
    pub fn parse(bytes: &[u8]) -> Result<OriginalData, Malformed> {
        let bad = Malformed {
            what: "original data elements",
        };
        let field: &[u8; FIELD_BYTES] = bytes.try_into().map_err(|_| bad)?;
        let (mti, rest) = field.split_at(4);
        let (stan, rest) = rest.split_at(6);
        let (transmitted, zeros) = rest.split_at(10);
        if !zeros.iter().all(|c| *c == b'0') {
            return Err(bad);
        }
        let mti = Mti::parse(mti).ok_or(bad)?;
        let stan = Stan::parse(stan).map_err(|_| bad)?;
        TransmissionTime::parse(transmitted).map_err(|_| bad)?;
        let transmitted: [u8; 10] = transmitted.try_into().map_err(|_| bad)?;
        Ok(OriginalData {
            mti,
            stan,
            transmitted,
        })
    }

    /// The 42 ASCII digits.
    pub fn to_digits(&self) -> [u8; FIELD_BYTES] {
        let mut out = [b'0'; FIELD_BYTES];
        let parts: [&[u8]; 3] = [
            self.mti.as_bytes(),
            &self.stan.to_digits(),
            &self.transmitted,
        ];
        let mut at = 0;
        for part in parts {
            if let Some(slot) = out.get_mut(at..at + part.len()) {
                slot.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }
}
