//! `predictor probe`: ask a running predictor whether it is healthy and, per bundle, whether it
//! answers the bundle's sample within its tolerance. Container health checks and the Nix smoke
//! checks run it, so it needs no shell, curl or jq: a minimal HTTP/1.1 client over `std::net`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bundle::sample::compare;
use crate::bundle::Bundle;
use crate::tensor::Tensor;

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

    /// One request with `Connection: close`; returns the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let path = format!("{}{path}", self.prefix);
        let url = format!("http://{}:{}{path}", self.host, self.port);
        let failed = |error: std::io::Error| format!("{method} {url}: {error}");
        let address = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(failed)?
            .next()
            .ok_or_else(|| format!("{method} {url}: the host has no address"))?;
        let mut stream = TcpStream::connect_timeout(&address, self.timeout).map_err(failed)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(failed)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(failed)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.port,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(failed)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).map_err(failed)?;
        parse_response(&response).map_err(|problem| format!("{method} {url}: {problem}"))
    }
}

/// Splits an HTTP/1.1 response into status and body (identity or chunked transfer coding).
fn parse_response(response: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP status line: {}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let (mut rest, mut decoded) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("a truncated chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size '{size}'"))?;
        if size == 0 {
            return Ok((status, decoded));
        }
        let chunk = after.get(..size).ok_or("a truncated chunk")?;
        decoded.push_str(chunk);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// `GET /health` must answer 200.
pub fn health(target: &Target) -> Result<(), String> {
    match target.request("GET", "/health", None)? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("GET /health answered {status}: {body}")),
    }
}

/// Posts the bundle's `[sample] input` to `/models/<name>/predict` and compares the prediction with
/// `[sample] output` within `[sample] tolerance`, with the comparison `predictor check` uses.
pub fn sample(target: &Target, bundle_path: &Path) -> Result<String, String> {
    let bundle = Bundle::read(bundle_path).map_err(|error| error.to_string())?;
    let name = bundle.name();
    let sample = &bundle.config.sample;
    let path = format!("/models/{name}/predict");
    let (status, body) = target.request("POST", &path, Some(&json!({ "data": sample.input })))?;
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

    #[test]
    fn reads_identity_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, "{}".into()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "abcde".into()));
        assert!(parse_response(b"garbage").is_err());
    }
}
