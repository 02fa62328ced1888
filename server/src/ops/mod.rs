//! The commands beside serving: [`init`] scaffolds a bundle, [`probe`] asks a running server,
//! [`manifests`] writes Kubernetes and KServe manifests; [`memory_bound`] is what the server's
//! flags let callers make it hold. They depend on the bundle format and the defaults, never on
//! the serving layer.

pub mod init;
pub mod manifests;
pub mod memory_bound;
pub mod probe;
