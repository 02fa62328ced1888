//! Finding the model a request names, and the model repository extension (its index; load and
//! unload are refused: a predictor's models are fixed).

use std::sync::Arc;

use serde::Serialize;

use super::triton_words;
use crate::model::Model;
use crate::serving::error::ServeError;
use crate::serving::Registry;
use crate::text::clip;

/// The model `name`, in `version` when one is given: a bundle has exactly one version, named as
/// the bundle writes it (`1.0.0`) or as the statistics report it to Triton's tools (`1`).
pub fn find_model(
    registry: &Registry,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Model>, ServeError> {
    let model = registry.find(name).ok_or_else(|| {
        ServeError::not_found(format!(
            "{}; this server has {}",
            triton_words::unknown_model(name),
            registry.names()
        ))
    })?;
    let served = &model.bundle().config.version;
    let numbered = triton_version(served);
    match version {
        Some(asked) if !asked.is_empty() && asked != served && asked != numbered => {
            Err(ServeError::not_found(format!(
                "{}; this server has version '{served}' (or '{numbered}', as Triton numbers it)",
                triton_words::unknown_version(name, asked)
            )))
        }
        _ => Ok(model.clone()),
    }
}

#[derive(Serialize)]
pub struct RepositoryEntry<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub state: &'static str,
    pub reason: &'static str,
}

/// The repository's index: the served models, READY (or UNAVAILABLE once one has stopped or
/// shutdown has begun); with `ready_only`, only the ready ones.
pub fn repository_index(registry: &Registry, ready_only: bool) -> Vec<RepositoryEntry<'_>> {
    registry
        .models()
        .iter()
        .map(|model| (model, registry.is_model_ready(model)))
        .filter(|(_, ready)| *ready || !ready_only)
        .map(|(model, ready)| RepositoryEntry {
            name: model.name(),
            version: &model.bundle().config.version,
            state: if ready { "READY" } else { "UNAVAILABLE" },
            reason: "",
        })
        .collect()
}

/// Why a model cannot be loaded or unloaded: a predictor's models are fixed at its start.
pub fn refuse_load(action: &str, name: &str) -> ServeError {
    ServeError::invalid(format!(
        "cannot {action} model '{}': a predictor serves the bundles it was started with, fixed by its image or unit; deploy another to change them",
        clip(name)
    ))
}

/// A bundle version as Triton's tools read a version: Triton numbers them, and perf_analyzer
/// matches the statistics' version against the leading number it parses (`stoll`) of the
/// version it asked for, so `1.0.0` is reported as `1`. A version without a leading number is
/// reported whole.
pub fn triton_version(version: &str) -> &str {
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        version
    } else {
        &version[..digits]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v2::testing::echo;

    #[test]
    fn versions_are_reported_by_their_leading_number_as_triton_numbers_them() {
        assert_eq!(triton_version("1.0.0"), "1");
        assert_eq!(triton_version("12"), "12");
        assert_eq!(triton_version("v2"), "v2");
        assert_eq!(triton_version(""), "");
    }

    #[test]
    fn a_model_is_found_in_its_own_version_or_as_triton_numbers_it() {
        let registry = echo(None);
        for version in [None, Some(""), Some("2.1.0"), Some("2")] {
            assert_eq!(
                find_model(&registry, "echo", version).unwrap().name(),
                "echo"
            );
        }
        let Err(error) = find_model(&registry, "echo", Some("3")) else {
            panic!("version 3 was found")
        };
        assert_eq!(
            error.public_message(),
            "Request for unknown model: 'echo' version 3 is not found; this server has version '2.1.0' (or '2', as Triton numbers it)"
        );
        let Err(error) = find_model(&registry, "iris", None) else {
            panic!("iris was found")
        };
        assert_eq!(
            error.public_message(),
            "Request for unknown model: 'iris' is not found; this server has 'echo'"
        );
    }

    #[test]
    fn the_index_lists_ready_models_and_loading_is_refused() {
        let registry = echo(None);
        let index = repository_index(&registry, true);
        assert_eq!(index.len(), 1);
        assert_eq!((index[0].name, index[0].state), ("echo", "READY"));
        registry.begin_shutdown();
        assert!(repository_index(&registry, true).is_empty());
        assert_eq!(repository_index(&registry, false)[0].state, "UNAVAILABLE");
        let refusal = refuse_load("unload", "echo");
        assert_eq!(
            refusal.kind(),
            crate::serving::error::ErrorKind::InvalidInput
        );
        assert!(refusal
            .public_message()
            .starts_with("cannot unload model 'echo'"));
    }
}
