//! Range and consistency checks of a merged `Config`, each error naming setting, value and allowed.

use std::fmt::Display;

use crate::{Config, ConfigError};

/// Longest `node_name`, in characters.
const MAX_NODE_NAME: usize = 64;
/// Smallest `limits.max_frame_bytes`: 1 KiB.
const MIN_FRAME_BYTES: usize = 1024;
/// Largest `limits.max_frame_bytes`: 64 MiB.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Largest `limits.max_document_chars`.
const MAX_DOCUMENT_CHARS: usize = 100_000_000;
/// Largest duration setting, in ms (365 days), so that `Instant + Duration` can never overflow.
const MAX_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Longest bearer token, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// Checks every setting of `c`, returning the first problem found.
pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    if c.data_dir.as_os_str().is_empty() {
        return Err(invalid("data_dir", "\"\"", "a non-empty directory path"));
    }
    let name_ok = (1..=MAX_NODE_NAME).contains(&c.node_name.chars().count())
        && c.node_name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if !name_ok {
        return Err(invalid(
            "node_name",
            format!("{:?}", c.node_name),
            "1-64 characters from A-Z a-z 0-9 . _ -",
        ));
    }
    if c.log.trim().is_empty() || c.log.chars().any(char::is_control) {
        return Err(invalid(
            "log",
            format!("{:?}", c.log),
            "a non-empty tracing EnvFilter such as \"info\" or \"warn,chorus_actors=debug\"",
        ));
    }
    at_most("shutdown_grace_ms", c.shutdown_grace_ms, 0)?;

    validate_auth(c)?;

    let l = &c.limits;
    within(
        "limits.max_frame_bytes",
        l.max_frame_bytes,
        MIN_FRAME_BYTES,
        MAX_FRAME_BYTES,
        "1024 ..= 67108864 (1 KiB ..= 64 MiB)",
    )?;
    within(
        "limits.max_document_chars",
        l.max_document_chars,
        1,
        MAX_DOCUMENT_CHARS,
        "1 ..= 100000000",
    )?;
    if !(l.op_rate_per_s.is_finite() && l.op_rate_per_s > 0.0) {
        return Err(invalid(
            "limits.op_rate_per_s",
            l.op_rate_per_s,
            "a finite number > 0",
        ));
    }
    at_least_one("limits.op_burst", l.op_burst)?;
    at_least_one("limits.max_open_documents", l.max_open_documents)?;
    at_least_one("limits.max_connections", l.max_connections)?;

    let d = &c.document;
    at_least_one("document.history_ops", d.history_ops)?;
    at_most("document.idle_timeout_ms", d.idle_timeout_ms, 0)?;
    at_least_one("document.compact_every_ops", d.compact_every_ops)?;
    at_least_one("document.max_batch_ops", d.max_batch_ops)?;
    at_least_one("document.max_dedup_clients", d.max_dedup_clients)?;
    at_most("document.restart_window_ms", d.restart_window_ms, 1)?;

    let w = &c.websocket;
    at_most("websocket.ping_interval_ms", w.ping_interval_ms, 1)?;
    at_most("websocket.ping_timeout_ms", w.ping_timeout_ms, 0)?;
    if w.ping_timeout_ms <= w.ping_interval_ms {
        return Err(invalid(
            "websocket.ping_timeout_ms",
            w.ping_timeout_ms,
            format!(
                "a value greater than websocket.ping_interval_ms ({})",
                w.ping_interval_ms
            ),
        ));
    }
    at_least_one("websocket.outbound_queue_frames", w.outbound_queue_frames)?;
    Ok(())
}

/// Tokens: printable ASCII without spaces or commas, not shared between the two lists; and some way
/// to connect at all.
fn validate_auth(c: &Config) -> Result<(), ConfigError> {
    let a = &c.auth;
    for (setting, list) in [
        ("auth.tokens", &a.tokens),
        ("auth.read_only_tokens", &a.read_only_tokens),
    ] {
        for (i, token) in list.iter().enumerate() {
            let ok = (1..=MAX_TOKEN_BYTES).contains(&token.len())
                && token.bytes().all(|b| b.is_ascii_graphic() && b != b',');
            if !ok {
                return Err(invalid(
                    setting,
                    redacted(i, token),
                    "tokens of 1-4096 printable ASCII characters without spaces or commas",
                ));
            }
        }
    }
    if let Some((i, token)) = a
        .read_only_tokens
        .iter()
        .enumerate()
        .find(|(_, t)| a.tokens.contains(t))
    {
        return Err(invalid(
            "auth.read_only_tokens",
            redacted(i, token),
            "tokens that are not also in auth.tokens (a token is either read-write or read-only)",
        ));
    }
    if !a.allow_anonymous && a.tokens.is_empty() && a.read_only_tokens.is_empty() {
        return Err(invalid(
            "auth.allow_anonymous",
            false,
            "true, unless auth.tokens or auth.read_only_tokens is non-empty (else no client could connect)",
        ));
    }
    Ok(())
}

/// How a bad token is shown: its position and length, never its value.
fn redacted(index: usize, token: &str) -> String {
    format!("<token #{} of {} bytes, redacted>", index + 1, token.len())
}

/// `ConfigError::Invalid` for `setting`.
fn invalid(setting: &str, value: impl Display, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// `value` must lie in `min ..= max`, described to the user as `allowed`.
fn within<T: PartialOrd + Display>(
    setting: &str,
    value: T,
    min: T,
    max: T,
    allowed: &str,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(setting, value, allowed));
    }
    Ok(())
}

/// `value` must be at least 1.
fn at_least_one<T: PartialOrd + Display + From<u8>>(
    setting: &str,
    value: T,
) -> Result<(), ConfigError> {
    if value < T::from(1) {
        return Err(invalid(setting, value, "at least 1"));
    }
    Ok(())
}

/// A duration in ms must lie in `min ..= MAX_MS` (365 days).
fn at_most(setting: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    within(
        setting,
        value,
        min,
        MAX_MS,
        &format!("{min} ..= {MAX_MS} milliseconds (365 days)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Asserts that `c` fails validation naming `setting`, `value` (as displayed) and `allowed_part`.
    #[track_caller]
    fn rejects(c: Config, setting: &str, value: &str, allowed_part: &str) {
        let err = validate(&c).expect_err(setting);
        let ConfigError::Invalid {
            setting: s,
            value: v,
            allowed: a,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(s, setting);
        assert_eq!(v, value);
        assert!(a.contains(allowed_part), "{a}");
        let msg = err.to_string();
        assert!(
            msg.contains(setting) && msg.contains(value) && msg.contains(allowed_part),
            "{msg}"
        );
    }

    /// Default config with `f` applied.
    fn with(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c
    }

    #[test]
    fn defaults_are_valid() {
        validate(&Config::default()).unwrap();
    }

    #[test]
    fn boundaries_are_accepted() {
        for c in [
            with(|c| c.limits.max_frame_bytes = 1024),
            with(|c| c.limits.max_frame_bytes = 64 << 20),
            with(|c| c.limits.max_document_chars = 1),
            with(|c| c.limits.max_document_chars = 100_000_000),
            with(|c| c.limits.op_rate_per_s = 0.001),
            with(|c| c.node_name = "a".repeat(64)),
            with(|c| c.node_name = "node-1.eu_west".into()),
            with(|c| c.document.max_restarts = 0),
            with(|c| c.document.idle_timeout_ms = 0),
            with(|c| c.shutdown_grace_ms = 0),
            with(|c| c.shutdown_grace_ms = MAX_MS),
            with(|c| {
                c.websocket.ping_interval_ms = 1;
                c.websocket.ping_timeout_ms = 2;
            }),
            with(|c| {
                c.auth.allow_anonymous = false;
                c.auth.read_only_tokens = vec!["r0-token".into()];
            }),
            with(|c| c.listen = "[::]:0".parse().unwrap()),
        ] {
            validate(&c).unwrap();
        }
    }

    #[test]
    fn server_settings() {
        rejects(
            with(|c| c.data_dir = PathBuf::new()),
            "data_dir",
            "\"\"",
            "non-empty",
        );
        rejects(
            with(|c| c.node_name = String::new()),
            "node_name",
            "\"\"",
            "1-64 characters",
        );
        rejects(
            with(|c| c.node_name = "a".repeat(65)),
            "node_name",
            &format!("{:?}", "a".repeat(65)),
            "1-64 characters",
        );
        rejects(
            with(|c| c.node_name = "bad name".into()),
            "node_name",
            "\"bad name\"",
            "A-Z a-z 0-9 . _ -",
        );
        rejects(
            with(|c| c.node_name = "nöde".into()),
            "node_name",
            "\"nöde\"",
            "A-Z a-z 0-9 . _ -",
        );
        rejects(with(|c| c.log = " ".into()), "log", "\" \"", "EnvFilter");
        rejects(
            with(|c| c.shutdown_grace_ms = MAX_MS + 1),
            "shutdown_grace_ms",
            &(MAX_MS + 1).to_string(),
            "365 days",
        );
    }

    #[test]
    fn auth_settings() {
        rejects(
            with(|c| c.auth.tokens = vec!["ok-token".into(), String::new()]),
            "auth.tokens",
            "<token #2 of 0 bytes, redacted>",
            "printable ASCII",
        );
        rejects(
            with(|c| c.auth.read_only_tokens = vec!["has space".into()]),
            "auth.read_only_tokens",
            "<token #1 of 9 bytes, redacted>",
            "without spaces",
        );
        rejects(
            with(|c| c.auth.tokens = vec!["a,b".into()]),
            "auth.tokens",
            "<token #1 of 3 bytes, redacted>",
            "commas",
        );
        rejects(
            with(|c| {
                c.auth.tokens = vec!["shared".into()];
                c.auth.read_only_tokens = vec!["other".into(), "shared".into()];
            }),
            "auth.read_only_tokens",
            "<token #2 of 6 bytes, redacted>",
            "not also in auth.tokens",
        );
        rejects(
            with(|c| c.auth.allow_anonymous = false),
            "auth.allow_anonymous",
            "false",
            "auth.tokens",
        );
    }

    #[test]
    fn token_values_never_appear_in_errors() {
        let err = validate(&with(|c| c.auth.tokens = vec!["top secret".into()])).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret"), "{err}");
    }

    #[test]
    fn limits_settings() {
        rejects(
            with(|c| c.limits.max_frame_bytes = 1023),
            "limits.max_frame_bytes",
            "1023",
            "1 KiB ..= 64 MiB",
        );
        rejects(
            with(|c| c.limits.max_frame_bytes = (64 << 20) + 1),
            "limits.max_frame_bytes",
            "67108865",
            "1024 ..= 67108864",
        );
        rejects(
            with(|c| c.limits.max_document_chars = 0),
            "limits.max_document_chars",
            "0",
            "1 ..= 100000000",
        );
        rejects(
            with(|c| c.limits.max_document_chars = 100_000_001),
            "limits.max_document_chars",
            "100000001",
            "1 ..= 100000000",
        );
        for (rate, shown) in [
            (0.0, "0"),
            (-1.5, "-1.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
        ] {
            rejects(
                with(|c| c.limits.op_rate_per_s = rate),
                "limits.op_rate_per_s",
                shown,
                "> 0",
            );
        }
        rejects(
            with(|c| c.limits.op_burst = 0),
            "limits.op_burst",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.limits.max_open_documents = 0),
            "limits.max_open_documents",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.limits.max_connections = 0),
            "limits.max_connections",
            "0",
            "at least 1",
        );
    }

    #[test]
    fn document_settings() {
        rejects(
            with(|c| c.document.history_ops = 0),
            "document.history_ops",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.document.idle_timeout_ms = u64::MAX),
            "document.idle_timeout_ms",
            &u64::MAX.to_string(),
            "365 days",
        );
        rejects(
            with(|c| c.document.compact_every_ops = 0),
            "document.compact_every_ops",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.document.max_batch_ops = 0),
            "document.max_batch_ops",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.document.max_dedup_clients = 0),
            "document.max_dedup_clients",
            "0",
            "at least 1",
        );
        rejects(
            with(|c| c.document.restart_window_ms = 0),
            "document.restart_window_ms",
            "0",
            "1 ..= ",
        );
    }

    #[test]
    fn websocket_settings() {
        rejects(
            with(|c| c.websocket.ping_interval_ms = 0),
            "websocket.ping_interval_ms",
            "0",
            "1 ..= ",
        );
        rejects(
            with(|c| c.websocket.ping_timeout_ms = 15_000),
            "websocket.ping_timeout_ms",
            "15000",
            "greater than websocket.ping_interval_ms (15000)",
        );
        rejects(
            with(|c| c.websocket.ping_timeout_ms = MAX_MS + 1),
            "websocket.ping_timeout_ms",
            &(MAX_MS + 1).to_string(),
            "365 days",
        );
        rejects(
            with(|c| c.websocket.outbound_queue_frames = 0),
            "websocket.outbound_queue_frames",
            "0",
            "at least 1",
        );
    }

    #[test]
    fn message_says_where_to_change_it() {
        let err = validate(&with(|c| c.limits.op_burst = 0)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--op-burst") && msg.contains("CHORUS_OP_BURST"),
            "{msg}"
        );
    }
}
