//! Optional bearer-token authentication: the tokens come from a file (never a flag or an
//! environment variable, which `ps` and `/proc` show), and a presented token is compared with
//! each of them in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The `WWW-Authenticate` challenge of a 401 answer (RFC 6750).
pub const CHALLENGE: &str = "Bearer realm=\"predictor\"";

/// Shorter tokens are refused at start: they can be guessed.
const MIN_TOKEN_CHARS: usize = 16;

/// The accepted tokens, kept only as SHA-256 digests: comparing digests takes the same time
/// whatever the tokens' lengths and contents.
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

/// Shows how many tokens, never their digests.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Tokens({} accepted)", self.digests.len())
    }
}

impl Tokens {
    /// Reads one token per line; blank lines and lines starting with `#` are skipped, so that a
    /// file can hold a new token beside the old one while callers move over.
    pub fn read(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("auth token file {}: {error}", path.display()))?;
        let tokens = Tokens::parse(&text)
            .map_err(|problem| format!("auth token file {}: {problem}", path.display()))?;
        warn_if_readable_by_others(path);
        Ok(tokens)
    }

    fn parse(text: &str) -> Result<Tokens, String> {
        let mut digests = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(format!(
                    "line {}: a token is printable ASCII without spaces",
                    index + 1
                ));
            }
            if token.len() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "line {}: the token has {} characters; use at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)",
                    index + 1,
                    token.len()
                ));
            }
            digests.push(Sha256::digest(token.as_bytes()).into());
        }
        if digests.is_empty() {
            return Err("no token in the file".into());
        }
        Ok(Tokens { digests })
    }

    /// Whether an `Authorization` header value is `Bearer <one of the tokens>`.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = authorization.and_then(bearer_token) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(token).into();
        // Every digest is compared in full, so the time says nothing about which one matched.
        let found = self.digests.iter().fold(Choice::from(0), |found, digest| {
            found | digest.ct_eq(&presented)
        });
        found.into()
    }
}

/// The token of `Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the auth token file is readable by every user; chmod o-r it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn accepts_each_listed_token_and_nothing_else() {
        let tokens = Tokens::parse(&format!(
            "# rotated 2026-11\n\n{TOKEN}\n  second-token-abcdefgh  \n"
        ))
        .unwrap();
        assert!(tokens.accepts(Some(format!("Bearer {TOKEN}").as_bytes())));
        assert!(tokens.accepts(Some(b"bearer second-token-abcdefgh")));
        for refused in [
            None,
            Some(b"".as_slice()),
            Some(b"Bearer"),
            Some(b"Bearer "),
            Some(b"Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM="),
            Some(b"Bearer 0123456789abcdef012"),
            Some(b"Bearer 0123456789abcdef01234"),
            Some(b"Bearer # rotated 2026-11"),
            Some(TOKEN.as_bytes()),
        ] {
            assert!(!tokens.accepts(refused), "{refused:?}");
        }
    }

    #[test]
    fn refuses_files_without_a_usable_token() {
        assert!(Tokens::parse("").unwrap_err().contains("no token"));
        assert!(Tokens::parse("# only a comment\n")
            .unwrap_err()
            .contains("no token"));
        assert!(Tokens::parse("short\n")
            .unwrap_err()
            .contains("at least 16"));
        assert!(Tokens::parse("with a space in it, long enough\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
