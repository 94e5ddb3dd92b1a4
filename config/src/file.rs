//! Reads the TOML configuration file into a `Config` (missing keys keep their defaults).

use std::path::Path;

use crate::{Config, ConfigError};

/// Reads and parses `path`; an unknown key or a mistyped value is an error naming it.
pub(crate) fn read(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses `text` as the content of `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsyncPolicy;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("chorus.toml"), text)
    }

    #[test]
    fn full_file_sets_every_key() {
        let c = parse_str(
            r#"
            listen = "0.0.0.0:9000"
            data_dir = "/var/lib/chorus"
            node_name = "n2"
            log = "debug"
            shutdown_grace_ms = 1
            worker_threads = 3
            [auth]
            allow_anonymous = false
            tokens = ["a"]
            read_only_tokens = ["b"]
            [limits]
            max_frame_bytes = 2048
            max_document_chars = 3
            op_rate_per_s = 4
            op_burst = 5
            max_open_documents = 6
            max_connections = 7
            [document]
            history_ops = 8
            idle_timeout_ms = 9
            compact_every_ops = 10
            max_batch_ops = 11
            max_dedup_clients = 12
            max_restarts = 13
            restart_window_ms = 14
            [store]
            fsync = "never"
            [websocket]
            ping_interval_ms = 15
            ping_timeout_ms = 16
            outbound_queue_frames = 17
            [cluster]
            redis = "rediss://redis.internal:6380/1"
            redis_sentinels = ["s1:26379", "[::1]:26380"]
            redis_master_name = "primary"
            redis_key_prefix = "c:"
            redis_wait_replicas = 18
            redis_wait_timeout_ms = 19
            redis_timeout_ms = 20
            cluster_listen = "0.0.0.0:21"
            cluster_advertise = "n2.internal:21"
            cluster_cookie = "cookie-22"
            public_url = "wss://n2.example.com/ws"
            lease_ms = 23
            renew_interval_ms = 24
            heartbeat_interval_ms = 25
            heartbeat_timeout_ms = 26
            drain_timeout_ms = 27
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.data_dir, Path::new("/var/lib/chorus"));
        assert_eq!(c.node_name, "n2");
        assert_eq!(c.log, "debug");
        assert_eq!(c.shutdown_grace_ms, 1);
        assert_eq!(c.worker_threads, 3);
        assert!(!c.auth.allow_anonymous);
        assert_eq!(c.auth.tokens, ["a"]);
        assert_eq!(c.auth.read_only_tokens, ["b"]);
        assert_eq!(c.limits.max_frame_bytes, 2048);
        assert_eq!(c.limits.max_document_chars, 3);
        assert_eq!(
            c.limits.op_rate_per_s, 4.0,
            "an integer is accepted for a float"
        );
        assert_eq!(c.limits.op_burst, 5);
        assert_eq!(c.limits.max_open_documents, 6);
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.document.history_ops, 8);
        assert_eq!(c.document.idle_timeout_ms, 9);
        assert_eq!(c.document.compact_every_ops, 10);
        assert_eq!(c.document.max_batch_ops, 11);
        assert_eq!(c.document.max_dedup_clients, 12);
        assert_eq!(c.document.max_restarts, 13);
        assert_eq!(c.document.restart_window_ms, 14);
        assert_eq!(c.store.fsync, FsyncPolicy::Never);
        assert_eq!(c.websocket.ping_interval_ms, 15);
        assert_eq!(c.websocket.ping_timeout_ms, 16);
        assert_eq!(c.websocket.outbound_queue_frames, 17);
        let k = &c.cluster;
        assert_eq!(k.redis.as_deref(), Some("rediss://redis.internal:6380/1"));
        assert_eq!(k.redis_sentinels, ["s1:26379", "[::1]:26380"]);
        assert_eq!(k.redis_master_name, "primary");
        assert_eq!(k.redis_key_prefix, "c:");
        assert_eq!(k.redis_wait_replicas, 18);
        assert_eq!(k.redis_wait_timeout_ms, 19);
        assert_eq!(k.redis_timeout_ms, 20);
        assert_eq!(k.cluster_listen.to_string(), "0.0.0.0:21");
        assert_eq!(k.cluster_advertise.as_deref(), Some("n2.internal:21"));
        assert_eq!(k.cluster_cookie, "cookie-22");
        assert_eq!(k.public_url.as_deref(), Some("wss://n2.example.com/ws"));
        assert_eq!(k.lease_ms, 23);
        assert_eq!(k.renew_interval_ms, 24);
        assert_eq!(k.heartbeat_interval_ms, 25);
        assert_eq!(k.heartbeat_timeout_ms, 26);
        assert_eq!(k.drain_timeout_ms, 27);
        assert!(c.is_cluster());
    }

    #[test]
    fn partial_table_keeps_other_defaults() {
        let c = parse_str("[limits]\nop_burst = 9\n").unwrap();
        let mut want = Config::default();
        want.limits.op_burst = 9;
        assert_eq!(c, want);
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("listne = \"127.0.0.1:1\"\n", "listne"),
            ("[limits]\nmax_frame = 1\n", "max_frame"),
            ("[websocket]\nping_ms = 1\n", "ping_ms"),
            ("[cluster]\nredis_url = \"x\"\n", "redis_url"),
            ("[clustr]\nredis = \"x\"\n", "clustr"),
        ] {
            let err = parse_str(text).unwrap_err();
            let ConfigError::Toml { path, message } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(path, Path::new("chorus.toml"));
            assert!(message.contains(key), "{message}");
            assert!(err.to_string().contains("chorus.toml"), "{err}");
        }
    }

    #[test]
    fn wrong_types_and_values_are_errors() {
        for (text, needle) in [
            ("listen = \"nowhere\"\n", "listen"),
            ("[store]\nfsync = \"sometimes\"\n", "sometimes"),
            ("[limits]\nop_burst = -1\n", "op_burst"),
            ("shutdown_grace_ms = \"10s\"\n", "shutdown_grace_ms"),
            ("listen = \n", "listen"),
            (
                "[cluster]\ncluster_listen = \"localhost:8090\"\n",
                "cluster_listen",
            ),
            (
                "[cluster]\nredis_sentinels = \"a:1,b:2\"\n",
                "redis_sentinels",
            ),
            ("[cluster]\nlease_ms = -1\n", "lease_ms"),
        ] {
            let err = parse_str(text).unwrap_err();
            assert!(matches!(err, ConfigError::Toml { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn missing_file_is_a_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = read(&path).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }
}
