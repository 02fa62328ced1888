//! `GET /docs`: Swagger UI on this server's `/openapi.json`, served from the binary (no network),
//! where "Try it out" calls the server itself.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const BUNDLE: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui-bundle.js");
const STYLE: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui.css");

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>predictor: API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
  </script>
</body>
</html>
"##;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

pub async fn bundle() -> Response {
    asset("application/javascript", BUNDLE)
}

pub async fn style() -> Response {
    asset("text/css", STYLE)
}
