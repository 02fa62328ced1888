//! How error messages show what a caller sent: clipped, so that an answer never grows with the
//! request, and shapes and names written the same way everywhere.

use std::fmt;

/// A caller's string as an error message shows it: whole when short, else its start.
pub fn clip(text: &str) -> String {
    clip_to(text, 64)
}

/// A message that may quote the caller at any length (a JSON parser's, which quotes an unknown
/// key or a misplaced string whole), as an answer shows it: whole up to 512 characters, else its
/// start, so that an answer never grows with the request.
pub fn clip_message(text: &str) -> String {
    clip_to(text, 512)
}

fn clip_to(text: &str, shown: usize) -> String {
    match text.char_indices().nth(shown) {
        None => text.to_string(),
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
    }
}

pub fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Formats a shape as `[-1, 4]`.
pub struct ShapeText<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for ShapeText<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (index, dim) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{dim}")?;
        }
        f.write_str("]")
    }
}
