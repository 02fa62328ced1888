//! The words Triton's errors begin with, where Triton's own examples and clients match on them
//! (`ex.message().startswith("Request for unknown model")`): this server's message for the same
//! mistake begins with Triton's words, then goes on in its own. One place for all of them, each
//! from Triton's source (triton-inference-server/core): the unknown model and version from
//! `src/model_repository_manager/model_repository_manager.cc`, the unknown input and output from
//! `src/model.cc`.

use crate::text::clip;

/// A model the server does not serve.
pub fn unknown_model(model: &str) -> String {
    format!("Request for unknown model: '{}' is not found", clip(model))
}

/// A version of a served model that the server does not have.
pub fn unknown_version(model: &str, version: &str) -> String {
    format!(
        "Request for unknown model: '{}' version {} is not found",
        clip(model),
        clip(version)
    )
}

/// An input the model does not have.
pub fn unknown_input(input: &str, model: &str) -> String {
    format!(
        "unexpected inference input '{}' for model '{}'",
        clip(input),
        clip(model)
    )
}

/// An output the model does not have.
pub fn unknown_output(output: &str, model: &str) -> String {
    format!(
        "unexpected inference output '{}' for model '{}'",
        clip(output),
        clip(model)
    )
}
