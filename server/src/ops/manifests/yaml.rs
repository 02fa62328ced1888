//! A YAML writer for JSON values, for the manifests: block mappings and sequences, and every
//! string that a YAML 1.1 or 1.2 reader could take for something else (`"1.0"`, `"on"`,
//! `"a:b"`) double-quoted. tests/manifests reads the output back with PyYAML and compares it with
//! the JSON it was written from.

use serde_json::{Number, Value};

/// A multi-document YAML stream: each value a document started by `---`.
pub fn documents(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        node(&mut out, value, 0);
    }
    out
}

/// Writes `value` as lines indented by `indent` spaces.
fn node(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                pad(out, indent);
                out.push_str(&string(key));
                out.push(':');
                if is_block(value) {
                    out.push('\n');
                    node(out, value, indent + 2);
                } else {
                    out.push(' ');
                    out.push_str(&inline(value));
                    out.push('\n');
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                // The item as if it stood 2 deeper, its first indent replaced by the dash.
                let mut text = String::new();
                node(&mut text, item, indent + 2);
                pad(out, indent);
                out.push_str("- ");
                out.push_str(&text[indent + 2..]);
            }
        }
        scalar => {
            pad(out, indent);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A scalar, or an empty mapping or sequence, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(value) => value.to_string(),
        Value::Number(number) => self::number(number),
        Value::String(text) => string(text),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Integers as JSON writes them; other numbers with a `.` in the mantissa and a signed exponent,
/// which YAML 1.1 readers (PyYAML) need to read a float rather than a string.
fn number(number: &Number) -> String {
    let text = number.to_string();
    if number.is_i64() || number.is_u64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text.as_str(), None),
    };
    let mut out = mantissa.to_string();
    if !out.contains('.') {
        out.push_str(".0");
    }
    if let Some(exponent) = exponent {
        out.push('e');
        if !exponent.starts_with(['+', '-']) {
            out.push('+');
        }
        out.push_str(exponent);
    }
    out
}

/// Plain when nothing else can be read into it, else double-quoted with YAML's escapes.
fn string(text: &str) -> String {
    if is_plain(text) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A letter or `/` first, then only letters, digits and `._/-`, and not one of the words YAML
/// 1.1 reads as a boolean or null: no number, date, flag or indicator can then be read into it.
fn is_plain(text: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !WORDS.contains(&text.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Keys come sorted (serde_json's map), which puts `apiVersion`, `kind`, `metadata`, `spec`
    /// in their usual order.
    #[test]
    fn writes_block_mappings_and_sequences() {
        let value = json!({
            "kind": "Deployment",
            "metadata": {"name": "predictor-iris-svc", "labels": {"app.kubernetes.io/version": "1.0.0"}},
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 8081}],
            "args": ["serve", "/bundle"],
            "nested": [[1, 2], []],
            "empty": {},
            "none": null,
            "yes": true,
        });
        assert_eq!(
            documents(&[value, json!("alone")]),
            r#"---
args:
  - serve
  - /bundle
empty: {}
kind: Deployment
metadata:
  labels:
    app.kubernetes.io/version: "1.0.0"
  name: predictor-iris-svc
nested:
  - - 1
    - 2
  - []
none: null
ports:
  - containerPort: 8080
    name: http
  - containerPort: 8081
    name: grpc
"yes": true
---
alone
"#
        );
    }

    #[test]
    fn quotes_what_yaml_would_read_as_something_else() {
        for (text, written) in [
            ("iris-svc", "iris-svc"),
            ("/v2/health/live", "/v2/health/live"),
            ("kubernetes.io/h2c", "kubernetes.io/h2c"),
            ("1", "\"1\""),
            ("1.0", "\"1.0\""),
            ("0.0.0.0", "\"0.0.0.0\""),
            ("On", "\"On\""),
            ("NULL", "\"NULL\""),
            ("", "\"\""),
            ("image:1.0.0", "\"image:1.0.0\""),
            ("a b", "\"a b\""),
            ("#x", "\"#x\""),
            ("say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""),
            ("tab\tline\n", "\"tab\\tline\\n\""),
            ("\u{7}é€😀", "\"\\x07\\xe9\\u20ac\\U0001f600\""),
        ] {
            assert_eq!(string(text), written, "{text:?}");
        }
    }

    #[test]
    fn floats_keep_a_point_and_a_signed_exponent() {
        let float = |value: f64| number(&Number::from_f64(value).unwrap());
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(1e20), "1.0e+20");
        assert_eq!(float(2.5e-7), "2.5e-7");
        assert_eq!(number(&Number::from(-3)), "-3");
    }
}
