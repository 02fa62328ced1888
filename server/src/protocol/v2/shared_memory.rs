//! The system shared memory extension inside an inference: where an input's or output's bytes
//! are, read and written through the registry's regions.

use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::tensor::Tensor;

use super::invalid;

/// Where a tensor's bytes are in shared memory: the system shared memory extension's
/// `shared_memory_region`, `shared_memory_offset` and `shared_memory_byte_size` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedMemorySpan {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

impl SharedMemorySpan {
    /// The span the three parameters give; None without a region. `owner` names the input or
    /// output for messages.
    pub fn from_parameters(
        owner: &str,
        region: Option<String>,
        offset: Option<u64>,
        byte_size: Option<u64>,
    ) -> Result<Option<Self>, ServeError> {
        match (region, byte_size) {
            (None, None) if offset.is_none() => Ok(None),
            (None, _) => Err(invalid(format!(
                "{owner}: the shared memory parameters need 'shared_memory_region'"
            ))),
            (Some(_), None) => Err(invalid(format!(
                "{owner}: parameter 'shared_memory_byte_size' is needed with 'shared_memory_region'"
            ))),
            (Some(region), Some(byte_size)) => Ok(Some(SharedMemorySpan {
                region,
                offset: offset.unwrap_or(0),
                byte_size,
            })),
        }
    }

    /// Reads an input's bytes from shared memory. A request's shared memory inputs together may
    /// hold at most `--max-body-bytes`, as its body: `budget` is what is left of it.
    pub fn read(
        &self,
        registry: &Registry,
        owner: &str,
        budget: &mut usize,
    ) -> Result<Vec<u8>, ServeError> {
        let size = usize::try_from(self.byte_size).unwrap_or(usize::MAX);
        *budget = budget.checked_sub(size).ok_or_else(|| {
            ServeError::new(
                crate::serving::error::ErrorKind::TooLarge,
                format!(
                    "{owner}: the request's shared memory inputs hold more than this server reads for one request ({} bytes, its --max-body-bytes)",
                    registry.limits().max_body_bytes
                ),
            )
        })?;
        registry
            .shared_memory()
            .read(owner, &self.region, self.offset, self.byte_size)
    }

    /// Checks the shared memory an output asks for, before the model runs.
    pub fn check_writable(&self, registry: &Registry, owner: &str) -> Result<(), ServeError> {
        registry
            .shared_memory()
            .check(owner, &self.region, self.offset, self.byte_size)
    }

    /// Writes an output's answer to its shared memory, as the binary encoding lays it out.
    pub fn write(
        &self,
        registry: &Registry,
        owner: &str,
        tensor: &Tensor,
    ) -> Result<(), ServeError> {
        let mut bytes = Vec::new();
        tensor.data().write_le_bytes(&mut bytes);
        registry
            .shared_memory()
            .write(owner, &self.region, self.offset, self.byte_size, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_needs_its_region_and_byte_size_and_the_offset_defaults_to_zero() {
        let span = |region: Option<&str>, offset, byte_size| {
            SharedMemorySpan::from_parameters(
                "input 'x'",
                region.map(str::to_string),
                offset,
                byte_size,
            )
        };
        assert_eq!(span(None, None, None).unwrap(), None);
        let given = span(Some("r"), None, Some(8)).unwrap().unwrap();
        assert_eq!((given.offset, given.byte_size), (0, 8));
        let error = span(None, Some(4), None).unwrap_err();
        assert_eq!(
            error.public_message(),
            "input 'x': the shared memory parameters need 'shared_memory_region'"
        );
        assert!(span(Some("r"), None, None).is_err());
    }

    #[test]
    fn the_inputs_of_one_request_read_at_most_the_body_limit() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("object"), [7u8; 16]).unwrap();
        let registry = crate::protocol::v2::testing::echo(Some(folder.path()));
        registry
            .shared_memory()
            .register("r", "object", 0, 16)
            .unwrap();
        let span = SharedMemorySpan {
            region: "r".to_string(),
            offset: 4,
            byte_size: 8,
        };
        let mut budget = 12;
        assert_eq!(
            span.read(&registry, "input 'x'", &mut budget).unwrap(),
            [7; 8]
        );
        assert_eq!(budget, 4);
        let error = span.read(&registry, "input 'y'", &mut budget).unwrap_err();
        assert_eq!(error.kind(), crate::serving::error::ErrorKind::TooLarge);
    }
}
