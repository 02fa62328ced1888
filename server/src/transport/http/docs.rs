//! `GET /docs`: Swagger UI on this server's `/openapi.json`, served from the binary (no network),
//! where "Try it out" calls the server itself.

use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};

/// An asset as it is and gzip-compressed at build time (build.rs): a request costs no
/// compression (the compression layer leaves an answer that has its encoding alone), and no
/// copy, so that asking for the 1.7 MB script takes no CPU from predictions.
struct Asset {
    content_type: &'static str,
    plain: &'static [u8],
    gzip: &'static [u8],
}

const BUNDLE: Asset = Asset {
    content_type: "application/javascript",
    plain: include_bytes!("../../../assets/swagger-ui/swagger-ui-bundle.js"),
    gzip: include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz")),
};
const STYLE: Asset = Asset {
    content_type: "text/css",
    plain: include_bytes!("../../../assets/swagger-ui/swagger-ui.css"),
    gzip: include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz")),
};

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

/// Whether `Accept-Encoding` takes gzip (by name or `*`, with a weight above 0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|parameter| {
                parameter
                    .trim()
                    .strip_prefix("q=")
                    .and_then(|weight| weight.trim().parse::<f32>().ok())
                    .is_some_and(|weight| weight <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let common = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "public, max-age=86400"),
        (header::VARY, "accept-encoding"),
    ];
    if accepts_gzip(headers) {
        (common, [(header::CONTENT_ENCODING, "gzip")], asset.gzip).into_response()
    } else {
        (common, asset.plain).into_response()
    }
}

pub async fn bundle(headers: HeaderMap) -> Response {
    serve(&BUNDLE, &headers)
}

pub async fn style(headers: HeaderMap) -> Response {
    serve(&STYLE, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn gzip_is_taken_by_name_or_star_unless_weighted_zero() {
        let accepts = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, *"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.0, br"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_compressed_assets_are_the_assets() {
        use std::io::Read;
        for asset in [BUNDLE, STYLE] {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(asset.gzip)
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, asset.plain);
            assert!(asset.gzip.len() * 2 < asset.plain.len());
        }
    }
}
