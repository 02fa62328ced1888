//! What each element type does in the binary encoding and in comparisons, so that the code per
//! [`super::DType`] is written once, generically.

use half::f16;

/// An element of a tensor: read and written in the binary encoding, and widened to f64.
pub trait Element: Sized + Clone {
    /// The element as a number (NaN for a string, which is none).
    fn to_f64(&self) -> f64;
    /// The element printed in its own type (a float32 as `0.35`, not its f64 widening).
    fn to_text(&self) -> String;
    /// One element read off the front of `bytes`, which moves past it.
    fn read_le(bytes: &mut &[u8]) -> Result<Self, String>;
    fn write_le(&self, out: &mut Vec<u8>);
}

/// The first `size` bytes of `bytes`, which moves past them.
fn take<'a>(bytes: &mut &'a [u8], size: usize) -> Option<&'a [u8]> {
    let (head, tail) = bytes.split_at_checked(size)?;
    *bytes = tail;
    Some(head)
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn to_f64(&self) -> f64 {
                // i64 and u64 beyond 2^53 round, as any f64 comparison must.
                *self as f64
            }
            fn to_text(&self) -> String {
                self.to_string()
            }
            fn read_le(bytes: &mut &[u8]) -> Result<Self, String> {
                take(bytes, std::mem::size_of::<$t>())
                    .and_then(|head| head.try_into().ok())
                    .map(<$t>::from_le_bytes)
                    .ok_or_else(|| "is cut short".to_string())
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
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn read_le(bytes: &mut &[u8]) -> Result<Self, String> {
        take(bytes, 2)
            .and_then(|head| head.try_into().ok())
            .map(f16::from_le_bytes)
            .ok_or_else(|| "is cut short".to_string())
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for bool {
    fn to_f64(&self) -> f64 {
        f64::from(u8::from(*self))
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn read_le(bytes: &mut &[u8]) -> Result<Self, String> {
        match take(bytes, 1) {
            Some([0]) => Ok(false),
            Some([1]) => Ok(true),
            Some([other]) => Err(format!("is the byte {other}; a bool must be 0 or 1")),
            _ => Err("is not one byte; a bool must be 0 or 1".to_string()),
        }
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

/// A string element (BYTES): its length as 4 bytes little-endian, then its bytes, which must be
/// UTF-8 (a NUL included: the runtime hands ONNX Runtime each string with its length).
impl Element for String {
    fn to_f64(&self) -> f64 {
        f64::NAN
    }
    fn to_text(&self) -> String {
        self.clone()
    }
    fn read_le(bytes: &mut &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(read_prefixed(bytes)?)
            .map_err(|_| "is not UTF-8 text; BYTES elements must be UTF-8 here".to_string())?;
        Ok(text.to_string())
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        write_prefixed(self.as_bytes(), out);
    }
}

/// A bytes element (BYTES of any kind): its length as 4 bytes little-endian, then its bytes.
impl Element for Vec<u8> {
    fn to_f64(&self) -> f64 {
        f64::NAN
    }
    fn to_text(&self) -> String {
        String::from_utf8_lossy(self).into_owned()
    }
    fn read_le(bytes: &mut &[u8]) -> Result<Self, String> {
        read_prefixed(bytes).map(<[u8]>::to_vec)
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        write_prefixed(self, out);
    }
}

/// One BYTES element read off the front of `bytes`: its 4-byte little-endian length, then that
/// many bytes.
fn read_prefixed<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let prefix = take(bytes, 4)
        .and_then(|head| head.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| {
            format!(
                "has {} bytes where its 4-byte length should be",
                bytes.len()
            )
        })?;
    let remaining = bytes.len();
    usize::try_from(prefix)
        .ok()
        .and_then(|length| take(bytes, length))
        .ok_or_else(|| format!("claims {prefix} bytes, but only {remaining} bytes of data follow"))
}

fn write_prefixed(element: &[u8], out: &mut Vec<u8>) {
    // Elements come from requests under the body limit or from the model: far below 4 GiB.
    let length = u32::try_from(element.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(element);
}

/// Every element of `bytes`, back to back, at most `max` of them (for fixed-size types the
/// caller has checked that the length is a whole number of elements, and gives their count as
/// `capacity`).
pub fn decode_le<T: Element>(
    mut bytes: &[u8],
    capacity: usize,
    max: usize,
) -> Result<Vec<T>, String> {
    let mut elements = Vec::with_capacity(capacity.min(max));
    while !bytes.is_empty() {
        let index = elements.len();
        if index == max {
            return Err(format!(
                "element {index} is past the {max} elements its shape holds"
            ));
        }
        let element =
            T::read_le(&mut bytes).map_err(|problem| format!("element {index} {problem}"))?;
        elements.push(element);
    }
    Ok(elements)
}
