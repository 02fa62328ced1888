//! `GET /openapi.json`: the OpenAPI 3.0 description of the HTTP API (openapi.json beside this
//! file), with the model and version parameters narrowed to what this server serves, so that
//! clients and API testers (schemathesis in CI) call real models; with bearer tokens, every
//! operation but the open ones says so.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::gate::OPEN_ENDPOINTS;
use super::AppState;
use crate::protocol::v2::SERVER_VERSION;
use crate::serving::Registry;

const TEMPLATE: &str = include_str!("openapi.json");

/// The document for this server's models.
pub fn document(registry: &Registry) -> Value {
    let mut document: Value = serde_json::from_str(TEMPLATE).expect("openapi.json is JSON");
    document["info"]["version"] = json!(SERVER_VERSION);
    let models = registry.models();
    let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    let mut versions: Vec<&str> = models
        .iter()
        .map(|m| m.bundle().config.version.as_str())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let parameters = &mut document["components"]["parameters"];
    parameters["model"]["schema"]["enum"] = json!(names);
    parameters["version"]["schema"]["enum"] = json!(versions);
    if registry.tokens().is_some() {
        let paths = document["paths"].as_object_mut().expect("paths");
        for (path, operations) in paths.iter_mut() {
            if OPEN_ENDPOINTS.contains(&path.as_str()) {
                continue;
            }
            for operation in operations.as_object_mut().expect("operations").values_mut() {
                operation["security"] = json!([{"bearer": []}]);
            }
        }
    }
    document
}

pub fn routes(registry: &Registry) -> Router<AppState> {
    let body = document(registry).to_string();
    Router::new().route(
        "/openapi.json",
        get(|| async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document describes routes the router has: none falls through to "no route" or 405.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let registry = Registry::without_models();
        let app = super::super::router(
            registry,
            &super::super::HttpOptions {
                max_body_bytes: 1024,
            },
        );
        let document: Value = serde_json::from_str(TEMPLATE).unwrap();
        for (path, operations) in document["paths"].as_object().unwrap() {
            let uri = path.replace("{model}", "m").replace("{version}", "1");
            for method in operations.as_object().unwrap().keys() {
                let request = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                assert!(
                    status != 405 && !body.contains("no route for"),
                    "{method} {path}: {status} {body}"
                );
            }
        }
    }

    #[test]
    fn every_operation_has_an_id_and_an_answer_for_errors() {
        let document: Value = serde_json::from_str(TEMPLATE).unwrap();
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.len() >= 20, "{} paths", paths.len());
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().unwrap() {
                assert!(operation["operationId"].is_string(), "{method} {path}");
                assert!(
                    operation["responses"]["200"].is_object(),
                    "{method} {path} documents its success"
                );
            }
        }
    }
}
