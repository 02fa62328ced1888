//! The parameters of a request, an input or an output, read the same whatever wire carried them:
//! each transport shows its own map (JSON values, protobuf `InferParameter`s) as [`Parameters`].

use std::fmt;

use super::invalid;
use super::shared_memory::SharedMemorySpan;
use crate::serving::error::ServeError;
use crate::text::clip;

/// The most parameters one map (a request's, an input's, an output's) may hold, on every wire:
/// with their values scalars, what a map decodes to is then bounded by its own bytes.
pub const MAX_PARAMETERS: usize = 64;

/// The most inputs, or outputs, one request may name: far more than a model takes (a large
/// language model's cache of 80 layers is 160), few enough that a JSON body of empty entries
/// decodes to a bounded structure.
pub const MAX_TENSORS: usize = 256;

/// The most dimensions a tensor's shape may have (numpy's own limit).
pub const MAX_RANK: usize = 64;

/// The refusal of a map with more than [`MAX_PARAMETERS`] entries.
pub fn too_many_parameters(owner: &str) -> ServeError {
    invalid(format!(
        "{owner}: more than {MAX_PARAMETERS} parameters; the protocol's are a handful"
    ))
}

/// A parameter's value, typed as the protocol types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Parameter<'a> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Text(&'a str),
    /// Anything else (a JSON array, object or null), as the caller wrote it.
    Other(String),
}

/// A type a parameter may be read as.
pub trait FromParameter: Sized {
    fn from_parameter(value: &Parameter<'_>) -> Option<Self>;
}

/// A count: a non-negative integer (tritonclient sends `int64_param`).
impl FromParameter for u64 {
    fn from_parameter(value: &Parameter<'_>) -> Option<u64> {
        match *value {
            Parameter::Uint(count) => Some(count),
            Parameter::Int(count) => u64::try_from(count).ok(),
            _ => None,
        }
    }
}

impl FromParameter for bool {
    fn from_parameter(value: &Parameter<'_>) -> Option<bool> {
        match *value {
            Parameter::Bool(flag) => Some(flag),
            _ => None,
        }
    }
}

impl FromParameter for String {
    fn from_parameter(value: &Parameter<'_>) -> Option<String> {
        match *value {
            Parameter::Text(text) => Some(text.to_string()),
            _ => None,
        }
    }
}

/// As the caller wrote it, for messages: text quoted, as in JSON.
impl fmt::Display for Parameter<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parameter::Bool(flag) => write!(out, "{flag}"),
            Parameter::Int(number) => write!(out, "{number}"),
            Parameter::Uint(number) => write!(out, "{number}"),
            Parameter::Double(number) => write!(out, "{number:?}"), // 8.0, not 8
            Parameter::Text(text) => {
                out.write_str(&serde_json::to_string(text).map_err(|_| fmt::Error)?)
            }
            Parameter::Other(written) => out.write_str(written),
        }
    }
}

/// A wire's parameter map.
pub trait Parameters {
    /// The parameter `key`; None when it is absent.
    fn parameter(&self, key: &str) -> Option<Parameter<'_>>;

    /// The parameter `key` as a `T` (absent: None); refused, naming `owner` and what it must be
    /// (`kind`), when it is of another type.
    fn read<T: FromParameter>(
        &self,
        key: &str,
        owner: &str,
        kind: &str,
    ) -> Result<Option<T>, ServeError> {
        let Some(value) = self.parameter(key) else {
            return Ok(None);
        };
        T::from_parameter(&value).map(Some).ok_or_else(|| {
            invalid(format!(
                "{owner}: parameter '{key}' must be {kind}, received {}",
                clip(&value.to_string())
            ))
        })
    }

    /// The system shared memory extension's parameters of an input or output.
    fn shared_memory_span(&self, owner: &str) -> Result<Option<SharedMemorySpan>, ServeError> {
        SharedMemorySpan::from_parameters(
            owner,
            self.read("shared_memory_region", owner, "a region name")?,
            self.read("shared_memory_offset", owner, "a byte offset")?,
            self.read("shared_memory_byte_size", owner, "a byte count")?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Parameters for [(&str, Parameter<'static>)] {
        fn parameter(&self, key: &str) -> Option<Parameter<'_>> {
            let (_, value) = self.iter().find(|(name, _)| *name == key)?;
            Some(value.clone())
        }
    }

    #[test]
    fn a_parameter_is_read_as_its_kind_or_refused_naming_what_it_must_be() {
        let given = [
            ("negative", Parameter::Int(-3)),
            ("signed", Parameter::Int(3)),
            ("text", Parameter::Text("2")),
            ("float", Parameter::Double(8.0)),
        ];
        let given = &given[..];
        assert_eq!(given.read("signed", "o", "a count").unwrap(), Some(3_u64));
        assert_eq!(given.read::<u64>("absent", "o", "a count").unwrap(), None);
        assert_eq!(
            given.read("text", "o", "text").unwrap(),
            Some("2".to_string())
        );
        let refused = given.read::<u64>("negative", "output 'y'", "a class count");
        let message = refused.unwrap_err().public_message().to_string();
        assert_eq!(
            message,
            "output 'y': parameter 'negative' must be a class count, received -3"
        );
        let refused = given.read::<u64>("float", "o", "a byte count");
        assert!(refused
            .unwrap_err()
            .public_message()
            .ends_with("received 8.0"));
        let refused = given.read::<bool>("text", "o", "true or false");
        assert!(refused
            .unwrap_err()
            .public_message()
            .ends_with("received \"2\""));
    }

    #[test]
    fn shared_memory_needs_a_region_and_a_size() {
        let span = [
            ("shared_memory_region", Parameter::Text("r")),
            ("shared_memory_byte_size", Parameter::Uint(8)),
        ];
        let span = span[..].shared_memory_span("input 'x'").unwrap().unwrap();
        assert_eq!(
            (span.region.as_str(), span.offset, span.byte_size),
            ("r", 0, 8)
        );
        let no_size = [("shared_memory_region", Parameter::Text("r"))];
        assert!(no_size[..].shared_memory_span("input 'x'").is_err());
        let none: [(&str, Parameter<'static>); 0] = [];
        assert!(none[..].shared_memory_span("input 'x'").unwrap().is_none());
    }
}
