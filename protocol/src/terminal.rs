//! The terminal side of LSTI-1: one terminal's identity, keys and STAN counter, and the
//! requests it builds (sealed envelope, MAC). The simulator and the tests drive the switch
//! with it, exactly as a terminal vendor would build messages from docs/protocol.md.

use bytes::{Bytes, BytesMut};

use crate::builder::{BuildError, MessageBuilder};
use crate::codes::{Mti, NetworkCode, ProcessingCode};
use crate::envelope::{self, NONCE_BYTES};
use crate::field7::TransmissionTime;
use crate::field90::OriginalData;
use crate::ids::{Amount, Currency, Ksi, Rrn, Stan, TerminalId};
use crate::keys::WorkingKeys;
use crate::pan::Pan;

/// A request built by a terminal, with what its confirm or reversal needs to name it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The MTI.
    pub mti: Mti,
    /// Field 11.
    pub stan: Stan,
    /// Field 7 as sent.
    pub transmitted: [u8; 10],
    /// Field 3 as sent (zeros for 0800).
    pub code: [u8; 6],
    /// Field 4, when present.
    pub amount: Option<Amount>,
    /// The message bytes (no frame prefix).
    pub bytes: Bytes,
}

/// A provisioned terminal.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// Its id (sealed in every envelope).
    pub terminal_id: TerminalId,
    /// Its KSI (field 53).
    pub ksi: Ksi,
    /// Its currency (field 49).
    pub currency: Currency,
    keys: WorkingKeys,
    stan: u32,
}

impl Terminal {
    /// A terminal with these keys; STANs start at 1.
    pub fn new(terminal_id: TerminalId, ksi: Ksi, keys: WorkingKeys) -> Terminal {
        Terminal {
            terminal_id,
            ksi,
            currency: Currency::IRR,
            keys,
            stan: 0,
        }
    }

    /// The working keys (to check response MACs).
    pub fn keys(&self) -> &WorkingKeys {
        &self.keys
    }

    /// The next STAN (1..=999 999, wrapping).
    pub fn next_stan(&mut self) -> Stan {
        self.stan = self.stan % 999_999 + 1;
        Stan::new(self.stan).unwrap_or_else(|_| first_stan())
    }

    /// Sets the STAN counter so the next request gets `stan + 1` (to resend under a known STAN).
    pub fn set_stan(&mut self, stan: u32) {
        self.stan = stan % 999_999;
    }

    /// A purchase or inquiry (0100/0200 by the code), sealed and MACed.
    ///
    /// # Errors
    /// [`BuildError`] only for values the builder refuses.
    pub fn purchase(
        &mut self,
        code: ProcessingCode,
        amount: Option<u64>,
        pan: &Pan,
        at_seconds: i64,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Outgoing, BuildError> {
        self.financial(
            code.request_mti(),
            *code.as_bytes(),
            amount,
            pan,
            at_seconds,
            nonce,
        )
    }

    /// A 0100 or 0200 with any MTI and field 3 (also ones the switch must refuse).
    ///
    /// # Errors
    /// [`BuildError`] only for values the builder refuses.
    pub fn financial(
        &mut self,
        mti: Mti,
        code: [u8; 6],
        amount: Option<u64>,
        pan: &Pan,
        at_seconds: i64,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Outgoing, BuildError> {
        let stan = self.next_stan();
        let transmitted = TransmissionTime::from_unix(at_seconds).to_digits();
        let amount = amount.map(|a| Amount::new(a).unwrap_or(Amount::ZERO));
        let aad = envelope::aad(*mti.as_bytes(), &transmitted, stan, &self.ksi);
        let mut sealed = BytesMut::with_capacity(64);
        envelope::seal(
            &self.keys,
            &nonce,
            &aad,
            &self.terminal_id,
            pan,
            &mut sealed,
        );
        let mut out = BytesMut::with_capacity(256);
        let mut builder = MessageBuilder::new(&mut out, *mti.as_bytes());
        builder.field(3, &code)?;
        if let Some(amount) = amount {
            builder.field(4, &amount.to_digits())?;
        }
        builder
            .field(7, &transmitted)?
            .field(11, &stan.to_digits())?;
        builder
            .field(49, &self.currency.to_digits())?
            .field(53, self.ksi.as_bytes())?;
        builder.field(62, &sealed)?;
        builder.finish_with_mac(&self.keys)?;
        Ok(Outgoing {
            mti,
            stan,
            transmitted,
            code,
            amount,
            bytes: out.freeze(),
        })
    }

    /// A confirm (0220) of `original`, naming the RRN it got.
    ///
    /// # Errors
    /// [`BuildError`] only for values the builder refuses.
    pub fn confirm(
        &mut self,
        original: &Outgoing,
        rrn: Rrn,
        at_seconds: i64,
    ) -> Result<Outgoing, BuildError> {
        self.follow_up(Mti::ConfirmAdvice, original, Some(rrn), at_seconds)
    }

    /// A reversal (0420) of `original`; `rrn` when the terminal has one.
    ///
    /// # Errors
    /// [`BuildError`] only for values the builder refuses.
    pub fn reversal(
        &mut self,
        original: &Outgoing,
        rrn: Option<Rrn>,
        at_seconds: i64,
    ) -> Result<Outgoing, BuildError> {
        self.follow_up(Mti::ReversalAdvice, original, rrn, at_seconds)
    }

    fn follow_up(
        &mut self,
        mti: Mti,
        original: &Outgoing,
        rrn: Option<Rrn>,
        at_seconds: i64,
    ) -> Result<Outgoing, BuildError> {
        let stan = self.next_stan();
        let transmitted = TransmissionTime::from_unix(at_seconds).to_digits();
        let amount = original.amount.unwrap_or(Amount::ZERO);
        let data = OriginalData {
            mti: original.mti,
            stan: original.stan,
            transmitted: original.transmitted,
        };
        let mut out = BytesMut::with_capacity(256);
        let mut builder = MessageBuilder::new(&mut out, *mti.as_bytes());
        builder
            .field(3, &original.code)?
            .field(4, &amount.to_digits())?;
        builder
            .field(7, &transmitted)?
            .field(11, &stan.to_digits())?;
        if let Some(rrn) = rrn {
            builder.field(37, rrn.as_bytes())?;
        }
        builder
            .field(49, &self.currency.to_digits())?
            .field(53, self.ksi.as_bytes())?;
        builder.field(90, &data.to_digits())?;
        builder.finish_with_mac(&self.keys)?;
        Ok(Outgoing {
            mti,
            stan,
            transmitted,
            code: original.code,
            amount: Some(amount),
            bytes: out.freeze(),
        })
    }

    /// A network management message (0800).
    ///
    /// # Errors
    /// [`BuildError`] only for values the builder refuses.
    pub fn network(&mut self, code: NetworkCode, at_seconds: i64) -> Result<Outgoing, BuildError> {
        let stan = self.next_stan();
        let transmitted = TransmissionTime::from_unix(at_seconds).to_digits();
        let mut out = BytesMut::with_capacity(128);
        let mut builder = MessageBuilder::new(&mut out, *Mti::NetworkRequest.as_bytes());
        builder
            .field(7, &transmitted)?
            .field(11, &stan.to_digits())?;
        builder
            .field(53, self.ksi.as_bytes())?
            .field(70, code.as_bytes())?;
        builder.finish_with_mac(&self.keys)?;
        Ok(Outgoing {
            mti: Mti::NetworkRequest,
            stan,
            transmitted,
            code: [b'0'; 6],
            amount: None,
            bytes: out.freeze(),
        })
    }
}

fn first_stan() -> Stan {
    match Stan::new(1) {
        Ok(stan) => stan,
        Err(_) => unreachable!("1 is a valid stan"),
    }
}
