//! `grpc.health.v1.Health`, what Kubernetes gRPC probes and `grpc_health_probe` call.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::health_proto::health_check_response::ServingStatus;
use super::health_proto::{health_server, HealthCheckRequest, HealthCheckResponse};
use crate::serving::Registry;

/// `grpc.health.v1.Health`: the server ("") and each model, SERVING while it is ready and
/// NOT_SERVING from the moment it is not (shutdown begun, a model whose worker stopped).
#[derive(Clone)]
pub(super) struct Health {
    pub(super) registry: Arc<Registry>,
}

impl Health {
    /// The readiness of the server ("") or of one model, None for a name the server does not have.
    fn is_ready(&self, service: &str) -> Option<bool> {
        if service.is_empty() {
            return Some(self.registry.is_ready());
        }
        let model = self.registry.find(service)?;
        Some(self.registry.is_model_ready(model))
    }

    fn unknown_service(&self, service: &str) -> Status {
        Status::not_found(format!(
            "no service '{}'; this server has \"\" (the server) and its models {}",
            crate::text::clip(service),
            self.registry.names()
        ))
    }
}

/// SERVING or NOT_SERVING for a name the server has (its readiness), SERVICE_UNKNOWN otherwise.
fn health_message(ready: Option<bool>) -> HealthCheckResponse {
    let status = match ready {
        Some(true) => ServingStatus::Serving,
        Some(false) => ServingStatus::NotServing,
        None => ServingStatus::ServiceUnknown,
    };
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        let ready = self
            .is_ready(service)
            .ok_or_else(|| self.unknown_service(service))?;
        Ok(Response::new(health_message(Some(ready))))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>,
    >;

    /// The status now, then each change: looked at as soon as shutdown begins (NOT_SERVING, and
    /// the stream ends) and twice a second, for a model whose worker stopped has no event to wait
    /// on. A name the server does not have is SERVICE_UNKNOWN, the call kept open, as
    /// grpc.health.v1 says (Check answers it NOT_FOUND).
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let (statuses, stream) = tokio::sync::mpsc::channel(1);
        let health = self.clone();
        tokio::spawn(async move {
            let registry = &health.registry;
            let mut sent = None;
            loop {
                // Read first: once it is false, so is every readiness read after it.
                let serving = registry.is_serving();
                let ready = health.is_ready(&service);
                if sent != Some(ready) {
                    if statuses.send(Ok(health_message(ready))).await.is_err() {
                        return; // the watcher went away
                    }
                    sent = Some(ready);
                }
                // Nothing changes once shutdown has begun: the watch ends, and the drain need not
                // wait for it (the protocol's clients watch again, elsewhere).
                if !serving {
                    return;
                }
                tokio::select! {
                    () = statuses.closed() => return,
                    () = registry.shutdown_begun() => {}
                    () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(stream),
        )))
    }
}
