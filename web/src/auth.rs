//! Authentication of WebSocket upgrades: `Authorization: Bearer <token>` or `?token=<token>`.

use chorus_actors::session::Access;
use chorus_config::AuthConfig;

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, and anonymous access is off.
    #[error("a token is required (Authorization: Bearer <token> or ?token=<token>)")]
    Missing,
    /// A token that is not configured.
    #[error("unknown token")]
    Unknown,
}

/// Decides what a request may do from its `Authorization` header value and its query string.
pub fn authorize(
    auth: &AuthConfig,
    header: Option<&str>,
    query: Option<&str>,
) -> Result<Access, AuthError> {
    let from_header = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(percent_decode)
    });
    let token = match (from_header, from_query) {
        (Some(t), _) => t.to_owned(),
        (None, Some(t)) => t,
        (None, None) => {
            return if auth.allow_anonymous {
                Ok(Access::ReadWrite)
            } else {
                Err(AuthError::Missing)
            };
        }
    };
    if auth
        .tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        Ok(Access::ReadWrite)
    } else if auth
        .read_only_tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        Ok(Access::ReadOnly)
    } else if auth.allow_anonymous && auth.tokens.is_empty() && auth.read_only_tokens.is_empty() {
        // No tokens configured at all: a token is meaningless, treat as anonymous.
        Ok(Access::ReadWrite)
    } else {
        Err(AuthError::Unknown)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `%XX` escapes and `+` in a query value; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(anonymous: bool) -> AuthConfig {
        AuthConfig {
            allow_anonymous: anonymous,
            tokens: vec!["rw".into()],
            read_only_tokens: vec!["ro x".into()],
        }
    }

    #[test]
    fn tokens_from_header_or_query() {
        assert_eq!(
            authorize(&config(false), Some("Bearer rw"), None),
            Ok(Access::ReadWrite)
        );
        assert_eq!(
            authorize(&config(false), None, Some("a=1&token=rw")),
            Ok(Access::ReadWrite)
        );
        assert_eq!(
            authorize(&config(false), None, Some("token=ro%20x")),
            Ok(Access::ReadOnly)
        );
        assert_eq!(
            authorize(&config(false), None, Some("token=ro+x")),
            Ok(Access::ReadOnly)
        );
        assert_eq!(
            authorize(&config(false), None, None),
            Err(AuthError::Missing)
        );
        assert_eq!(authorize(&config(true), None, None), Ok(Access::ReadWrite));
        assert_eq!(
            authorize(&config(true), Some("Bearer nope"), None),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            authorize(&config(false), None, Some("token=%zz")),
            Err(AuthError::Unknown)
        );
    }
}
