//! Triton's CUDA shared memory extension, answered as Triton built without GPUs answers it, so
//! that the clients and examples that begin by clearing every CUDA region go on to what they
//! came for: no region is ever registered (the status lists none, unregistering has nothing to
//! do), and registering one is refused, saying why and what to use instead.

use crate::serving::error::ServeError;
use crate::text::clip;

/// Why no CUDA region can be registered.
const NO_CUDA: &str = "this server runs its models on the CPU and registers no CUDA shared memory; system shared memory (--allow-shared-memory) takes inputs and outputs in place";

/// The registered regions: none. A region asked for by name is not registered.
pub fn status(name: Option<&str>) -> Result<(), ServeError> {
    match name {
        None => Ok(()),
        Some(name) => Err(ServeError::not_found(format!(
            "no CUDA shared memory region '{}' is registered: {NO_CUDA}",
            clip(name)
        ))),
    }
}

/// Registering a region: refused.
pub fn refuse_register(name: &str) -> ServeError {
    ServeError::invalid(format!(
        "cannot register CUDA shared memory region '{}': {NO_CUDA}",
        clip(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::error::ErrorKind;

    #[test]
    fn no_region_is_listed_none_can_be_named_and_registering_says_why() {
        assert!(status(None).is_ok());
        let named = status(Some("input0")).unwrap_err();
        assert_eq!(named.kind(), ErrorKind::NotFound);
        assert!(named.public_message().contains("'input0'"));
        let refused = refuse_register("output0");
        assert_eq!(refused.kind(), ErrorKind::InvalidInput);
        assert!(refused
            .public_message()
            .starts_with("cannot register CUDA shared memory region 'output0': this server runs its models on the CPU"));
        assert!(refused.public_message().contains("--allow-shared-memory"));
    }
}
