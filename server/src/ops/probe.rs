//! `predictor probe`: ask a running predictor whether it is healthy and, per bundle, whether it
//! answers the bundle's sample within its tolerance. Container health checks and the Nix smoke
//! checks run it, so it needs no shell, curl or jq.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bundle::sample::compare;
use crate::bundle::Bundle;
use crate::tensor::{Tensor, TensorData};

/// A server to probe: `http://HOST:PORT`, with an optional path prefix.
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    prefix: String,
    timeout: Duration,
}

impl Target {
    /// Parses `http://host[:port][/prefix]`; only plain HTTP, as probes run beside the server.
    pub fn parse(url: &str, timeout: Duration) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: expected an http:// URL"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        // `[v6]:port` or `host:port`; the port defaults to 80.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => v6
                .split_once(']')
                .map(|(host, port)| (host, port.strip_prefix(':')))
                .ok_or_else(|| format!("{url}: an unclosed '['"))?,
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| format!("{url}: '{port}' is not a port"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Target {
            host: host.into(),
            port,
            prefix: prefix.trim_end_matches('/').into(),
            timeout,
        })
    }

    /// GET `path`, or POST `body` to it as JSON; returns the status and the body, whatever
    /// the status (ureq, a small blocking client: chunked bodies, UTF-8, timeouts).
    fn request(&self, path: &str, body: Option<&Value>) -> Result<(u16, String), String> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let url = format!("http://{host}:{}{}{path}", self.port, self.prefix);
        let method = if body.is_some() { "POST" } else { "GET" };
        let failed = |error: ureq::Error| format!("{method} {url}: {error}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = match body {
            Some(body) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None => agent.get(&url).call(),
        }
        .map_err(failed)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(failed)?;
        Ok((status, text))
    }
}

/// `GET /health` must answer 200.
pub fn health(target: &Target) -> Result<(), String> {
    match target.request("/health", None)? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("GET /health answered {status}: {body}")),
    }
}

/// Posts the bundle's `[sample] input` to `/models/<name>/predict` (an image bundle's images in
/// base64) and compares the prediction with `[sample] output` within `[sample] tolerance`, with
/// the comparison `predictor check` uses.
pub fn sample(target: &Target, bundle_path: &Path) -> Result<String, String> {
    let bundle = Bundle::read(bundle_path).map_err(|error| error.to_string())?;
    let name = bundle.name();
    let sample = &bundle.config.sample;
    let path = format!("/models/{name}/predict");
    let data = match &bundle.config.image {
        None => sample.input.clone(),
        Some(_) => images_in_base64(&bundle)?,
    };
    let (status, body) = target.request(&path, Some(&json!({ "data": data })))?;
    if status != 200 {
        return Err(format!("{name}: POST {path} answered {status}: {body}"));
    }
    let answer: Value = serde_json::from_str(&body)
        .map_err(|error| format!("{name}: POST {path} answered no JSON ({error}): {body}"))?;
    let spec = bundle.prediction_spec();
    let actual = answer
        .get("prediction")
        .ok_or_else(|| format!("{name}: POST {path} answered no 'prediction': {body}"))
        .and_then(|value| {
            Tensor::from_json(value, spec.dtype)
                .map_err(|error| format!("{name}: POST {path}: prediction: {error}"))
        })?;
    let expected = Tensor::from_json(&sample.output, spec.dtype)
        .map_err(|error| bundle.error(format!("sample.output: {error}")).to_string())?;
    compare(&expected, &actual, sample.tolerance, &spec.name)
        .map_err(|problem| format!("{name}: POST {path}: {problem}; the server answered {body}"))?;
    Ok(format!(
        "ok: {name} {}: the served sample matches (tolerance {})",
        bundle.config.version, sample.tolerance
    ))
}

/// An image bundle's sample images as the seed API's rows: each in base64.
fn images_in_base64(bundle: &Bundle) -> Result<Value, String> {
    use base64::Engine;
    let inputs = bundle
        .sample_inputs()
        .map_err(|problem| bundle.error(problem).to_string())?;
    let rows = match inputs.first().map(Tensor::data) {
        Some(TensorData::Bytes(images)) => images
            .iter()
            .map(|image| Value::from(base64::engine::general_purpose::STANDARD.encode(image)))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Value::Array(rows))
}

/// `predictor probe`: health first, then the sample of each bundle; every line goes to stdout.
pub fn run(url: &str, timeout: Duration, bundles: &[std::path::PathBuf]) -> Result<(), String> {
    let target = Target::parse(url, timeout)?;
    health(&target)?;
    println!("ok: {url} is healthy");
    let mut problems = Vec::new();
    for bundle in bundles {
        match sample(&target, bundle) {
            Ok(line) => println!("{line}"),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_port_and_prefix() {
        let t = Target::parse("http://127.0.0.1:8080/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let t = Target::parse("http://[::1]:9/base", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("::1", 9, "/base")
        );
        let t = Target::parse("http://localhost", Duration::from_secs(1)).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
        assert!(Target::parse("https://x", Duration::from_secs(1)).is_err());
        assert!(Target::parse("http://x:port", Duration::from_secs(1)).is_err());
    }
}
