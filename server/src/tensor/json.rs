//! Tensors decoded from JSON text as it streams: no JSON tree is built, so a request costs about
//! the size of its tensor in memory, whatever the nesting of its arrays (a tree of
//! `serde_json::Value` costs tens of times the body).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{DType, LeafError, Tensor, TensorData, TensorError};

/// How the nesting of the arrays is read.
#[derive(Debug, Clone, Copy)]
enum Nesting {
    /// Regular nesting gives the shape: every array at a depth as long as the first one there,
    /// every leaf at the same depth (the seed API's rows, samples).
    Shape,
    /// Any nesting, read row-major, with exactly `count` leaves (the Open Inference Protocol,
    /// whose request gives the shape).
    Leaves { count: usize },
}

struct Decoder {
    nesting: Nesting,
    out: TensorData,
    /// The length of the arrays at each depth, from the first one there to end.
    dims: Vec<Option<usize>>,
    /// The depth of the leaves, from the first one.
    leaf_depth: Option<usize>,
    /// The index path of the value being read.
    at: Vec<usize>,
    leaves: usize,
    /// Why decoding stopped, when the JSON was fine but the tensor was not.
    error: Option<TensorError>,
}

/// Reads a nested JSON array whose regular nesting gives the shape (rows of values, at any
/// depth). Errors name the place, e.g. `[1][2]`.
pub fn decode_shaped(text: &str, dtype: DType) -> Result<Tensor, TensorError> {
    let decoder = run(text, dtype, Nesting::Shape, 0)?;
    let shape = decoder.dims[..decoder.leaf_depth.unwrap_or(0)]
        .iter()
        .map(|dim| dim.unwrap_or(0))
        .collect();
    Ok(Tensor {
        shape,
        data: decoder.out,
    })
}

/// Reads the leaves of a JSON array in order, flat or nested, expecting exactly `count` of them.
/// Errors name a leaf by its flat index.
pub fn decode_leaves(text: &str, dtype: DType, count: usize) -> Result<TensorData, TensorError> {
    let decoder = run(text, dtype, Nesting::Leaves { count }, count)?;
    if decoder.leaves != count {
        return Err(TensorError::LeafCount {
            expected: count,
            received: decoder.leaves,
        });
    }
    Ok(decoder.out)
}

fn run(text: &str, dtype: DType, nesting: Nesting, reserve: usize) -> Result<Decoder, TensorError> {
    let mut decoder = Decoder {
        nesting,
        out: TensorData::with_capacity(dtype, reserve.min(1 << 16)),
        dims: Vec::new(),
        leaf_depth: None,
        at: Vec::new(),
        leaves: 0,
        error: None,
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let parsed = (&mut decoder)
        .deserialize(&mut json)
        .and_then(|()| json.end());
    match (decoder.error.take(), parsed) {
        (Some(error), _) => Err(error),
        (None, Err(error)) => Err(TensorError::Json(error.to_string())),
        (None, Ok(())) => Ok(decoder),
    }
}

impl Decoder {
    /// Stops decoding with `error`; serde only carries a placeholder out.
    fn fail<E: de::Error>(&mut self, error: TensorError) -> E {
        self.error = Some(error);
        E::custom("not a tensor")
    }

    fn leaf<E: de::Error>(&mut self, leaf: Result<Value, &'static str>) -> Result<(), E> {
        let dtype = self.out.dtype();
        let depth = self.at.len();
        if depth == 0 {
            let received = match &leaf {
                Ok(value) => super::kind_of(value),
                Err(kind) => kind,
            };
            return Err(self.fail(TensorError::NotAnArray { dtype, received }));
        }
        let index = self.leaves;
        self.leaves += 1;
        match self.nesting {
            Nesting::Leaves { count } => {
                // Past `count` the answer is known: count on, but store nothing more.
                if index >= count {
                    return Ok(());
                }
            }
            Nesting::Shape => {
                // The shape is known only at the end: strings are bounded as they come.
                if dtype.size().is_none() && self.leaves > crate::defaults::MAX_STRING_ELEMENTS {
                    let limit = crate::defaults::MAX_STRING_ELEMENTS;
                    return Err(self.fail(TensorError::TooManyStrings { limit }));
                }
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(leaf_depth) if leaf_depth != depth => {
                        // A value where the first element had an array.
                        let error = TensorError::Ragged {
                            at: self.at.clone(),
                            expected: self.dims.get(depth).copied().flatten().unwrap_or(0),
                            received: match &leaf {
                                Ok(value) => super::kind_of(value),
                                Err(kind) => kind,
                            }
                            .to_string(),
                        };
                        return Err(self.fail(error));
                    }
                    Some(_) => {}
                }
            }
        }
        let pushed = match leaf {
            Ok(value) => self.out.push_json(&value),
            Err(kind) => Err(LeafError::WrongType(kind)),
        };
        pushed.map_err(|error| {
            // The place, built only for the message: a flat index, or the index path.
            let at = match self.nesting {
                Nesting::Leaves { .. } => vec![index],
                Nesting::Shape => self.at.clone(),
            };
            let error = error.at(&at, dtype);
            self.fail(error)
        })
    }
}

impl<'de> DeserializeSeed<'de> for &mut Decoder {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Decoder {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a nested array of numbers, booleans or strings")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(Ok(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(Ok(Value::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.leaf(Ok(Value::from(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.leaf(Ok(Value::from(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        if self.out.dtype().size().is_none() {
            self.leaf(Ok(Value::String(value.to_string())))
        } else {
            self.leaf(Err("a string"))
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Err("null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        // Read it to its end, so that the parser goes on where the object ends.
        while entries.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.leaf(Err("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let depth = self.at.len();
        let shaped = matches!(self.nesting, Nesting::Shape);
        if shaped && self.leaf_depth == Some(depth) {
            let error = TensorError::WrongType {
                at: self.at.clone(),
                dtype: self.out.dtype(),
                received: "an array".to_string(),
            };
            return Err(self.fail(error));
        }
        self.at.push(0);
        let mut len = 0;
        while items.next_element_seed(&mut *self)?.is_some() {
            len += 1;
            if let Some(at) = self.at.last_mut() {
                *at = len;
            }
        }
        self.at.pop();
        if !shaped {
            return Ok(());
        }
        if len == 0 {
            let error = TensorError::Empty {
                at: self.at.clone(),
            };
            return Err(self.fail(error));
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(expected) if expected != len => {
                let error = TensorError::Ragged {
                    at: self.at.clone(),
                    expected,
                    received: len.to_string(),
                };
                return Err(self.fail(error));
            }
            Some(_) => {}
        }
        Ok(())
    }
}
