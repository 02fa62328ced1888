//! The protocol's typed tensor contents (gRPC's `InferTensorContents`): one list per group of
//! datatypes, of which a tensor fills the one its datatype names.

use crate::tensor::{DType, TensorData};

/// The typed contents of one input, in the protocol's field names; the gRPC service moves its
/// message's lists in.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TypedContents {
    pub bool_contents: Vec<bool>,
    pub int_contents: Vec<i32>,
    pub int64_contents: Vec<i64>,
    pub uint_contents: Vec<u32>,
    pub uint64_contents: Vec<u64>,
    pub fp32_contents: Vec<f32>,
    pub fp64_contents: Vec<f64>,
    pub bytes_contents: Vec<Vec<u8>>,
}

impl TypedContents {
    /// Typed contents in the field the protocol gives `dtype` (INT8 to INT32 share `int_contents`,
    /// each value checked against the narrower type); values in any other field are refused rather
    /// than ignored.
    pub fn into_data(mut self, dtype: DType) -> Result<TensorData, String> {
        fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
            values: Vec<W>,
            dtype: DType,
        ) -> Result<Vec<T>, String> {
            values
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    T::try_from(value).map_err(|_| {
                        format!("value {value} at [{index}] is out of range for {dtype}")
                    })
                })
                .collect()
        }
        use std::mem::take;
        let c = &mut self;
        let (data, field) = match dtype {
            DType::Float16 => return Err(
                "FP16 values go in raw_input_contents: the protocol has no typed field for them"
                    .to_string(),
            ),
            DType::Bool => (
                TensorData::Bool(take(&mut c.bool_contents)),
                "bool_contents",
            ),
            DType::Int8 => (
                TensorData::Int8(narrow(take(&mut c.int_contents), dtype)?),
                "int_contents",
            ),
            DType::Int16 => (
                TensorData::Int16(narrow(take(&mut c.int_contents), dtype)?),
                "int_contents",
            ),
            DType::Int32 => (TensorData::Int32(take(&mut c.int_contents)), "int_contents"),
            DType::Int64 => (
                TensorData::Int64(take(&mut c.int64_contents)),
                "int64_contents",
            ),
            DType::Uint8 => (
                TensorData::Uint8(narrow(take(&mut c.uint_contents), dtype)?),
                "uint_contents",
            ),
            DType::Uint16 => (
                TensorData::Uint16(narrow(take(&mut c.uint_contents), dtype)?),
                "uint_contents",
            ),
            DType::Uint32 => (
                TensorData::Uint32(take(&mut c.uint_contents)),
                "uint_contents",
            ),
            DType::Uint64 => (
                TensorData::Uint64(take(&mut c.uint64_contents)),
                "uint64_contents",
            ),
            DType::Float32 => (
                TensorData::Float32(take(&mut c.fp32_contents)),
                "fp32_contents",
            ),
            DType::Float64 => (
                TensorData::Float64(take(&mut c.fp64_contents)),
                "fp64_contents",
            ),
            DType::String => (
                TensorData::strings_from_bytes(take(&mut c.bytes_contents))?,
                "bytes_contents",
            ),
            DType::Bytes => (
                TensorData::Bytes(take(&mut c.bytes_contents)),
                "bytes_contents",
            ),
        };
        // What is left must be empty: values in a field of another datatype are a mistake.
        let others = [
            ("bool_contents", c.bool_contents.len()),
            ("int_contents", c.int_contents.len()),
            ("int64_contents", c.int64_contents.len()),
            ("uint_contents", c.uint_contents.len()),
            ("uint64_contents", c.uint64_contents.len()),
            ("fp32_contents", c.fp32_contents.len()),
            ("fp64_contents", c.fp64_contents.len()),
            ("bytes_contents", c.bytes_contents.len()),
        ];
        if let Some((other, _)) = others.iter().find(|(_, len)| *len > 0) {
            return Err(format!(
                "{} values go in contents.{field}, but contents.{other} has values",
                dtype.v2_name()
            ));
        }
        Ok(data)
    }
}
