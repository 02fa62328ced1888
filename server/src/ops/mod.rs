//! The commands beside serving: [`init`] scaffolds a bundle, [`probe`] asks a running server,
//! [`manifests`] writes Kubernetes and KServe manifests. They depend on the bundle format and the
//! defaults, never on the serving layer.

pub mod init;
pub mod manifests;
pub mod probe;
