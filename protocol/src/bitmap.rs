//! The primary and secondary bitmaps: which fields a message carries.

/// Bytes in one bitmap.
pub const BITMAP_BYTES: usize = 8;

/// The 128-bit field presence set; bit for field `n` is `n`'s position counted from the most
/// significant bit of the primary bitmap (field 1 marks a secondary bitmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bitmap(u128);

impl Bitmap {
    /// No field present.
    pub const EMPTY: Bitmap = Bitmap(0);

    /// Reads the primary bitmap; the secondary half is empty until [`Bitmap::with_secondary`].
    pub fn from_primary(primary: [u8; BITMAP_BYTES]) -> Bitmap {
        Bitmap(u128::from(u64::from_be_bytes(primary)) << 64)
    }

    /// Adds the secondary bitmap's 64 bits.
    pub fn with_secondary(self, secondary: [u8; BITMAP_BYTES]) -> Bitmap {
        Bitmap(self.0 | u128::from(u64::from_be_bytes(secondary)))
    }

    /// Whether field `number` (1..=128) is present; false outside that range.
    pub fn has(self, number: u8) -> bool {
        match Bitmap::mask(number) {
            Some(mask) => self.0 & mask != 0,
            None => false,
        }
    }

    /// Marks field `number` present; numbers outside 1..=128 are ignored.
    pub fn set(&mut self, number: u8) {
        if let Some(mask) = Bitmap::mask(number) {
            self.0 |= mask;
        }
    }

    /// Marks field `number` absent.
    pub fn clear(&mut self, number: u8) {
        if let Some(mask) = Bitmap::mask(number) {
            self.0 &= !mask;
        }
    }

    /// Whether a secondary bitmap is present (field 1).
    pub fn has_secondary(self) -> bool {
        self.has(1)
    }

    /// Whether any field 65..=128 is present, which needs a secondary bitmap.
    pub fn needs_secondary(self) -> bool {
        self.0 & u128::from(u64::MAX) != 0
    }

    /// The primary bitmap bytes.
    pub fn primary_bytes(self) -> [u8; BITMAP_BYTES] {
        let high = u64::try_from(self.0 >> 64).unwrap_or(0);
        high.to_be_bytes()
    }

    /// The secondary bitmap bytes.
    pub fn secondary_bytes(self) -> [u8; BITMAP_BYTES] {
        let low = u64::try_from(self.0 & u128::from(u64::MAX)).unwrap_or(0);
        low.to_be_bytes()
    }

    /// The present field numbers in ascending order, field 1 included.
    pub fn fields(self) -> impl Iterator<Item = u8> {
        // Walks only the set bits: field n is bit 127 - (n - 1), counted from the least
        // significant bit, so the leading zeros give the next field number.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let leading = bits.leading_zeros();
            bits &= !(1_u128 << (127 - leading));
            u8::try_from(leading + 1).ok()
        })
    }

    fn mask(number: u8) -> Option<u128> {
        if (1..=128).contains(&number) {
            Some(1_u128 << (128 - u32::from(number)))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_bitmap_reads_back() {
        // purchase_bank_000000: fields 3, 4, 7, 11, 49, 53, 62, 64.
        let bitmap = Bitmap::from_primary([0x32, 0x20, 0, 0, 0, 0, 0x88, 0x05]);
        let fields: Vec<u8> = bitmap.fields().collect();
        assert_eq!(fields, vec![3, 4, 7, 11, 49, 53, 62, 64]);
        assert!(!bitmap.has_secondary());
        let mut built = Bitmap::EMPTY;
        for n in [3, 4, 7, 11, 49, 53, 62, 64] {
            built.set(n);
        }
        assert_eq!(built.primary_bytes(), [0x32, 0x20, 0, 0, 0, 0, 0x88, 0x05]);
    }

    #[test]
    fn out_of_range_is_absent() {
        let mut bitmap = Bitmap::EMPTY;
        bitmap.set(0);
        bitmap.set(129);
        assert_eq!(bitmap, Bitmap::EMPTY);
        assert!(!bitmap.has(0));
        bitmap.set(128);
        assert!(bitmap.needs_secondary());
        assert_eq!(bitmap.secondary_bytes(), [0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
