//! `GET /openapi.json`: the OpenAPI 3.0 description of the HTTP API. Its paths are derived from the
//! route table ([`super::routes`]); its schemas, parameters and shared answers come from
//! openapi-components.json beside this file. The model and version parameters are narrowed to
//! what this server serves, so that clients and API testers (schemathesis in CI) call real
//! models; with bearer tokens, every operation but the open ones says so.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::AppState;
use crate::protocol::v2::SERVER_VERSION;
use crate::serving::Registry;
use crate::transport::routes::{self, Answer, Api, Route};

const COMPONENTS: &str = include_str!("openapi-components.json");

/// The document for this server's models.
pub fn document(registry: &Registry) -> Value {
    // A unit test parses the file: an empty document here would fail it first.
    let mut document: Value = serde_json::from_str(COMPONENTS).unwrap_or_else(|_| json!({}));
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
    let mut paths = Map::new();
    for route in routes::http().filter(|route| route.documented) {
        let mut operation = operation(route);
        if registry.tokens().is_some() && !route.open {
            operation["security"] = json!([{"bearer": []}]);
        }
        let methods = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        methods[route.verb.name()] = operation;
    }
    document["paths"] = Value::Object(paths);
    document
}

/// One route's operation object.
fn operation(route: &Route) -> Value {
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let error = match route.api {
        Api::OpenAi => json!({"$ref": "#/components/responses/OpenAiError"}),
        _ => json!({"$ref": "#/components/responses/Error"}),
    };
    let mut responses = match route.answers {
        Answer::Json(name) => json!({
            "200": {"description": "OK", "content": {"application/json": {"schema": schema(name)}}},
            "default": error,
        }),
        Answer::Yes(name) => json!({
            "200": {"description": "Yes", "content": {"application/json": {"schema": schema(name)}}},
        }),
        Answer::YesOrNo(name) => json!({
            "200": {"description": "Yes", "content": {"application/json": {"schema": schema(name)}}},
            "400": {"description": "No (shutting down, or a model has stopped)", "content": {"application/json": {"schema": schema(name)}}},
        }),
        Answer::Document => json!({
            "200": {
                "description": "OpenAPI 3.0 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        }),
    };
    if route.model_scoped && matches!(route.answers, Answer::YesOrNo(_)) {
        // An unknown model or version.
        responses["default"] = error;
    }
    if route.unready_503 {
        responses["503"] = json!({
            "description": "Shutting down, or a model has stopped",
            "content": {"application/json": {"schema": schema("Health")}},
        });
    }
    let mut operation = json!({
        "summary": route.summary,
        "operationId": route.operation_id,
        "tags": [route.api.tag()],
        "responses": responses,
    });
    let parameters: Vec<Value> = ["model", "version", "region"]
        .iter()
        .filter(|name| route.path.contains(&format!("{{{name}}}")))
        .map(|name| json!({"$ref": format!("#/components/parameters/{name}")}))
        .collect();
    if !parameters.is_empty() {
        operation["parameters"] = json!(parameters);
    }
    if let Some(name) = route.takes {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema(name)}},
        });
        // The seed's prediction routes take an image bundle's one image as the body itself:
        // Swagger UI's "Try it out" then offers a file to upload.
        if name == "PredictRequest" {
            operation["requestBody"]["content"]["image/*"] = json!({
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "For an image bundle: one JPEG, PNG or WebP image (one row)",
                },
            });
        }
    }
    operation
}

pub async fn serve(State(registry): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document(&registry).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented operation is routed (none falls through to "no route" or 405), and every
    /// route of the router is documented.
    #[tokio::test]
    async fn the_document_and_the_router_have_the_same_routes() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let registry = Registry::without_models();
        let app = super::super::router(
            registry.clone(),
            &super::super::HttpOptions {
                max_body_bytes: 1024,
                cors_origins: Vec::new(),
            },
        );
        let document = document(&registry);
        let mut documented = 0;
        for (path, operations) in document["paths"].as_object().unwrap() {
            let uri = path.replace("{model}", "m").replace("{version}", "1");
            for method in operations.as_object().unwrap().keys() {
                documented += 1;
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
        assert_eq!(documented, routes::http().filter(|r| r.documented).count());
        // The undocumented ones (the API page and its files) are routed too.
        for route in routes::http().filter(|r| !r.documented) {
            let request = Request::get(route.path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200, "{}", route.path);
        }
        assert!(documented >= 20, "{documented} operations");
    }

    #[test]
    fn the_components_parse_and_every_schema_a_route_names_exists() {
        let components: Value = serde_json::from_str(COMPONENTS).unwrap();
        let schemas = components["components"]["schemas"].as_object().unwrap();
        for route in routes::http() {
            for name in route.takes.into_iter().chain(match route.answers {
                Answer::Json(name) | Answer::Yes(name) | Answer::YesOrNo(name) => Some(name),
                Answer::Document => None,
            }) {
                assert!(
                    schemas.contains_key(name),
                    "{}: no schema {name}",
                    route.path
                );
            }
        }
        let ids: std::collections::HashSet<_> = routes::http().map(|r| r.operation_id).collect();
        assert_eq!(
            ids.len(),
            routes::http().count(),
            "operation ids are unique"
        );
    }
}
