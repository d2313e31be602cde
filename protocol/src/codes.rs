//! The closed sets of wire codes: MTIs, processing codes, network codes and response codes.
//! Each is an enum; their ASCII forms appear only here.

/// The message types LSTI-1 uses (docs/protocol.md section 4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Mti {
    /// 0100: bank-card purchase (discount request) or balance inquiry.
    AuthorizationRequest,
    /// 0110.
    AuthorizationResponse,
    /// 0200: club-card purchase.
    FinancialRequest,
    /// 0210.
    FinancialResponse,
    /// 0220: confirm (an advice).
    ConfirmAdvice,
    /// 0230.
    ConfirmResponse,
    /// 0420: reversal (an advice).
    ReversalAdvice,
    /// 0430.
    ReversalResponse,
    /// 0800: network management.
    NetworkRequest,
    /// 0810.
    NetworkResponse,
}

impl Mti {
    /// Every MTI, requests and responses.
    pub const ALL: [Mti; 10] = [
        Mti::AuthorizationRequest,
        Mti::AuthorizationResponse,
        Mti::FinancialRequest,
        Mti::FinancialResponse,
        Mti::ConfirmAdvice,
        Mti::ConfirmResponse,
        Mti::ReversalAdvice,
        Mti::ReversalResponse,
        Mti::NetworkRequest,
        Mti::NetworkResponse,
    ];

    /// The MTI of these 4 bytes, if LSTI-1 lists it.
    pub fn parse(bytes: &[u8]) -> Option<Mti> {
        Mti::ALL.into_iter().find(|mti| mti.as_bytes() == bytes)
    }

    /// The 4 ASCII digits.
    pub fn as_bytes(self) -> &'static [u8; 4] {
        match self {
            Mti::AuthorizationRequest => b"0100",
            Mti::AuthorizationResponse => b"0110",
            Mti::FinancialRequest => b"0200",
            Mti::FinancialResponse => b"0210",
            Mti::ConfirmAdvice => b"0220",
            Mti::ConfirmResponse => b"0230",
            Mti::ReversalAdvice => b"0420",
            Mti::ReversalResponse => b"0430",
            Mti::NetworkRequest => b"0800",
            Mti::NetworkResponse => b"0810",
        }
    }

    /// The MTI as text, for logs and metric labels (a closed set).
    pub fn as_str(self) -> &'static str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The response MTI of a request MTI; `None` for a response MTI.
    pub fn response(self) -> Option<Mti> {
        match self {
            Mti::AuthorizationRequest => Some(Mti::AuthorizationResponse),
            Mti::FinancialRequest => Some(Mti::FinancialResponse),
            Mti::ConfirmAdvice => Some(Mti::ConfirmResponse),
            Mti::ReversalAdvice => Some(Mti::ReversalResponse),
            Mti::NetworkRequest => Some(Mti::NetworkResponse),
            Mti::AuthorizationResponse
            | Mti::FinancialResponse
            | Mti::ConfirmResponse
            | Mti::ReversalResponse
            | Mti::NetworkResponse => None,
        }
    }

    /// Whether the switch accepts this MTI from a terminal.
    pub fn is_request(self) -> bool {
        self.response().is_some()
    }
}

/// Processing codes (field 3) and the funding each means (docs/protocol.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ProcessingCode {
    /// `000000`, 0100: discount, rest by bank card.
    BankPurchase,
    /// `006100`, 0100: discount, store credit at this merchant, rest by bank card.
    BankPurchaseStoreCredit,
    /// `006500`, 0200: discount, club balance must cover the rest.
    ClubPurchase,
    /// `006600`, 0200: discount, store credit must cover the rest.
    StoreCreditPurchase,
    /// `006700`, 0200: discount, store credit, club balance must cover the rest.
    MixedPurchase,
    /// `316500`, 0100: club balance inquiry (single-phase).
    ClubInquiry,
    /// `316600`, 0100: store-credit inquiry at this merchant (single-phase).
    StoreCreditInquiry,
}

impl ProcessingCode {
    /// Every processing code.
    pub const ALL: [ProcessingCode; 7] = [
        ProcessingCode::BankPurchase,
        ProcessingCode::BankPurchaseStoreCredit,
        ProcessingCode::ClubPurchase,
        ProcessingCode::StoreCreditPurchase,
        ProcessingCode::MixedPurchase,
        ProcessingCode::ClubInquiry,
        ProcessingCode::StoreCreditInquiry,
    ];

    /// The code of these 6 digits, if LSTI-1 defines it.
    pub fn parse(bytes: &[u8]) -> Option<ProcessingCode> {
        ProcessingCode::ALL
            .into_iter()
            .find(|code| code.as_bytes() == bytes)
    }

    /// The 6 ASCII digits.
    pub fn as_bytes(self) -> &'static [u8; 6] {
        match self {
            ProcessingCode::BankPurchase => b"000000",
            ProcessingCode::BankPurchaseStoreCredit => b"006100",
            ProcessingCode::ClubPurchase => b"006500",
            ProcessingCode::StoreCreditPurchase => b"006600",
            ProcessingCode::MixedPurchase => b"006700",
            ProcessingCode::ClubInquiry => b"316500",
            ProcessingCode::StoreCreditInquiry => b"316600",
        }
    }

    /// The code as text.
    pub fn as_str(self) -> &'static str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The request MTI this code must travel in.
    pub fn request_mti(self) -> Mti {
        match self {
            ProcessingCode::BankPurchase
            | ProcessingCode::BankPurchaseStoreCredit
            | ProcessingCode::ClubInquiry
            | ProcessingCode::StoreCreditInquiry => Mti::AuthorizationRequest,
            ProcessingCode::ClubPurchase
            | ProcessingCode::StoreCreditPurchase
            | ProcessingCode::MixedPurchase => Mti::FinancialRequest,
        }
    }

    /// Whether this is a single-phase balance inquiry.
    pub fn is_inquiry(self) -> bool {
        matches!(
            self,
            ProcessingCode::ClubInquiry | ProcessingCode::StoreCreditInquiry
        )
    }
}

/// Network management codes (field 70).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkCode {
    /// `001`.
    SignOn,
    /// `002`.
    SignOff,
    /// `301`: keeps the connection from the idle timeout.
    Echo,
}

impl NetworkCode {
    /// The code of these 3 digits, if LSTI-1 defines it.
    pub fn parse(bytes: &[u8]) -> Option<NetworkCode> {
        [NetworkCode::SignOn, NetworkCode::SignOff, NetworkCode::Echo]
            .into_iter()
            .find(|code| code.as_bytes() == bytes)
    }

    /// The 3 ASCII digits.
    pub fn as_bytes(self) -> &'static [u8; 3] {
        match self {
            NetworkCode::SignOn => b"001",
            NetworkCode::SignOff => b"002",
            NetworkCode::Echo => b"301",
        }
    }
}

/// Response codes (field 39, docs/protocol.md section 6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ResponseCode {
    /// `00` approved.
    Approved,
    /// `03` merchant not active.
    MerchantNotActive,
    /// `12` invalid transaction (wrong code for the MTI, state conflict).
    InvalidTransaction,
    /// `13` invalid amount (zero, currency mismatch, confirm or reversal amount differs).
    InvalidAmount,
    /// `14` card not enrolled, or PAN fails the Luhn check.
    CardNotEnrolled,
    /// `25` original not found.
    OriginalNotFound,
    /// `30` format error.
    FormatError,
    /// `51` insufficient balance.
    Insufficient,
    /// `54` card expired.
    CardExpired,
    /// `58` terminal not active.
    TerminalNotActive,
    /// `61` over a configured amount limit.
    OverLimit,
    /// `62` card blocked.
    CardBlocked,
    /// `63` security violation.
    Security,
    /// `94` duplicate STAN with different content.
    DuplicateStan,
    /// `96` system error: nothing was changed.
    SystemError,
}

impl ResponseCode {
    /// Every response code.
    pub const ALL: [ResponseCode; 15] = [
        ResponseCode::Approved,
        ResponseCode::MerchantNotActive,
        ResponseCode::InvalidTransaction,
        ResponseCode::InvalidAmount,
        ResponseCode::CardNotEnrolled,
        ResponseCode::OriginalNotFound,
        ResponseCode::FormatError,
        ResponseCode::Insufficient,
        ResponseCode::CardExpired,
        ResponseCode::TerminalNotActive,
        ResponseCode::OverLimit,
        ResponseCode::CardBlocked,
        ResponseCode::Security,
        ResponseCode::DuplicateStan,
        ResponseCode::SystemError,
    ];

    /// The code of these 2 characters, if LSTI-1 defines it.
    pub fn parse(bytes: &[u8]) -> Option<ResponseCode> {
        ResponseCode::ALL
            .into_iter()
            .find(|code| code.as_bytes() == bytes)
    }

    /// The 2 ASCII characters.
    pub fn as_bytes(self) -> &'static [u8; 2] {
        match self {
            ResponseCode::Approved => b"00",
            ResponseCode::MerchantNotActive => b"03",
            ResponseCode::InvalidTransaction => b"12",
            ResponseCode::InvalidAmount => b"13",
            ResponseCode::CardNotEnrolled => b"14",
            ResponseCode::OriginalNotFound => b"25",
            ResponseCode::FormatError => b"30",
            ResponseCode::Insufficient => b"51",
            ResponseCode::CardExpired => b"54",
            ResponseCode::TerminalNotActive => b"58",
            ResponseCode::OverLimit => b"61",
            ResponseCode::CardBlocked => b"62",
            ResponseCode::Security => b"63",
            ResponseCode::DuplicateStan => b"94",
            ResponseCode::SystemError => b"96",
        }
    }

    /// The code as text, for logs and metric labels (a closed set).
    pub fn as_str(self) -> &'static str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}
