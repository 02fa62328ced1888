//! One port for every protocol (`serve --single-port`), for platforms that give a container one
//! port (Knative, so KServe's Serverless mode): each request goes to the service that would have
//! answered it on separate ports, told apart by protocol. gRPC is HTTP/2 with a content type
//! `application/grpc` (`+proto`, `+json`, ...); `GET /metrics` is the metrics listener's one route;
//! everything else (HTTP/1.1 and h2c) is the HTTP API. The services are the very ones of separate
//! ports, gates and observation included, and the connection is the listener's own, with its
//! timeouts and caps, so a limit holds the same on one port as on three.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{header, Version};
use axum::response::Response;
use tower::ServiceExt;

use crate::defaults::METRICS_PATH;
use crate::transport::Service;

/// The three services of separate ports behind one listener.
#[derive(Clone)]
pub struct ByProtocol<H, G, M> {
    pub http: H,
    pub grpc: G,
    pub metrics: M,
}

/// Whether a request is a gRPC call: HTTP/2, and the content type every gRPC client sends.
pub fn is_grpc(request: &Request) -> bool {
    request.version() == Version::HTTP_2
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"))
}

impl<H, G, M> tower::Service<Request> for ByProtocol<H, G, M>
where
    H: Service + Clone,
    G: Service + Clone,
    M: Service + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call is served by a clone of a router, which is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if is_grpc(&request) {
            Box::pin(self.grpc.clone().oneshot(request))
        } else if request.uri().path() == METRICS_PATH {
            Box::pin(self.metrics.clone().oneshot(request))
        } else {
            Box::pin(self.http.clone().oneshot(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::any;
    use axum::Router;

    fn named(name: &'static str) -> Router {
        Router::new().fallback(any(move || async move { name }))
    }

    async fn served_by(request: Request) -> String {
        let service = ByProtocol {
            http: named("http"),
            grpc: named("grpc"),
            metrics: named("metrics"),
        };
        let answer = service.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(answer.into_body(), 64).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn request(version: Version, path: &str, content_type: Option<&str>) -> Request {
        let mut request = Request::post(path).version(version);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn grpc_is_http2_with_a_grpc_content_type_and_the_rest_is_http() {
        let infer = "/inference.GRPCInferenceService/ModelInfer";
        for content_type in ["application/grpc", "application/grpc+proto"] {
            let call = request(Version::HTTP_2, infer, Some(content_type));
            assert_eq!(served_by(call).await, "grpc", "{content_type}");
        }
        // h2c REST, and HTTP/1.1 whatever it claims, are the HTTP API's.
        let rest = request(
            Version::HTTP_2,
            "/v2/models/m/infer",
            Some("application/json"),
        );
        assert_eq!(served_by(rest).await, "http");
        let http1 = request(Version::HTTP_11, infer, Some("application/grpc"));
        assert_eq!(served_by(http1).await, "http");
        let bare = request(Version::HTTP_2, "/v2/health/ready", None);
        assert_eq!(served_by(bare).await, "http");
        let scrape = request(Version::HTTP_11, METRICS_PATH, None);
        assert_eq!(served_by(scrape).await, "metrics");
        let h2_scrape = request(Version::HTTP_2, METRICS_PATH, None);
        assert_eq!(served_by(h2_scrape).await, "metrics");
    }
}
