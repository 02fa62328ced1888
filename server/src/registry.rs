//! The models one process serves and whether it is ready for them; shared by the HTTP and gRPC
//! listeners.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::model::Model;

pub struct Registry {
    models: Vec<Arc<Model>>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// Every model is loaded and has passed its sample by now, so the registry starts ready.
    pub fn new(models: Vec<Model>, metrics: Arc<Metrics>) -> Self {
        Registry {
            models: models.into_iter().map(Arc::new).collect(),
            ready: AtomicBool::new(true),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The models in the order given on the command line.
    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.iter().find(|m| m.name() == name)
    }

    /// The message for a model this server does not have, listing those it has.
    pub fn unknown_model(&self, name: &str) -> String {
        format!(
            "unknown model '{}'; this server has {}",
            crate::oip::clip(name),
            self.names()
        )
    }

    pub fn names(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("'{}'", m.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// False from the moment shutdown begins (the listeners stop accepting then, and the requests
    /// in flight finish).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.metrics
            .shutting_down(self.models.iter().map(|m| m.name().to_string()));
    }

    /// The model label of a request for `name`: the name when this server has such a model, else
    /// empty, so that a caller cannot create series by inventing names.
    pub fn model_label(&self, name: &str) -> String {
        self.find(name)
            .map(|m| m.name().to_string())
            .unwrap_or_default()
    }
}
