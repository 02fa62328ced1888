//! Tensors as the server sees them (a dtype, a shape, row-major data), decoded from nested JSON
//! arrays and encoded back; no `ort` type appears here.

use std::fmt;

use half::f16;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde::Deserialize;
use serde_json::Value;

mod element;
mod json;

/// The one table of the fixed-size element types: the variant, its Rust type, its name in
/// `predictor.toml` and the Open Inference Protocol's. Everything per element type below is
/// generated from it; the two variable-size types are added by hand beside each generated list:
/// `String` (BYTES holding UTF-8 text, as ONNX Runtime's string tensors hold) and `Bytes` (BYTES
/// holding any bytes: encoded images, which only the server's preprocessing reads).
macro_rules! dtype_table {
    ($callback:ident!($($arguments:tt)*)) => {
        $callback! {
            ($($arguments)*)
            Bool, bool, "bool", "BOOL";
            Int8, i8, "int8", "INT8";
            Int16, i16, "int16", "INT16";
            Int32, i32, "int32", "INT32";
            Int64, i64, "int64", "INT64";
            Uint8, u8, "uint8", "UINT8";
            Uint16, u16, "uint16", "UINT16";
            Uint32, u32, "uint32", "UINT32";
            Uint64, u64, "uint64", "UINT64";
            Float16, half::f16, "float16", "FP16";
            Float32, f32, "float32", "FP32";
            Float64, f64, "float64", "FP64";
        }
    };
}

macro_rules! define_dtypes {
    (($d:tt) $($variant:ident, $t:ty, $name:literal, $v2:literal;)*) => {
        /// The element types a bundle may declare, named as in `predictor.toml`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
        pub enum DType {
            $(#[serde(rename = $name)] $variant,)*
            /// UTF-8 text of any length (the protocol's BYTES).
            #[serde(rename = "string")]
            String,
            /// Bytes of any kind (the protocol's BYTES, with no UTF-8 rule): an image bundle's
            /// encoded images.
            #[serde(rename = "bytes")]
            Bytes,
        }

        impl DType {
            /// Every dtype, for lookups by name.
            pub const ALL: &'static [DType] = &[$(DType::$variant,)* DType::String, DType::Bytes];

            pub fn name(self) -> &'static str {
                match self {
                    $(DType::$variant => $name,)*
                    DType::String => "string",
                    DType::Bytes => "bytes",
                }
            }

            /// The Open Inference Protocol's name for this element type.
            pub fn v2_name(self) -> &'static str {
                match self {
                    $(DType::$variant => $v2,)*
                    DType::String | DType::Bytes => "BYTES",
                }
            }

            /// Bytes per element in the binary (raw) encoding (a bool is one byte); None for
            /// BYTES, each element of which is its length (4 bytes, little-endian) then its bytes.
            pub fn size(self) -> Option<usize> {
                match self {
                    $(DType::$variant => Some(std::mem::size_of::<$t>()),)*
                    DType::String | DType::Bytes => None,
                }
            }
        }

        /// Row-major element storage, one variant per [`DType`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $($variant(Vec<$t>),)*
            String(Vec<String>),
            Bytes(Vec<Vec<u8>>),
        }

        /// Applies `$body` to the vector inside any [`TensorData`] variant, bound to `$v`.
        macro_rules! with_data {
            ($d data:expr, $d v:ident => $d body:expr) => {
                match $d data {
                    $(TensorData::$variant($d v) => $d body,)*
                    TensorData::String($d v) => $d body,
                    TensorData::Bytes($d v) => $d body,
                }
            };
        }

        /// [`with_data!`] for code that only fixed-size elements fit (a C array for ONNX
        /// Runtime): strings take the second arm, bytes the third.
        macro_rules! with_fixed_data {
            (
                $d data:expr,
                $d v:ident => $d body:expr,
                $d strings:ident => $d other:expr,
                $d bytes:ident => $d raw:expr
            ) => {
                match $d data {
                    $(TensorData::$variant($d v) => $d body,)*
                    TensorData::String($d strings) => $d other,
                    TensorData::Bytes($d bytes) => $d raw,
                }
            };
        }

        /// Runs `$body` with `$T` the Rust type of the [`DType`] `$dtype`.
        macro_rules! with_dtype {
            ($d dtype:expr, $d element:ident => $d body:expr) => {
                match $d dtype {
                    $(DType::$variant => {
                        type $d element = $t;
                        $d body
                    })*
                    DType::String => {
                        type $d element = String;
                        $d body
                    }
                    DType::Bytes => {
                        type $d element = Vec<u8>;
                        $d body
                    }
                }
            };
        }

        /// [`with_dtype!`] for code that only fixed-size elements fit: strings take `$other`,
        /// bytes `$raw`.
        macro_rules! with_fixed_dtype {
            (
                $d dtype:expr,
                $d element:ident => $d body:expr,
                strings => $d other:expr,
                bytes => $d raw:expr
            ) => {
                match $d dtype {
                    $(DType::$variant => {
                        type $d element = $t;
                        $d body
                    })*
                    DType::String => $d other,
                    DType::Bytes => $d raw,
                }
            };
        }

        impl TensorData {
            fn with_capacity(dtype: DType, capacity: usize) -> Self {
                with_dtype!(dtype, T => TensorData::from(Vec::<T>::with_capacity(capacity)))
            }

            pub fn dtype(&self) -> DType {
                match self {
                    $(TensorData::$variant(_) => DType::$variant,)*
                    TensorData::String(_) => DType::String,
                    TensorData::Bytes(_) => DType::Bytes,
                }
            }

            /// Moves `other`'s elements to the end of these; None when the dtypes differ.
            fn append(&mut self, other: TensorData) -> Option<()> {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(mut b)) => a.append(&mut b),)*
                    (TensorData::String(a), TensorData::String(mut b)) => a.append(&mut b),
                    (TensorData::Bytes(a), TensorData::Bytes(mut b)) => a.append(&mut b),
                    _ => return None,
                }
                Some(())
            }

            /// Splits off the elements from `at` on, as `Vec::split_off` does.
            fn split_off(&mut self, at: usize) -> TensorData {
                with_data!(self, v => TensorData::from(v.split_off(at)))
            }

            /// Decodes the binary encoding of the Open Inference Protocol: fixed-size elements
            /// little-endian, row-major, without padding (a bool is one byte, 0 or 1); BYTES
            /// elements each as a 4-byte little-endian length, then that many bytes (of UTF-8 for
            /// strings).
            /// At most `max` elements are decoded: a string tensor stops there.
            pub fn from_le_bytes(dtype: DType, bytes: &[u8], max: usize) -> Result<TensorData, String> {
                let mut count = 0;
                if let Some(size) = dtype.size() {
                    count = bytes.len() / size;
                    if !bytes.len().is_multiple_of(size) {
                        return Err(format!(
                            "{} bytes are not a whole number of {dtype} elements ({size} bytes each)",
                            bytes.len(),
                        ));
                    }
                }
                Ok(with_dtype!(dtype, T => TensorData::from(element::decode_le::<T>(bytes, count, max)?)))
            }
        }

        $(impl From<Vec<$t>> for TensorData {
            fn from(values: Vec<$t>) -> Self {
                TensorData::$variant(values)
            }
        })*

        impl From<Vec<String>> for TensorData {
            fn from(values: Vec<String>) -> Self {
                TensorData::String(values)
            }
        }

        impl From<Vec<Vec<u8>>> for TensorData {
            fn from(values: Vec<Vec<u8>>) -> Self {
                TensorData::Bytes(values)
            }
        }
    };
}

dtype_table!(define_dtypes!($));
pub(crate) use {with_fixed_data, with_fixed_dtype};

impl DType {
    pub fn is_float(self) -> bool {
        matches!(self, DType::Float16 | DType::Float32 | DType::Float64)
    }

    pub fn from_v2_name(name: &str) -> Option<DType> {
        DType::ALL
            .iter()
            .copied()
            .find(|dtype| dtype.v2_name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An element as JSON writes it: itself, but a float16 (which JSON knows no form of) as the f32
/// of the same value, whose shortest form reads back as the same float16.
trait JsonElement {
    fn serialize_element<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

macro_rules! json_element_as_itself {
    ($($t:ty),*) => {$(
        impl JsonElement for $t {
            fn serialize_element<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.serialize(serializer)
            }
        }
    )*};
}
json_element_as_itself!(bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, String);

/// Bytes as JSON text, a byte that is not UTF-8 replaced (U+FFFD): JSON has no bytes, and only
/// a request's own encoded images are bytes, which no answer repeats.
impl JsonElement for Vec<u8> {
    fn serialize_element<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        String::from_utf8_lossy(self).serialize(serializer)
    }
}

impl JsonElement for f16 {
    fn serialize_element<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_f32().serialize(serializer)
    }
}

/// Serializes one element through [`JsonElement`].
struct Element<'a, T>(&'a T);

impl<T: JsonElement> Serialize for Element<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_element(serializer)
    }
}

impl TensorData {
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` widened to f64 (booleans as 0 and 1), for comparisons and argmax.
    pub fn value_f64(&self, index: usize) -> f64 {
        with_data!(self, v => element::Element::to_f64(&v[index]))
    }

    /// Element `index` printed in its own type (a float32 as `0.35`, not its f64 widening).
    pub fn value_text(&self, index: usize) -> String {
        with_data!(self, v => element::Element::to_text(&v[index]))
    }

    /// BYTES elements given one by one (gRPC's `bytes_contents`), each UTF-8 (a NUL included).
    pub fn strings_from_bytes(elements: Vec<Vec<u8>>) -> Result<Self, String> {
        elements
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| {
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("element {index} is not UTF-8 text; BYTES elements must be UTF-8 here")
                })?;
                Ok(text)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TensorData::String)
    }

    /// BYTES elements given in base64 (standard alphabet, padded), decoded: bytes as they are,
    /// strings as UTF-8.
    pub fn from_base64(self) -> Result<Self, String> {
        use base64::Engine;
        let decode = |index: usize, text: &[u8]| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|error| format!("element {index} is not base64: {error}"))
        };
        match self {
            TensorData::Bytes(elements) => elements
                .iter()
                .enumerate()
                .map(|(index, text)| decode(index, text))
                .collect::<Result<_, _>>()
                .map(TensorData::Bytes),
            TensorData::String(elements) => TensorData::strings_from_bytes(
                elements
                    .iter()
                    .enumerate()
                    .map(|(index, text)| decode(index, text.as_bytes()))
                    .collect::<Result<_, _>>()?,
            ),
            other => Err(format!(
                "the content_type \"base64\" is for BYTES data, not {}",
                other.dtype().v2_name()
            )),
        }
    }

    /// Appends the elements little-endian, row-major, without padding (see [`Self::from_le_bytes`]).
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.len() * self.dtype().size().unwrap_or(8));
        with_data!(self, v => v.iter().for_each(|x| element::Element::write_le(x, out)))
    }

    /// Decodes the leaves of a JSON array in order, whatever its nesting (the Open Inference
    /// Protocol accepts tensor data flat or nested, row-major), expecting exactly `count` of them.
    /// Errors name the leaf by its flat index.
    pub fn from_json_leaves(text: &str, dtype: DType, count: usize) -> Result<Self, TensorError> {
        json::decode_leaves(text, dtype, count)
    }

    /// Appends one JSON leaf converted to this storage's dtype.
    fn push_json(&mut self, value: &Value) -> Result<(), LeafError> {
        fn integer<T: TryFrom<i64> + TryFrom<u64>>(value: &Value) -> Result<T, LeafError> {
            let out_of_range = || LeafError::OutOfRange(value.to_string());
            if let Some(i) = value.as_i64() {
                T::try_from(i).map_err(|_| out_of_range())
            } else if let Some(u) = value.as_u64() {
                T::try_from(u).map_err(|_| out_of_range())
            } else if let Some(f) = value.as_f64() {
                // 3.0 is accepted as 3; 3.5 is not an integer.
                if f.fract() != 0.0 || f.abs() > 9.007_199_254_740_992e15 {
                    return Err(LeafError::NotAnInteger(value.to_string()));
                }
                T::try_from(f as i64).map_err(|_| out_of_range())
            } else {
                Err(LeafError::WrongType(kind_of(value)))
            }
        }
        fn float(value: &Value) -> Result<f64, LeafError> {
            value
                .as_f64()
                .ok_or_else(|| LeafError::WrongType(kind_of(value)))
        }
        match self {
            TensorData::Bool(v) => v.push(
                value
                    .as_bool()
                    .ok_or_else(|| LeafError::WrongType(kind_of(value)))?,
            ),
            TensorData::Int8(v) => v.push(integer(value)?),
            TensorData::Int16(v) => v.push(integer(value)?),
            TensorData::Int32(v) => v.push(integer(value)?),
            TensorData::Int64(v) => v.push(integer(value)?),
            TensorData::Uint8(v) => v.push(integer(value)?),
            TensorData::Uint16(v) => v.push(integer(value)?),
            TensorData::Uint32(v) => v.push(integer(value)?),
            TensorData::Uint64(v) => v.push(integer(value)?),
            TensorData::Float16(v) => {
                let narrowed = f16::from_f64(float(value)?);
                if !narrowed.is_finite() {
                    return Err(LeafError::OutOfRange(value.to_string()));
                }
                v.push(narrowed);
            }
            TensorData::Float32(v) => {
                let narrowed = float(value)? as f32;
                if !narrowed.is_finite() {
                    return Err(LeafError::OutOfRange(value.to_string()));
                }
                v.push(narrowed);
            }
            TensorData::Float64(v) => v.push(float(value)?),
            TensorData::String(v) => {
                let text = value
                    .as_str()
                    .ok_or_else(|| LeafError::WrongType(kind_of(value)))?;
                v.push(text.to_string());
            }
            TensorData::Bytes(v) => {
                let text = value
                    .as_str()
                    .ok_or_else(|| LeafError::WrongType(kind_of(value)))?;
                v.push(text.as_bytes().to_vec());
            }
        }
        Ok(())
    }
}

/// A dense tensor whose element count always equals the product of its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// What is wrong with a JSON value given as a tensor. `at` is the index path, e.g. `[1][2]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("expected a nested array of {dtype} values, received {received}")]
    NotAnArray {
        dtype: DType,
        received: &'static str,
    },
    #[error("expected one {dtype} value (a scalar, shape []), received {received}")]
    NotAScalar {
        dtype: DType,
        received: &'static str,
    },
    #[error("expected a non-empty array, received an empty array at {}", Path(.at))]
    Empty { at: Vec<usize> },
    #[error("ragged array: expected {expected} values at {} like the first one, received {received}", Path(.at))]
    Ragged {
        at: Vec<usize>,
        expected: usize,
        received: String,
    },
    #[error("expected {dtype} at {}, received {received}", Path(.at))]
    WrongType {
        at: Vec<usize>,
        dtype: DType,
        received: String,
    },
    #[error("value {value} at {} is out of range for {dtype}", Path(.at))]
    OutOfRange {
        at: Vec<usize>,
        dtype: DType,
        value: String,
    },
    #[error("more than {limit} strings in one request, the most this server takes; send fewer rows per request")]
    TooManyStrings { limit: usize },
    /// Not JSON, or nested deeper than the parser follows.
    #[error("{0}")]
    Json(String),
    #[error("{len} elements do not fill shape {shape:?}")]
    ElementCount { shape: Vec<usize>, len: usize },
    #[error("expected {expected} values for the shape, received {received}")]
    LeafCount { expected: usize, received: usize },
}

enum LeafError {
    WrongType(&'static str),
    NotAnInteger(String),
    OutOfRange(String),
}

impl LeafError {
    /// The error for this leaf, at index path `at`, in a tensor of `dtype`.
    fn at(self, at: &[usize], dtype: DType) -> TensorError {
        match self {
            LeafError::WrongType(received) => TensorError::WrongType {
                at: at.to_vec(),
                dtype,
                received: received.to_string(),
            },
            LeafError::NotAnInteger(number) => TensorError::WrongType {
                at: at.to_vec(),
                dtype,
                received: number,
            },
            LeafError::OutOfRange(number) => TensorError::OutOfRange {
                at: at.to_vec(),
                dtype,
                value: number,
            },
        }
    }
}

/// Formats an index path as `[1][2]`, or `the top level` when empty.
struct Path<'a>(&'a [usize]);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the top level");
        }
        self.0.iter().try_for_each(|i| write!(f, "[{i}]"))
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, TensorError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// Rows: the size of the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Joins tensors along their first dimension, for a batch of requests; None unless every
    /// part has the first part's dtype and the same other dimensions.
    pub fn concat_rows(parts: Vec<Tensor>) -> Option<Tensor> {
        let mut parts = parts.into_iter();
        let mut joined = parts.next()?;
        for part in parts {
            if joined.shape.len() != part.shape.len()
                || joined.shape.get(1..) != part.shape.get(1..)
                || joined.shape.is_empty()
            {
                return None;
            }
            joined.shape[0] += part.shape[0];
            joined.data.append(part.data)?;
        }
        Some(joined)
    }

    /// Splits along the first dimension into pieces of `rows[i]` rows each, which must add up to
    /// the tensor's rows.
    pub fn split_rows(self, rows: &[usize]) -> Option<Vec<Tensor>> {
        if self.shape.is_empty() || rows.iter().sum::<usize>() != self.shape[0] {
            return None;
        }
        let row_size: usize = self.shape[1..].iter().product();
        let (shape, mut data) = (self.shape, self.data);
        // From the end, so that each split moves only its own piece.
        let mut pieces: Vec<Tensor> = rows
            .iter()
            .rev()
            .map(|&n| {
                let tail = data.split_off(data.len() - n * row_size);
                let mut piece_shape = shape.clone();
                piece_shape[0] = n;
                Tensor {
                    shape: piece_shape,
                    data: tail,
                }
            })
            .collect();
        pieces.reverse();
        Some(pieces)
    }

    /// Each row of an integer tensor [rows, n] lengthened to [rows, `length`] with `value` (a
    /// token input padded to the longest row of a batch); None for another dtype or rank, or a
    /// shorter `length`.
    pub fn pad_axis1(self, length: usize, value: i64) -> Option<Tensor> {
        let (rows, had) = match self.shape.as_slice() {
            &[rows, had] if had <= length => (rows, had),
            _ => return None,
        };
        fn padded<T: Copy>(values: &[T], rows: usize, had: usize, length: usize, pad: T) -> Vec<T> {
            let mut out = Vec::with_capacity(rows * length);
            for row in values.chunks_exact(had.max(1)).take(rows) {
                out.extend_from_slice(&row[..had]);
                out.extend(std::iter::repeat_n(pad, length - had));
            }
            if had == 0 {
                out.resize(rows * length, pad);
            }
            out
        }
        let data = match &self.data {
            TensorData::Int64(values) => {
                TensorData::Int64(padded(values, rows, had, length, value))
            }
            TensorData::Int32(values) => TensorData::Int32(padded(
                values,
                rows,
                had,
                length,
                i32::try_from(value).ok()?,
            )),
            _ => return None,
        };
        Some(Tensor {
            shape: vec![rows, length],
            data,
        })
    }

    /// The first `length` entries of axis 1 of each row (a padded batch's token-level output cut
    /// back to one request's tokens); None when the tensor has no axis 1 that long.
    pub fn truncate_axis1(self, length: usize) -> Option<Tensor> {
        let (&rows, &had) = (self.shape.first()?, self.shape.get(1)?);
        if length > had {
            return None;
        }
        let inner: usize = self.shape[2..].iter().product();
        let mut shape = self.shape;
        shape[1] = length;
        let (row, kept) = (had * inner, length * inner);
        let data = with_data!(self.data, v => {
            let mut v = v;
            if kept > 0 && rows > 0 {
                let mut index = 0;
                v.retain(|_| {
                    let keep = index % row < kept;
                    index += 1;
                    keep
                });
            } else {
                v.clear();
            }
            TensorData::from(v)
        });
        Some(Tensor { shape, data })
    }

    /// Decodes a nested JSON array (rows of values, at any depth) into a tensor of `dtype`.
    /// The shape is read from the first element at each depth; every other element must agree.
    pub fn from_json_text(text: &str, dtype: DType) -> Result<Tensor, TensorError> {
        json::decode_shaped(text, dtype)
    }

    /// A tensor of `shape` whose every element is its dtype's zero (false, the empty string).
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let count = shape.iter().product();
        let data = with_dtype!(dtype, T => TensorData::from(vec![T::default(); count]));
        Tensor { shape, data }
    }

    /// A scalar (shape `[]`) from one bare JSON value, as the seed API and samples give an input
    /// declared with `shape = []` (a sample rate). An array or an object is refused before it is
    /// parsed: only a single value is read into memory.
    pub fn from_json_scalar(text: &str, dtype: DType) -> Result<Tensor, TensorError> {
        let received = match text.trim_start().as_bytes().first() {
            Some(b'[') => Some("an array"),
            Some(b'{') => Some("an object"),
            _ => None,
        };
        if let Some(received) = received {
            return Err(TensorError::NotAScalar { dtype, received });
        }
        let value: Value =
            serde_json::from_str(text).map_err(|error| TensorError::Json(error.to_string()))?;
        let mut data = TensorData::with_capacity(dtype, 1);
        data.push_json(&value)
            .map_err(|error| error.at(&[], dtype))?;
        Ok(Tensor {
            shape: Vec::new(),
            data,
        })
    }

    /// [`Tensor::from_json_text`] for a value already parsed (a sample from predictor.toml).
    pub fn from_json(value: &Value, dtype: DType) -> Result<Tensor, TensorError> {
        Tensor::from_json_text(&value.to_string(), dtype)
    }
}

/// Whether `actual` fits `declared`, where -1 in `declared` is a dynamic dimension.
pub fn shape_fits(declared: &[i64], actual: &[usize]) -> bool {
    declared.len() == actual.len()
        && declared
            .iter()
            .zip(actual)
            .all(|(&d, &a)| d < 0 || usize::try_from(d) == Ok(a))
}

/// Serializes as nested JSON arrays following the shape, each element in its own type
/// (so a float32 prints as `0.9775`, not as its widened f64 digits).
impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_data!(&self.data, v => Nested { dims: &self.shape, data: v }.serialize(serializer))
    }
}

/// Serializes tensor data as one flat JSON array, as the Open Inference Protocol returns it.
pub struct Flat<'a>(pub &'a TensorData);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_data!(self.0, v => serializer.collect_seq(v.iter().map(Element)))
    }
}

struct Nested<'a, T> {
    dims: &'a [usize],
    data: &'a [T],
}

impl<T: JsonElement> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some((&outer, inner)) = self.dims.split_first() else {
            return self.data[0].serialize_element(serializer);
        };
        let chunk = inner.iter().product::<usize>();
        let mut seq = serializer.serialize_seq(Some(outer))?;
        for index in 0..outer {
            seq.serialize_element(&Nested {
                dims: inner,
                data: &self.data[index * chunk..(index + 1) * chunk],
            })?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_rows_are_padded_to_a_length() {
        let ids = Tensor::new(vec![2, 2], TensorData::Int64(vec![1, 2, 3, 4])).unwrap();
        let padded = ids.clone().pad_axis1(4, 9).unwrap();
        assert_eq!(padded.shape(), [2, 4]);
        assert_eq!(
            *padded.data(),
            TensorData::Int64(vec![1, 2, 9, 9, 3, 4, 9, 9])
        );
        assert_eq!(padded.truncate_axis1(2).unwrap(), ids);
        let mask = Tensor::new(vec![1, 1], TensorData::Int32(vec![1])).unwrap();
        assert_eq!(
            *mask.pad_axis1(2, 0).unwrap().data(),
            TensorData::Int32(vec![1, 0])
        );
        assert!(ids.clone().pad_axis1(1, 0).is_none());
        assert!(Tensor::new(vec![1, 1], TensorData::Float32(vec![1.0]))
            .unwrap()
            .pad_axis1(2, 0)
            .is_none());
    }

    #[test]
    fn axis_1_is_cut_back_row_by_row() {
        // Two rows of three tokens of two values: each row keeps its first two tokens.
        let tokens = Tensor::new(vec![2, 3, 2], TensorData::Int64((0..12).collect())).unwrap();
        let cut = tokens.clone().truncate_axis1(2).unwrap();
        assert_eq!(cut.shape(), [2, 2, 2]);
        assert_eq!(*cut.data(), TensorData::Int64(vec![0, 1, 2, 3, 6, 7, 8, 9]));
        assert_eq!(tokens.clone().truncate_axis1(3).unwrap(), tokens);
        assert!(tokens.truncate_axis1(4).is_none());
        let strings = Tensor::new(vec![1, 2], TensorData::String(vec!["a".into(), "b".into()]));
        let cut = strings.unwrap().truncate_axis1(1).unwrap();
        assert_eq!(*cut.data(), TensorData::String(vec!["a".into()]));
    }

    #[test]
    fn decodes_rows_and_encodes_them_back_unchanged() {
        let value = json!([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5]]);
        let tensor = Tensor::from_json(&value, DType::Float32).unwrap();
        assert_eq!(tensor.shape(), &[2, 4]);
        assert_eq!(
            serde_json::to_string(&tensor).unwrap(),
            "[[5.1,3.5,1.4,0.2],[6.4,3.2,4.5,1.5]]"
        );
    }

    #[test]
    fn decodes_deeper_nesting_and_integers() {
        let tensor = Tensor::from_json(&json!([[[1, 2], [3, 4]]]), DType::Int64).unwrap();
        assert_eq!(tensor.shape(), &[1, 2, 2]);
        assert_eq!(tensor.data(), &TensorData::Int64(vec![1, 2, 3, 4]));
        let whole_float = Tensor::from_json(&json!([3.0]), DType::Uint8).unwrap();
        assert_eq!(whole_float.data(), &TensorData::Uint8(vec![3]));
    }

    #[test]
    fn numbers_are_read_as_the_nearest_float() {
        let tensor = Tensor::from_json_text("[20.05e-300, 0.1]", DType::Float64).unwrap();
        assert_eq!(tensor.data(), &TensorData::Float64(vec![20.05e-300, 0.1]));
    }

    #[test]
    fn names_where_and_what_is_wrong() {
        let error = |value: Value, dtype| Tensor::from_json(&value, dtype).unwrap_err().to_string();
        assert_eq!(
            error(json!([[1, 2], [3]]), DType::Float32),
            "ragged array: expected 2 values at [1] like the first one, received 1"
        );
        assert_eq!(
            error(json!([[1, "x"]]), DType::Float32),
            "expected float32 at [0][1], received a string"
        );
        assert_eq!(
            error(json!([[1, [2]]]), DType::Float32),
            "expected float32 at [0][1], received an array"
        );
        assert_eq!(
            error(json!([1.5]), DType::Int32),
            "expected int32 at [0], received 1.5"
        );
        assert_eq!(
            error(json!([300]), DType::Uint8),
            "value 300 at [0] is out of range for uint8"
        );
        assert_eq!(
            error(json!([-1]), DType::Uint64),
            "value -1 at [0] is out of range for uint64"
        );
        assert_eq!(
            error(json!([1e39]), DType::Float32),
            "value 1e+39 at [0] is out of range for float32"
        );
        assert_eq!(
            error(json!([]), DType::Float32),
            "expected a non-empty array, received an empty array at the top level"
        );
        assert_eq!(
            error(json!([[]]), DType::Float32),
            "expected a non-empty array, received an empty array at [0]"
        );
        assert_eq!(
            error(json!(4), DType::Float32),
            "expected a nested array of float32 values, received a number"
        );
        assert_eq!(
            error(json!([1, 0]), DType::Bool),
            "expected bool at [0], received a number"
        );
    }

    #[test]
    fn a_ragged_body_claiming_huge_dimensions_is_refused_without_reserving_them() {
        // Each first element is long, the others short: the claim is 5000^4 elements.
        let wide = |inner: Value| {
            Value::Array(
                std::iter::once(inner)
                    .chain((1..5000).map(|_| json!(0)))
                    .collect(),
            )
        };
        let claim = wide(wide(wide(wide(json!(0)))));
        let error = Tensor::from_json(&claim, DType::Float32).unwrap_err();
        assert!(matches!(error, TensorError::Ragged { .. }), "{error}");
    }

    #[test]
    fn dynamic_dimensions_fit_any_size_fixed_ones_only_theirs() {
        assert!(shape_fits(&[-1, 4], &[7, 4]));
        assert!(!shape_fits(&[-1, 4], &[7, 3]));
        assert!(!shape_fits(&[-1, 4], &[4]));
    }

    #[test]
    fn element_count_must_fill_the_shape() {
        assert!(Tensor::new(vec![2, 2], TensorData::Int8(vec![1, 2, 3])).is_err());
    }
}

#[cfg(test)]
mod protocol_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytes_take_any_bytes_and_strings_only_utf8() {
        // A JPEG's first bytes: no UTF-8.
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0];
        let mut wire = Vec::new();
        TensorData::Bytes(vec![jpeg.to_vec()]).write_le_bytes(&mut wire);
        assert_eq!(
            TensorData::from_le_bytes(DType::Bytes, &wire, 1).unwrap(),
            TensorData::Bytes(vec![jpeg.to_vec()])
        );
        let refused = TensorData::from_le_bytes(DType::String, &wire, 1).unwrap_err();
        assert!(refused.contains("is not UTF-8 text"), "{refused}");
        // JSON carries them in base64, when the input says so.
        let base64 = TensorData::Bytes(vec![b"/9j/4A==".to_vec()]).from_base64();
        assert_eq!(base64.unwrap(), TensorData::Bytes(vec![jpeg.to_vec()]));
        let text = TensorData::String(vec!["aMOp".into()]).from_base64();
        assert_eq!(text.unwrap(), TensorData::String(vec!["hé".into()]));
        let message = TensorData::Bytes(vec![b"ok".to_vec(), b"not base64!".to_vec()])
            .from_base64()
            .unwrap_err();
        assert!(message.starts_with("element 0 is not base64"), "{message}");
        let message = TensorData::Float32(vec![1.0]).from_base64().unwrap_err();
        assert!(message.contains("for BYTES data, not FP32"), "{message}");
    }

    #[test]
    fn every_dtype_has_a_protocol_name_and_its_bytes_round_trip() {
        for &dtype in DType::ALL {
            // BYTES is both strings and bytes: its name gives strings, the bundle says which.
            let named = DType::from_v2_name(dtype.v2_name());
            assert_eq!(
                named,
                Some(dtype)
                    .filter(|&d| d != DType::Bytes)
                    .or(Some(DType::String))
            );
            let data = [json!([0, 1]), json!([false, true]), json!(["", "zwei"])]
                .iter()
                .find_map(|leaves| TensorData::from_json_leaves(&leaves.to_string(), dtype, 2).ok())
                .unwrap();
            let mut bytes = Vec::new();
            data.write_le_bytes(&mut bytes);
            let expected = dtype.size().map_or(4 + 4 + 4, |size| 2 * size);
            assert_eq!(bytes.len(), expected, "{dtype}");
            assert_eq!(
                TensorData::from_le_bytes(dtype, &bytes, usize::MAX).unwrap(),
                data
            );
        }
        assert_eq!(DType::from_v2_name("BYTES"), Some(DType::String));
    }

    #[test]
    fn strings_are_length_prefixed_utf8_a_nul_included() {
        let bytes = [&3u32.to_le_bytes()[..], b"abc", &0u32.to_le_bytes()].concat();
        assert_eq!(
            TensorData::from_le_bytes(DType::String, &bytes, 2).unwrap(),
            TensorData::String(vec!["abc".into(), String::new()])
        );
        let error =
            |bytes: &[u8]| TensorData::from_le_bytes(DType::String, bytes, usize::MAX).unwrap_err();
        assert_eq!(
            error(&[&9u32.to_le_bytes()[..], b"abc"].concat()),
            "element 0 claims 9 bytes, but only 3 bytes of data follow"
        );
        assert_eq!(
            error(&[&1u32.to_le_bytes()[..], b"a", &[7, 0]].concat()),
            "element 1 has 2 bytes where its 4-byte length should be"
        );
        assert_eq!(
            error(&[&1u32.to_le_bytes()[..], &[0xff]].concat()),
            "element 0 is not UTF-8 text; BYTES elements must be UTF-8 here"
        );
        assert_eq!(
            TensorData::from_le_bytes(
                DType::String,
                &[&3u32.to_le_bytes()[..], b"a\0b"].concat(),
                1
            )
            .unwrap(),
            TensorData::String(vec!["a\0b".into()])
        );
        let three = [&1u32.to_le_bytes()[..], b"a"].concat().repeat(3);
        assert_eq!(
            TensorData::from_le_bytes(DType::String, &three, 2).unwrap_err(),
            "element 2 is past the 2 elements its shape holds"
        );
        assert_eq!(
            TensorData::strings_from_bytes(vec![b"ok".to_vec(), b"\0".to_vec()]).unwrap(),
            TensorData::String(vec!["ok".into(), "\0".into()])
        );
    }

    #[test]
    fn too_many_strings_are_refused_as_they_come() {
        let many = format!(
            "[{}\"\"]",
            "\"\",".repeat(crate::defaults::MAX_STRING_ELEMENTS)
        );
        let error = Tensor::from_json_text(&many, DType::String).unwrap_err();
        assert!(
            matches!(error, TensorError::TooManyStrings { .. }),
            "{error}"
        );
    }

    #[test]
    fn strings_decode_from_json_and_encode_back() {
        let tensor = Tensor::from_json(&json!([["a b"], ["é"]]), DType::String).unwrap();
        assert_eq!(tensor.shape(), &[2, 1]);
        assert_eq!(
            serde_json::to_string(&tensor).unwrap(),
            r#"[["a b"],["é"]]"#
        );
        assert_eq!(
            serde_json::to_string(&Flat(tensor.data())).unwrap(),
            r#"["a b","é"]"#
        );
        let error = |value: Value| {
            Tensor::from_json(&value, DType::String)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!([["x"], [1]])),
            "expected string at [1][0], received a number"
        );
        assert_eq!(
            Tensor::from_json_text(r#"["a\u0000b"]"#, DType::String)
                .unwrap()
                .data(),
            &TensorData::String(vec!["a\0b".into()])
        );
        let joined = Tensor::concat_rows(vec![tensor.clone(), tensor]).unwrap();
        assert_eq!(joined.rows(), 4);
        let pieces = joined.split_rows(&[1, 3]).unwrap();
        assert_eq!(
            pieces[1].data(),
            &TensorData::String(vec!["é".into(), "a b".into(), "é".into()])
        );
    }

    #[test]
    fn bytes_are_little_endian() {
        let data = TensorData::from_le_bytes(DType::Int16, &[0x01, 0x02, 0xff, 0xff], 2).unwrap();
        assert_eq!(data, TensorData::Int16(vec![0x0201, -1]));
        assert!(TensorData::from_le_bytes(DType::Int32, &[0; 6], 2).is_err());
        assert!(TensorData::from_le_bytes(DType::Bool, &[0, 1, 2], 3).is_err());
    }

    #[test]
    fn leaves_are_read_flat_or_nested_and_counted() {
        let flat =
            TensorData::from_json_leaves(&json!([1, 2, 3, 4]).to_string(), DType::Int8, 4).unwrap();
        let nested =
            TensorData::from_json_leaves(&json!([[1, 2], [3, 4]]).to_string(), DType::Int8, 4)
                .unwrap();
        assert_eq!(flat, nested);
        let error = |value: Value, count| {
            TensorData::from_json_leaves(&value.to_string(), DType::Int8, count)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!([1, 2, 3]), 4),
            "expected 4 values for the shape, received 3"
        );
        assert_eq!(
            error(json!([1, 2, 3, 4, 5]), 4),
            "expected 4 values for the shape, received 5"
        );
        assert_eq!(
            error(json!([1, [true]]), 2),
            "expected int8 at [1], received a boolean"
        );
        assert_eq!(
            error(json!(1), 1),
            "expected a nested array of int8 values, received a number"
        );
        // An object past the count is read to its end and counted like any value.
        assert_eq!(
            error(json!([1, 2, {"a": 1}]), 2),
            "expected 2 values for the shape, received 3"
        );
    }

    #[test]
    fn flat_serializes_one_array() {
        let data = TensorData::Float32(vec![0.5, 0.25]);
        assert_eq!(serde_json::to_string(&Flat(&data)).unwrap(), "[0.5,0.25]");
    }
}
