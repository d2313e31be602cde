//! Row ids (assigned by the store, stable across imports) and [`Code`], the operator's name for
//! a record in the import file.

use std::borrow::Borrow;
use std::fmt;

use crate::domain::Invalid;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a database row id.
            pub const fn new(id: i64) -> $name {
                $name(id)
            }

            /// The database row id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }
    };
}

row_id!(
    /// A merchant's row id.
    MerchantId
);
row_id!(
    /// A terminal's row id (not its 8-character terminal id, which is a [`crate::domain::TerminalCode`]).
    TerminalRowId
);
row_id!(
    /// A card's row id.
    CardId
);
row_id!(
    /// A member's row id.
    MemberId
);
row_id!(
    /// A discount rule's row id. Ties between equal discounts go to the lowest id.
    RuleId
);
row_id!(
    /// A tier's row id.
    TierId
);
row_id!(
    /// A member coupon's row id, assigned by the engine. Ties between equal coupon discounts
    /// go to the lowest id.
    CouponId
);
row_id!(
    /// A merchant, member or terminal group's row id. Ids are unique across the three kinds.
    GroupId
);

/// Longest [`Code`]: long enough for any operator naming scheme, short enough to index cheaply.
pub const CODE_BYTES_MAX: usize = 64;

/// The operator's name for a record (`"M-CAFE-01"`): 1..=64 ASCII letters, digits, `.`, `_` or
/// `-`. Records refer to each other by code in the import file; the store maps codes to row ids.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(Box<str>);

impl Code {
    /// Checks and wraps a code.
    ///
    /// # Errors
    /// [`Invalid`] when the code is empty, too long or has another character.
    pub fn parse(text: &str) -> Result<Code, Invalid> {
        if text.is_empty() || text.len() > CODE_BYTES_MAX {
            return Err(Invalid::new("must be 1..=64 characters"));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if !text.bytes().all(allowed) {
            return Err(Invalid::new(
                "may only have ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(Code(text.into()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Code {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({})", self.0)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
