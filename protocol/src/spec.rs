//! The field layout table: the one place that says how each ISO 8583 field is encoded.
//!
//! It is `iso8583.specs.default` of the `pyiso8583` package (ISO 8583:1987, ASCII), with the
//! overrides docs/protocol.md section 2 makes: field 62 is binary LLLVAR of at most 128 bytes, and
//! field 54 is at most 120 characters. The parser and the builder both read it.

/// How a field's length is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many bytes.
    Fixed(u16),
    /// Two ASCII digits of length, then at most this many bytes.
    LlVar(u16),
    /// Three ASCII digits of length, then at most this many bytes.
    LllVar(u16),
}

/// How a field's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII text (digits, letters, or the allowed characters of the field's type).
    Ascii,
    /// Raw bytes (bitmaps, MAC, the identity envelope).
    Binary,
}

/// The layout of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// How its length is given.
    pub length: Length,
    /// How its bytes are read.
    pub encoding: Encoding,
}

/// Highest field number (with a secondary bitmap).
pub const FIELD_MAX: u8 = 128;

/// Field 1, the secondary bitmap.
pub const SECONDARY_BITMAP: u8 = 1;
/// Field 2, the PAN: never allowed in clear.
pub const PAN: u8 = 2;
/// Field 3, processing code.
pub const PROCESSING_CODE: u8 = 3;
/// Field 4, transaction amount.
pub const AMOUNT: u8 = 4;
/// Field 7, transmission date and time.
pub const TRANSMITTED: u8 = 7;
/// Field 11, STAN.
pub const STAN: u8 = 11;
/// Field 12, local time (switch UTC time in 0810).
pub const LOCAL_TIME: u8 = 12;
/// Field 13, local date (switch UTC date in 0810).
pub const LOCAL_DATE: u8 = 13;
/// Field 37, retrieval reference number.
pub const RRN: u8 = 37;
/// Field 38, approval code.
pub const APPROVAL_CODE: u8 = 38;
/// Field 39, response code.
pub const RESPONSE_CODE: u8 = 39;
/// Field 41, terminal id: never allowed in clear.
pub const TERMINAL_ID: u8 = 41;
/// Field 49, currency code.
pub const CURRENCY: u8 = 49;
/// Field 53, key set identifier.
pub const KSI: u8 = 53;
/// Field 54, additional amounts.
pub const ADDITIONAL_AMOUNTS: u8 = 54;
/// Field 62, identity envelope.
pub const ENVELOPE: u8 = 62;
/// Field 64, MAC without a secondary bitmap.
pub const MAC_PRIMARY: u8 = 64;
/// Field 70, network management code.
pub const NETWORK_CODE: u8 = 70;
/// Field 90, original data elements.
pub const ORIGINAL_DATA: u8 = 90;
/// Field 128, MAC with a secondary bitmap.
pub const MAC_SECONDARY: u8 = 128;

/// The table, indexed by field number minus one (field 1 is at index 0).
pub const FIELDS: [FieldSpec; 128] = [
    /*   1 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // Bitmap, Secondary
    /*   2 */
    FieldSpec {
        length: Length::LlVar(19),
        encoding: Encoding::Ascii,
    }, // Primary Account Number (PAN)
    /*   3 */
    FieldSpec {
        length: Length::Fixed(6),
        encoding: Encoding::Ascii,
    }, // Processing Code
    /*   4 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Amount, Transaction
    /*   5 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Amount, Settlement
    /*   6 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Amount, Cardholder Billing
    /*   7 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Transmission Date and Time
    /*   8 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Ascii,
    }, // Amount, Cardholder Billing Fee
    /*   9 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Ascii,
    }, // Conversion Rate, Settlement
    /*  10 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Ascii,
    }, // Conversion Rate, Cardholder Billing
    /*  11 */
    FieldSpec {
        length: Length::Fixed(6),
        encoding: Encoding::Ascii,
    }, // System Trace Audit Number
    /*  12 */
    FieldSpec {
        length: Length::Fixed(6),
        encoding: Encoding::Ascii,
    }, // Time, Local Transaction
    /*  13 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Date, Local Transaction
    /*  14 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Date, Expiration
    /*  15 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Date, Settlement
    /*  16 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Date, Conversion
    /*  17 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Date, Capture
    /*  18 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Merchant Type
    /*  19 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Acquiring Institution Country Code
    /*  20 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // PAN Country Code
    /*  21 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Forwarding Institution Country Code
    /*  22 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Point-of-Service Entry Mode
    /*  23 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // PAN Sequence Number
    /*  24 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Network International ID (NII)
    /*  25 */
    FieldSpec {
        length: Length::Fixed(2),
        encoding: Encoding::Ascii,
    }, // Point-of-Service Condition Code
    /*  26 */
    FieldSpec {
        length: Length::Fixed(2),
        encoding: Encoding::Ascii,
    }, // Point-of-Service Capture Code
    /*  27 */
    FieldSpec {
        length: Length::Fixed(1),
        encoding: Encoding::Ascii,
    }, // Authorizing ID Response Length
    /*  28 */
    FieldSpec {
        length: Length::Fixed(9),
        encoding: Encoding::Ascii,
    }, // Amount, Transaction Fee
    /*  29 */
    FieldSpec {
        length: Length::Fixed(9),
        encoding: Encoding::Ascii,
    }, // Amount, Settlement Fee
    /*  30 */
    FieldSpec {
        length: Length::Fixed(9),
        encoding: Encoding::Ascii,
    }, // Amount, Transaction Processing Fee
    /*  31 */
    FieldSpec {
        length: Length::Fixed(9),
        encoding: Encoding::Ascii,
    }, // Amount, Settlement Processing Fee
    /*  32 */
    FieldSpec {
        length: Length::LlVar(11),
        encoding: Encoding::Ascii,
    }, // Acquiring Institution ID Code
    /*  33 */
    FieldSpec {
        length: Length::LlVar(11),
        encoding: Encoding::Ascii,
    }, // Forwarding Institution ID Code
    /*  34 */
    FieldSpec {
        length: Length::LlVar(28),
        encoding: Encoding::Ascii,
    }, // Primary Account Number, Extended
    /*  35 */
    FieldSpec {
        length: Length::LlVar(37),
        encoding: Encoding::Ascii,
    }, // Track 2 Data
    /*  36 */
    FieldSpec {
        length: Length::LllVar(104),
        encoding: Encoding::Ascii,
    }, // Track 3 Data
    /*  37 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Retrieval Reference Number
    /*  38 */
    FieldSpec {
        length: Length::Fixed(6),
        encoding: Encoding::Ascii,
    }, // Authorization ID Response
    /*  39 */
    FieldSpec {
        length: Length::Fixed(2),
        encoding: Encoding::Ascii,
    }, // Response Code
    /*  40 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Service Restriction Code
    /*  41 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Ascii,
    }, // Card Acceptor Terminal ID
    /*  42 */
    FieldSpec {
        length: Length::Fixed(15),
        encoding: Encoding::Ascii,
    }, // Card Acceptor ID Code
    /*  43 */
    FieldSpec {
        length: Length::Fixed(40),
        encoding: Encoding::Ascii,
    }, // Card Acceptor Name/Location
    /*  44 */
    FieldSpec {
        length: Length::LlVar(25),
        encoding: Encoding::Ascii,
    }, // Additional Response Data
    /*  45 */
    FieldSpec {
        length: Length::LlVar(76),
        encoding: Encoding::Ascii,
    }, // Track 1 Data
    /*  46 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Additional Data - ISO
    /*  47 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Additional Data - National
    /*  48 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Additional Data - Private
    /*  49 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Currency Code, Transaction
    /*  50 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Currency Code, Settlement
    /*  51 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Currency Code, Cardholder Billing
    /*  52 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // PIN
    /*  53 */
    FieldSpec {
        length: Length::Fixed(16),
        encoding: Encoding::Ascii,
    }, // Security-Related Control Information
    /*  54 */
    FieldSpec {
        length: Length::LllVar(120),
        encoding: Encoding::Ascii,
    }, // Additional Amounts (LSTI-1: at most 120)
    /*  55 */
    FieldSpec {
        length: Length::LllVar(255),
        encoding: Encoding::Binary,
    }, // ICC data
    /*  56 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved ISO
    /*  57 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved National
    /*  58 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved National
    /*  59 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved National
    /*  60 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved National
    /*  61 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved Private
    /*  62 */
    FieldSpec {
        length: Length::LllVar(128),
        encoding: Encoding::Binary,
    }, // Identity envelope (LSTI-1 override)
    /*  63 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved Private
    /*  64 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // MAC
    /*  65 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // Bitmap, Extended
    /*  66 */
    FieldSpec {
        length: Length::Fixed(1),
        encoding: Encoding::Ascii,
    }, // Settlement Code
    /*  67 */
    FieldSpec {
        length: Length::Fixed(2),
        encoding: Encoding::Ascii,
    }, // Extended Payment Code
    /*  68 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Receiving Institution Country Code
    /*  69 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Settlement Institution Country Code
    /*  70 */
    FieldSpec {
        length: Length::Fixed(3),
        encoding: Encoding::Ascii,
    }, // Network Management Information Code
    /*  71 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Message Number
    /*  72 */
    FieldSpec {
        length: Length::Fixed(4),
        encoding: Encoding::Ascii,
    }, // Message Number, Last
    /*  73 */
    FieldSpec {
        length: Length::Fixed(6),
        encoding: Encoding::Ascii,
    }, // Date, Action
    /*  74 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Credits, Number
    /*  75 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Credits, Reversal Number
    /*  76 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Debits, Number
    /*  77 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Debits, Reversal Number
    /*  78 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Transfer, Number
    /*  79 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Transfer, Reversal Number
    /*  80 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Inquiries, Number
    /*  81 */
    FieldSpec {
        length: Length::Fixed(10),
        encoding: Encoding::Ascii,
    }, // Authorizations, Number
    /*  82 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Credits, Processing Fee Amount
    /*  83 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Credits, Transaction Fee Amount
    /*  84 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Debits, Processing Fee Amount
    /*  85 */
    FieldSpec {
        length: Length::Fixed(12),
        encoding: Encoding::Ascii,
    }, // Debits, Transaction Fee Amount
    /*  86 */
    FieldSpec {
        length: Length::Fixed(16),
        encoding: Encoding::Ascii,
    }, // Credits, Amount
    /*  87 */
    FieldSpec {
        length: Length::Fixed(16),
        encoding: Encoding::Ascii,
    }, // Credits, Reversal Amount
    /*  88 */
    FieldSpec {
        length: Length::Fixed(16),
        encoding: Encoding::Ascii,
    }, // Debits, Amount
    /*  89 */
    FieldSpec {
        length: Length::Fixed(16),
        encoding: Encoding::Ascii,
    }, // Debits, Reversal Amount
    /*  90 */
    FieldSpec {
        length: Length::Fixed(42),
        encoding: Encoding::Ascii,
    }, // Original Data Elements
    /*  91 */
    FieldSpec {
        length: Length::Fixed(1),
        encoding: Encoding::Ascii,
    }, // File Update Code
    /*  92 */
    FieldSpec {
        length: Length::Fixed(2),
        encoding: Encoding::Ascii,
    }, // File Security Code
    /*  93 */
    FieldSpec {
        length: Length::Fixed(5),
        encoding: Encoding::Ascii,
    }, // Response Indicator
    /*  94 */
    FieldSpec {
        length: Length::Fixed(7),
        encoding: Encoding::Ascii,
    }, // Service Indicator
    /*  95 */
    FieldSpec {
        length: Length::Fixed(42),
        encoding: Encoding::Ascii,
    }, // Replacement Amounts
    /*  96 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // Message Security Code
    /*  97 */
    FieldSpec {
        length: Length::Fixed(17),
        encoding: Encoding::Ascii,
    }, // Amount, Net Settlement
    /*  98 */
    FieldSpec {
        length: Length::Fixed(25),
        encoding: Encoding::Ascii,
    }, // Payee
    /*  99 */
    FieldSpec {
        length: Length::LlVar(11),
        encoding: Encoding::Ascii,
    }, // Settlement Institution ID Code
    /* 100 */
    FieldSpec {
        length: Length::LlVar(11),
        encoding: Encoding::Ascii,
    }, // Receiving Institution ID Code
    /* 101 */
    FieldSpec {
        length: Length::LlVar(17),
        encoding: Encoding::Ascii,
    }, // File Name
    /* 102 */
    FieldSpec {
        length: Length::LlVar(28),
        encoding: Encoding::Ascii,
    }, // Account ID 1
    /* 103 */
    FieldSpec {
        length: Length::LlVar(28),
        encoding: Encoding::Ascii,
    }, // Account ID 2
    /* 104 */
    FieldSpec {
        length: Length::LllVar(100),
        encoding: Encoding::Ascii,
    }, // Transaction Description
    /* 105 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 106 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 107 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 108 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 109 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 110 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 111 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for ISO Use
    /* 112 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 113 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 114 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 115 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 116 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 117 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 118 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 119 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for National Use
    /* 120 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 121 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 122 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 123 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 124 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 125 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 126 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 127 */
    FieldSpec {
        length: Length::LllVar(999),
        encoding: Encoding::Ascii,
    }, // Reserved for Private Use
    /* 128 */
    FieldSpec {
        length: Length::Fixed(8),
        encoding: Encoding::Binary,
    }, // MAC
];

/// The layout of field `number` (1..=128), or `None` outside that range.
pub fn field(number: u8) -> Option<FieldSpec> {
    FIELDS.get(usize::from(number).checked_sub(1)?).copied()
}

// The length prefix of a frame is 2 bytes, and LLLVAR lengths have 3 digits: every variable
// field must fit its prefix.
#[allow(clippy::indexing_slicing)] // A compile-time loop bounded by the table length.
const _: () = {
    let mut i = 0;
    while i < FIELDS.len() {
        match FIELDS[i].length {
            Length::LlVar(max) => assert!(max <= 99),
            Length::LllVar(max) => assert!(max <= 999),
            Length::Fixed(len) => assert!(len > 0),
        }
        i += 1;
    }
};
