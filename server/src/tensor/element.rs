//! What each element type does in the binary encoding and in comparisons, so that the code per
//! [`super::DType`] is written once, generically.

use half::f16;

/// An element of a tensor: read and written little-endian, and widened to f64.
pub trait Element: Sized + Copy {
    fn to_f64(&self) -> f64;
    /// One element from exactly `size_of::<Self>()` bytes.
    fn from_le(bytes: &[u8]) -> Result<Self, String>;
    fn write_le(&self, out: &mut Vec<u8>);
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn to_f64(&self) -> f64 {
                // i64 and u64 beyond 2^53 round, as any f64 comparison must.
                *self as f64
            }
            fn from_le(bytes: &[u8]) -> Result<Self, String> {
                // decode_le hands over chunks of the exact size, so this never falls back.
                Ok(<$t>::from_le_bytes(bytes.try_into().unwrap_or_default()))
            }
            fn write_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
numbers!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Element for f16 {
    fn to_f64(&self) -> f64 {
        f16::to_f64(*self)
    }
    fn from_le(bytes: &[u8]) -> Result<Self, String> {
        Ok(f16::from_le_bytes(bytes.try_into().unwrap_or_default()))
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for bool {
    fn to_f64(&self) -> f64 {
        f64::from(u8::from(*self))
    }
    fn from_le(bytes: &[u8]) -> Result<Self, String> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            [other] => Err(format!("is the byte {other}; a bool must be 0 or 1")),
            _ => Err("is not one byte; a bool must be 0 or 1".to_string()),
        }
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

/// Every element of `bytes`, whose length the caller has checked is a whole number of elements.
pub fn decode_le<T: Element>(bytes: &[u8]) -> Result<Vec<T>, String> {
    bytes
        .chunks_exact(std::mem::size_of::<T>())
        .enumerate()
        .map(|(index, chunk)| {
            T::from_le(chunk).map_err(|problem| format!("element {index} {problem}"))
        })
        .collect()
}
