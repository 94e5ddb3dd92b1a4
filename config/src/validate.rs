//! Range and consistency checks of a merged `Config`, each error naming setting, value and allowed.

use std::fmt::Display;
use std::net::{Ipv6Addr, SocketAddr};

use crate::{redact_url, Config, ConfigError};

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
/// Longest `cluster.redis_master_name`, in characters.
const MAX_MASTER_NAME: usize = 128;
/// Longest `cluster.redis_key_prefix`, in characters.
const MAX_KEY_PREFIX: usize = 64;
/// Shortest `cluster.cluster_cookie` of a cluster member, in characters.
const MIN_COOKIE_CHARS: usize = 8;
/// Shortest `cluster.lease_ms`.
const MIN_LEASE_MS: u64 = 500;
/// Longest `cluster.lease_ms`: 1 minute.
const MAX_LEASE_MS: u64 = 60_000;

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
    within(
        "worker_threads",
        c.worker_threads,
        0,
        1024,
        "0 (one per CPU core) ..= 1024 threads",
    )?;

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

    validate_cluster(c)
}

/// Cluster settings: formats and ranges always; the cookie, addresses and sentinels against
/// `cluster.redis`.
fn validate_cluster(c: &Config) -> Result<(), ConfigError> {
    let k = &c.cluster;
    if let Some(url) = &k.redis {
        if !url_ok(url, &["redis", "rediss"]) {
            return Err(invalid(
                "cluster.redis",
                format!("{:?}", redact_url(url)),
                "a redis:// or rediss:// URL with a host, such as redis://127.0.0.1:6379/0",
            ));
        }
    }
    for sentinel in &k.redis_sentinels {
        if !host_port_ok(sentinel) {
            return Err(invalid(
                "cluster.redis_sentinels",
                format!("{sentinel:?}"),
                "HOST:PORT entries (port 1-65535, [..] around an IPv6 address), such as 10.0.0.1:26379",
            ));
        }
    }
    if !k.redis_sentinels.is_empty() && k.redis.is_none() {
        return Err(invalid(
            "cluster.redis_sentinels",
            format!("{:?}", k.redis_sentinels),
            "an empty list unless cluster.redis is set (sentinels only locate the Redis primary of a cluster)",
        ));
    }
    let name_ok = (1..=MAX_MASTER_NAME).contains(&k.redis_master_name.len())
        && k.redis_master_name.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok {
        return Err(invalid(
            "cluster.redis_master_name",
            format!("{:?}", k.redis_master_name),
            "1-128 printable ASCII characters without spaces",
        ));
    }
    let prefix_ok = (1..=MAX_KEY_PREFIX).contains(&k.redis_key_prefix.chars().count())
        && !k
            .redis_key_prefix
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || matches!(ch, '{' | '}'));
    if !prefix_ok {
        return Err(invalid(
            "cluster.redis_key_prefix",
            format!("{:?}", k.redis_key_prefix),
            "1-64 characters without whitespace, control characters or braces",
        ));
    }
    // WAIT with a timeout of 0 would block forever.
    at_most("cluster.redis_wait_timeout_ms", k.redis_wait_timeout_ms, 1)?;
    at_most("cluster.redis_timeout_ms", k.redis_timeout_ms, 1)?;
    if k.redis_wait_replicas > 0 && k.redis_wait_timeout_ms >= k.redis_timeout_ms {
        return Err(invalid(
            "cluster.redis_wait_timeout_ms",
            k.redis_wait_timeout_ms,
            format!(
                "a value less than cluster.redis_timeout_ms ({}) when cluster.redis_wait_replicas > 0, \
                 so that WAIT returns before the command times out",
                k.redis_timeout_ms
            ),
        ));
    }
    if let Some(advertise) = &k.cluster_advertise {
        if !host_port_ok(advertise) {
            return Err(invalid(
                "cluster.cluster_advertise",
                format!("{advertise:?}"),
                "HOST:PORT (port 1-65535, [..] around an IPv6 address), such as 10.0.0.5:8090",
            ));
        }
    }
    if let Some(url) = &k.public_url {
        if !url_ok(url, &["ws", "wss"]) {
            return Err(invalid(
                "cluster.public_url",
                format!("{:?}", redact_url(url)),
                "a ws:// or wss:// URL with a host, such as ws://chorus-1.example.com:8080/ws",
            ));
        }
    }
    within(
        "cluster.lease_ms",
        k.lease_ms,
        MIN_LEASE_MS,
        MAX_LEASE_MS,
        "500 ..= 60000 milliseconds",
    )?;
    if k.renew_interval_ms < 1 || k.renew_interval_ms > k.lease_ms / 2 {
        return Err(invalid(
            "cluster.renew_interval_ms",
            k.renew_interval_ms,
            format!(
                "1 ..= cluster.lease_ms / 2 ({}) milliseconds, so that a lease survives one missed renewal",
                k.lease_ms / 2
            ),
        ));
    }
    at_most("cluster.heartbeat_interval_ms", k.heartbeat_interval_ms, 1)?;
    at_most("cluster.heartbeat_timeout_ms", k.heartbeat_timeout_ms, 0)?;
    if k.heartbeat_timeout_ms <= k.heartbeat_interval_ms {
        return Err(invalid(
            "cluster.heartbeat_timeout_ms",
            k.heartbeat_timeout_ms,
            format!(
                "a value greater than cluster.heartbeat_interval_ms ({})",
                k.heartbeat_interval_ms
            ),
        ));
    }
    at_most("cluster.drain_timeout_ms", k.drain_timeout_ms, 0)?;

    if c.is_cluster() {
        validate_cluster_member(c)?;
    }
    Ok(())
}

/// What a cluster member needs beyond a single node: a cookie, a cluster listener apart from the
/// client one, and addresses that other nodes and clients can actually use.
fn validate_cluster_member(c: &Config) -> Result<(), ConfigError> {
    let k = &c.cluster;
    let cookie_chars = k.cluster_cookie.chars().count();
    if cookie_chars < MIN_COOKIE_CHARS {
        return Err(invalid(
            "cluster.cluster_cookie",
            format!("<{cookie_chars} characters, redacted>"),
            "a shared secret of at least 8 characters when cluster.redis is set",
        ));
    }
    if clashes(k.cluster_listen, c.listen) {
        return Err(invalid(
            "cluster.cluster_listen",
            k.cluster_listen,
            format!("an address whose port differs from listen ({})", c.listen),
        ));
    }
    if k.cluster_listen.ip().is_unspecified() && k.cluster_advertise.is_none() {
        return Err(invalid(
            "cluster.cluster_advertise",
            "(unset)",
            format!(
                "a HOST:PORT other nodes can reach, required when cluster.cluster_listen ({}) is \
                 an unspecified address",
                k.cluster_listen
            ),
        ));
    }
    if c.listen.ip().is_unspecified() && k.public_url.is_none() {
        return Err(invalid(
            "cluster.public_url",
            "(unset)",
            format!(
                "a ws:// or wss:// URL clients can reach, required when listen ({}) is an \
                 unspecified address",
                c.listen
            ),
        ));
    }
    Ok(())
}

/// Whether two listeners would compete for one port (port 0 picks a free port, so never).
fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `SCHEME://[userinfo@]host[:port][/path...]` with one of `schemes` (any case), a non-empty host
/// and no whitespace or control characters.
fn url_ok(url: &str, schemes: &[&str]) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s))
        && !host_port.is_empty()
        && !host_port.starts_with(':')
        && !url.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}

/// `HOST:PORT`: a host name or IPv4 address, or an IPv6 address in brackets; port 1-65535.
fn host_port_ok(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
        }
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    host_ok && port_ok
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
            with(|c| c.worker_threads = 0),
            with(|c| c.worker_threads = 1024),
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
            with(|c| c.worker_threads = 1025),
            "worker_threads",
            "1025",
            "one per CPU core",
        );
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

    /// A valid cluster member: default config with Redis and a cookie.
    fn member(f: impl FnOnce(&mut Config)) -> Config {
        with(|c| {
            c.cluster.redis = Some("redis://127.0.0.1:6379/0".into());
            c.cluster.cluster_cookie = "cookie-of-the-cluster".into();
            f(c);
        })
    }

    #[test]
    fn cluster_boundaries_are_accepted() {
        for c in [
            member(|_| {}),
            member(|c| c.cluster.redis = Some("rediss://:pw@redis.internal:6380".into())),
            member(|c| c.cluster.redis = Some("REDIS://[::1]:6379/3".into())),
            member(|c| {
                c.cluster.redis_sentinels = vec!["s1:26379".into(), "[fe80::1]:1".into()];
                c.cluster.redis_master_name = "a".repeat(128);
            }),
            member(|c| c.cluster.redis_key_prefix = "é".repeat(64)),
            member(|c| c.cluster.cluster_cookie = "12345678".into()),
            member(|c| {
                c.cluster.redis_wait_replicas = 2;
                c.cluster.redis_wait_timeout_ms = 999;
            }),
            member(|c| {
                c.cluster.redis_wait_timeout_ms = 5_000;
            }),
            member(|c| c.cluster.cluster_listen = "127.0.0.1:0".parse().unwrap()),
            member(|c| {
                c.listen = "127.0.0.1:0".parse().unwrap();
                c.cluster.cluster_listen = "127.0.0.1:0".parse().unwrap();
            }),
            member(|c| c.cluster.cluster_listen = "127.0.0.2:8080".parse().unwrap()),
            member(|c| {
                c.listen = "0.0.0.0:8080".parse().unwrap();
                c.cluster.cluster_listen = "[::]:8090".parse().unwrap();
                c.cluster.cluster_advertise = Some("node-1.internal:8090".into());
                c.cluster.public_url = Some("wss://node-1.example.com/ws".into());
            }),
            member(|c| {
                c.cluster.lease_ms = 500;
                c.cluster.renew_interval_ms = 250;
            }),
            member(|c| {
                c.cluster.lease_ms = 60_000;
                c.cluster.renew_interval_ms = 1;
            }),
            member(|c| {
                c.cluster.heartbeat_interval_ms = 1;
                c.cluster.heartbeat_timeout_ms = 2;
            }),
            member(|c| c.cluster.drain_timeout_ms = 0),
            // Not a member: the cookie and member-only rules do not apply.
            with(|c| c.cluster.cluster_cookie = "short".into()),
            with(|c| c.cluster.cluster_listen = c.listen),
            with(|c| c.listen = "0.0.0.0:8080".parse().unwrap()),
        ] {
            validate(&c).unwrap();
        }
    }

    #[test]
    fn cluster_redis_settings() {
        for url in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://",
            "redis:///0",
            "redis://:6379/0",
            "redis://host name:6379",
            "unix:///tmp/redis.sock",
        ] {
            rejects(
                with(|c| c.cluster.redis = Some(url.into())),
                "cluster.redis",
                &format!("{url:?}"),
                "redis:// or rediss://",
            );
        }
        rejects(
            with(|c| c.cluster.redis = Some("http://u:s3cret@h:1".into())),
            "cluster.redis",
            "\"http://<redacted>@h:1\"",
            "redis:// or rediss://",
        );
        for sentinel in [
            "s1",
            "s1:",
            ":26379",
            "s1:0",
            "s1:65536",
            "s1:+1",
            "::1:26379",
            "[x]:1",
            "a b:1",
        ] {
            rejects(
                member(|c| c.cluster.redis_sentinels = vec!["ok:1".into(), sentinel.into()]),
                "cluster.redis_sentinels",
                &format!("{sentinel:?}"),
                "HOST:PORT",
            );
        }
        rejects(
            with(|c| c.cluster.redis_sentinels = vec!["s1:26379".into()]),
            "cluster.redis_sentinels",
            "[\"s1:26379\"]",
            "unless cluster.redis is set",
        );
        for name in [String::new(), "my master".into(), "a".repeat(129)] {
            rejects(
                member(|c| c.cluster.redis_master_name = name.clone()),
                "cluster.redis_master_name",
                &format!("{name:?}"),
                "1-128 printable ASCII",
            );
        }
        for prefix in [
            String::new(),
            "a".repeat(65),
            "chorus ".into(),
            "{chorus}:".into(),
            "a\tb".into(),
        ] {
            rejects(
                member(|c| c.cluster.redis_key_prefix = prefix.clone()),
                "cluster.redis_key_prefix",
                &format!("{prefix:?}"),
                "1-64 characters without whitespace",
            );
        }
        rejects(
            with(|c| c.cluster.redis_wait_timeout_ms = 0),
            "cluster.redis_wait_timeout_ms",
            "0",
            "1 ..= ",
        );
        rejects(
            with(|c| c.cluster.redis_timeout_ms = 0),
            "cluster.redis_timeout_ms",
            "0",
            "1 ..= ",
        );
        rejects(
            with(|c| c.cluster.redis_timeout_ms = MAX_MS + 1),
            "cluster.redis_timeout_ms",
            &(MAX_MS + 1).to_string(),
            "365 days",
        );
        rejects(
            with(|c| {
                c.cluster.redis_wait_replicas = 1;
                c.cluster.redis_wait_timeout_ms = 1_000;
            }),
            "cluster.redis_wait_timeout_ms",
            "1000",
            "less than cluster.redis_timeout_ms (1000) when cluster.redis_wait_replicas > 0",
        );
    }

    #[test]
    fn cluster_address_settings() {
        for advertise in ["node-1", "node-1:0", "http://node-1:8090", "node 1:8090"] {
            rejects(
                with(|c| c.cluster.cluster_advertise = Some(advertise.into())),
                "cluster.cluster_advertise",
                &format!("{advertise:?}"),
                "HOST:PORT",
            );
        }
        for url in ["", "http://h/ws", "ws://", "ws:///ws", "h:8080/ws"] {
            rejects(
                with(|c| c.cluster.public_url = Some(url.into())),
                "cluster.public_url",
                &format!("{url:?}"),
                "ws:// or wss://",
            );
        }
        for (listen, cluster_listen) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:9000", "[::]:9000"),
        ] {
            rejects(
                member(|c| {
                    c.listen = listen.parse().unwrap();
                    c.cluster.cluster_listen = cluster_listen.parse().unwrap();
                    c.cluster.cluster_advertise = Some("n1:9000".into());
                    c.cluster.public_url = Some("ws://n1:8080/ws".into());
                }),
                "cluster.cluster_listen",
                &cluster_listen.parse::<SocketAddr>().unwrap().to_string(),
                &format!("port differs from listen ({listen})"),
            );
        }
        rejects(
            member(|c| c.cluster.cluster_listen = "0.0.0.0:8090".parse().unwrap()),
            "cluster.cluster_advertise",
            "(unset)",
            "required when cluster.cluster_listen (0.0.0.0:8090) is an unspecified address",
        );
        rejects(
            member(|c| c.listen = "[::]:8080".parse().unwrap()),
            "cluster.public_url",
            "(unset)",
            "required when listen ([::]:8080) is an unspecified address",
        );
    }

    #[test]
    fn cluster_cookie_is_required_and_never_shown() {
        rejects(
            member(|c| c.cluster.cluster_cookie = String::new()),
            "cluster.cluster_cookie",
            "<0 characters, redacted>",
            "at least 8 characters when cluster.redis is set",
        );
        let c = member(|c| c.cluster.cluster_cookie = "s3cr3t!".into());
        rejects(
            c.clone(),
            "cluster.cluster_cookie",
            "<7 characters, redacted>",
            "at least 8",
        );
        let err = validate(&c).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err}");
    }

    #[test]
    fn cluster_timing_settings() {
        for lease in [499, 60_001] {
            rejects(
                with(|c| c.cluster.lease_ms = lease),
                "cluster.lease_ms",
                &lease.to_string(),
                "500 ..= 60000 milliseconds",
            );
        }
        rejects(
            with(|c| c.cluster.renew_interval_ms = 751),
            "cluster.renew_interval_ms",
            "751",
            "1 ..= cluster.lease_ms / 2 (750)",
        );
        rejects(
            with(|c| c.cluster.renew_interval_ms = 0),
            "cluster.renew_interval_ms",
            "0",
            "1 ..= cluster.lease_ms / 2",
        );
        rejects(
            with(|c| c.cluster.heartbeat_interval_ms = 0),
            "cluster.heartbeat_interval_ms",
            "0",
            "1 ..= ",
        );
        rejects(
            with(|c| c.cluster.heartbeat_timeout_ms = 200),
            "cluster.heartbeat_timeout_ms",
            "200",
            "greater than cluster.heartbeat_interval_ms (200)",
        );
        rejects(
            with(|c| c.cluster.heartbeat_timeout_ms = MAX_MS + 1),
            "cluster.heartbeat_timeout_ms",
            &(MAX_MS + 1).to_string(),
            "365 days",
        );
        rejects(
            with(|c| c.cluster.drain_timeout_ms = MAX_MS + 1),
            "cluster.drain_timeout_ms",
            &(MAX_MS + 1).to_string(),
            "365 days",
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
        let err = validate(&with(|c| c.cluster.lease_ms = 1)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--lease-ms") && msg.contains("CHORUS_LEASE_MS"),
            "{msg}"
        );
    }
}
