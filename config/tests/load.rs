//! End-to-end tests of `Config::load_from`: file < env < flags precedence and its errors.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chorus_config::{
    AuthConfig, ClusterConfig, Config, ConfigError, DocumentConfig, FsyncPolicy, LimitsConfig,
    StoreConfig, WebSocketConfig,
};
use clap::error::ErrorKind;

/// The environment is process-global and tests run on parallel threads: every test that loads a
/// config holds this lock, through [`Env`].
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of the process environment, with every `CHORUS_*` variable removed on entry and
/// on drop.
struct Env {
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    fn new() -> Env {
        let lock = ENV_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clear_chorus_vars();
        Env { _lock: lock }
    }

    fn set(&self, var: &str, value: &str) -> &Self {
        std::env::set_var(var, value);
        self
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        clear_chorus_vars();
    }
}

fn clear_chorus_vars() {
    let vars: Vec<_> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().starts_with("CHORUS_"))
        .collect();
    for var in vars {
        std::env::remove_var(var);
    }
}

/// A temporary TOML file holding `text`.
fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn load(args: &[&str]) -> Result<Config, ConfigError> {
    Config::load_from(std::iter::once("chorus").chain(args.iter().copied()))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn no_sources_gives_the_defaults() {
    let _env = Env::new();
    assert_eq!(load(&[]).unwrap(), Config::default());
}

#[test]
fn flag_beats_env_beats_file() {
    let env = Env::new();
    let file = toml_file(
        r#"
        listen = "127.0.0.1:1001"
        node_name = "from-file"
        log = "warn"
        [limits]
        op_burst = 11
        max_connections = 12
        [store]
        fsync = "never"
        "#,
    );
    env.set("CHORUS_LISTEN", "127.0.0.1:2002")
        .set("CHORUS_NODE_NAME", "from-env")
        .set("CHORUS_OP_BURST", "22")
        .set("CHORUS_HISTORY_OPS", "23");
    let c = load(&[
        "--config",
        path_str(file.path()),
        "--listen",
        "127.0.0.1:3003",
        "--op-burst",
        "33",
    ])
    .unwrap();
    assert_eq!(c.listen.port(), 3003, "flag beats env and file");
    assert_eq!(c.limits.op_burst, 33, "flag beats env and file");
    assert_eq!(c.node_name, "from-env", "env beats file");
    assert_eq!(c.document.history_ops, 23, "env beats default");
    assert_eq!(c.log, "warn", "file beats default");
    assert_eq!(c.limits.max_connections, 12, "file beats default");
    assert_eq!(c.store.fsync, FsyncPolicy::Never, "file beats default");
    assert_eq!(
        c.websocket,
        Config::default().websocket,
        "untouched section"
    );
}

#[test]
fn config_file_from_env_var() {
    let env = Env::new();
    let file = toml_file("node_name = \"via-env-file\"\n");
    env.set("CHORUS_CONFIG", path_str(file.path()));
    assert_eq!(load(&[]).unwrap().node_name, "via-env-file");
    let other = toml_file("node_name = \"via-flag-file\"\n");
    let c = load(&["--config", path_str(other.path())]).unwrap();
    assert_eq!(c.node_name, "via-flag-file", "--config beats CHORUS_CONFIG");
}

/// Every setting, as (flag, env var, value), and the config it must produce.
fn every_setting() -> (Vec<(&'static str, &'static str, &'static str)>, Config) {
    let settings = vec![
        ("--listen", "CHORUS_LISTEN", "0.0.0.0:9999"),
        ("--data-dir", "CHORUS_DATA_DIR", "/srv/chorus"),
        ("--node-name", "CHORUS_NODE_NAME", "node-7"),
        ("--log", "CHORUS_LOG", "debug,hyper=warn"),
        ("--shutdown-grace-ms", "CHORUS_SHUTDOWN_GRACE_MS", "2500"),
        ("--worker-threads", "CHORUS_WORKER_THREADS", "2"),
        ("--allow-anonymous", "CHORUS_ALLOW_ANONYMOUS", "false"),
        ("--token", "CHORUS_TOKENS", "rw-1"),
        ("--read-only-token", "CHORUS_READ_ONLY_TOKENS", "ro-1"),
        ("--max-frame-bytes", "CHORUS_MAX_FRAME_BYTES", "4096"),
        ("--max-document-chars", "CHORUS_MAX_DOCUMENT_CHARS", "5000"),
        ("--op-rate-per-s", "CHORUS_OP_RATE_PER_S", "12.5"),
        ("--op-burst", "CHORUS_OP_BURST", "25"),
        ("--max-open-documents", "CHORUS_MAX_OPEN_DOCUMENTS", "3"),
        ("--max-connections", "CHORUS_MAX_CONNECTIONS", "100"),
        ("--history-ops", "CHORUS_HISTORY_OPS", "50"),
        ("--idle-timeout-ms", "CHORUS_IDLE_TIMEOUT_MS", "7000"),
        ("--compact-every-ops", "CHORUS_COMPACT_EVERY_OPS", "60"),
        ("--max-batch-ops", "CHORUS_MAX_BATCH_OPS", "70"),
        ("--max-dedup-clients", "CHORUS_MAX_DEDUP_CLIENTS", "80"),
        ("--max-restarts", "CHORUS_MAX_RESTARTS", "0"),
        ("--restart-window-ms", "CHORUS_RESTART_WINDOW_MS", "90"),
        ("--fsync", "CHORUS_FSYNC", "never"),
        ("--ping-interval-ms", "CHORUS_PING_INTERVAL_MS", "100"),
        ("--ping-timeout-ms", "CHORUS_PING_TIMEOUT_MS", "300"),
        (
            "--outbound-queue-frames",
            "CHORUS_OUTBOUND_QUEUE_FRAMES",
            "16",
        ),
        (
            "--redis",
            "CHORUS_REDIS",
            "rediss://:pw@redis.internal:6380/2",
        ),
        (
            "--redis-sentinel",
            "CHORUS_REDIS_SENTINELS",
            "10.0.0.1:26379",
        ),
        (
            "--redis-master-name",
            "CHORUS_REDIS_MASTER_NAME",
            "chorus-primary",
        ),
        ("--redis-key-prefix", "CHORUS_REDIS_KEY_PREFIX", "c7:"),
        ("--redis-wait-replicas", "CHORUS_REDIS_WAIT_REPLICAS", "1"),
        (
            "--redis-wait-timeout-ms",
            "CHORUS_REDIS_WAIT_TIMEOUT_MS",
            "300",
        ),
        ("--redis-timeout-ms", "CHORUS_REDIS_TIMEOUT_MS", "2000"),
        ("--cluster-listen", "CHORUS_CLUSTER_LISTEN", "0.0.0.0:9998"),
        (
            "--cluster-advertise",
            "CHORUS_CLUSTER_ADVERTISE",
            "node-7.internal:9998",
        ),
        (
            "--cluster-cookie",
            "CHORUS_CLUSTER_COOKIE",
            "cookie-of-node-7",
        ),
        (
            "--public-url",
            "CHORUS_PUBLIC_URL",
            "wss://node-7.example.com/ws",
        ),
        ("--lease-ms", "CHORUS_LEASE_MS", "5000"),
        ("--renew-interval-ms", "CHORUS_RENEW_INTERVAL_MS", "2000"),
        (
            "--heartbeat-interval-ms",
            "CHORUS_HEARTBEAT_INTERVAL_MS",
            "100",
        ),
        (
            "--heartbeat-timeout-ms",
            "CHORUS_HEARTBEAT_TIMEOUT_MS",
            "400",
        ),
        ("--drain-timeout-ms", "CHORUS_DRAIN_TIMEOUT_MS", "20000"),
    ];
    // A full literal (no `..Default::default()`): a new setting must be added here too.
    let want = Config {
        listen: "0.0.0.0:9999".parse().unwrap(),
        data_dir: "/srv/chorus".into(),
        node_name: "node-7".into(),
        log: "debug,hyper=warn".into(),
        shutdown_grace_ms: 2500,
        worker_threads: 2,
        auth: AuthConfig {
            allow_anonymous: false,
            tokens: vec!["rw-1".into()],
            read_only_tokens: vec!["ro-1".into()],
        },
        limits: LimitsConfig {
            max_frame_bytes: 4096,
            max_document_chars: 5000,
            op_rate_per_s: 12.5,
            op_burst: 25,
            max_open_documents: 3,
            max_connections: 100,
        },
        document: DocumentConfig {
            history_ops: 50,
            idle_timeout_ms: 7000,
            compact_every_ops: 60,
            max_batch_ops: 70,
            max_dedup_clients: 80,
            max_restarts: 0,
            restart_window_ms: 90,
        },
        store: StoreConfig {
            fsync: FsyncPolicy::Never,
        },
        websocket: WebSocketConfig {
            ping_interval_ms: 100,
            ping_timeout_ms: 300,
            outbound_queue_frames: 16,
        },
        cluster: ClusterConfig {
            redis: Some("rediss://:pw@redis.internal:6380/2".into()),
            redis_sentinels: vec!["10.0.0.1:26379".into()],
            redis_master_name: "chorus-primary".into(),
            redis_key_prefix: "c7:".into(),
            redis_wait_replicas: 1,
            redis_wait_timeout_ms: 300,
            redis_timeout_ms: 2000,
            cluster_listen: "0.0.0.0:9998".parse().unwrap(),
            cluster_advertise: Some("node-7.internal:9998".into()),
            cluster_cookie: "cookie-of-node-7".into(),
            public_url: Some("wss://node-7.example.com/ws".into()),
            lease_ms: 5000,
            renew_interval_ms: 2000,
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 400,
            drain_timeout_ms: 20000,
        },
    };
    (settings, want)
}

#[test]
fn every_setting_has_a_working_flag() {
    let _env = Env::new();
    let (settings, want) = every_setting();
    let mut args = vec![];
    for (flag, _, value) in &settings {
        args.push(*flag);
        args.push(*value);
    }
    assert_eq!(load(&args).unwrap(), want);
}

#[test]
fn every_setting_has_a_working_env_var() {
    let env = Env::new();
    let (settings, want) = every_setting();
    for (_, var, value) in &settings {
        env.set(var, value);
    }
    assert_eq!(load(&[]).unwrap(), want);
}

#[test]
fn token_lists() {
    let env = Env::new();
    env.set("CHORUS_TOKENS", " a , b,,c, ");
    assert_eq!(load(&[]).unwrap().auth.tokens, ["a", "b", "c"]);
    let c = load(&["--token", "x", "--token", "y"]).unwrap();
    assert_eq!(c.auth.tokens, ["x", "y"], "flags replace the env list");

    let file = toml_file("[auth]\ntokens = [\"f\"]\n");
    env.set("CHORUS_TOKENS", "");
    let c = load(&["--config", path_str(file.path())]).unwrap();
    assert_eq!(c.auth.tokens, ["f"], "an empty variable counts as unset");
}

#[test]
fn sentinel_lists() {
    let env = Env::new();
    let redis = [
        "--redis",
        "redis://10.0.0.1:6379/0",
        "--cluster-cookie",
        "cookie-123",
    ];
    env.set("CHORUS_REDIS_SENTINELS", "s1:26379, s2:26379,,[::1]:26379 ");
    let c = load(&redis).unwrap();
    assert_eq!(
        c.cluster.redis_sentinels,
        ["s1:26379", "s2:26379", "[::1]:26379"]
    );
    let mut args = redis.to_vec();
    args.extend(["--redis-sentinel", "a:1", "--redis-sentinel", "b:2"]);
    let c = load(&args).unwrap();
    assert_eq!(
        c.cluster.redis_sentinels,
        ["a:1", "b:2"],
        "flags replace the env list"
    );

    let file = toml_file("[cluster]\nredis_sentinels = [\"f:3\"]\n");
    env.set("CHORUS_REDIS_SENTINELS", " ");
    let mut args = redis.to_vec();
    args.extend(["--config", path_str(file.path())]);
    let c = load(&args).unwrap();
    assert_eq!(
        c.cluster.redis_sentinels,
        ["f:3"],
        "a blank variable counts as unset"
    );
}

#[test]
fn cluster_membership_from_every_source() {
    let env = Env::new();
    assert!(!load(&[]).unwrap().is_cluster());

    let file =
        toml_file("[cluster]\nredis = \"redis://file:6379\"\ncluster_cookie = \"file-cookie\"\n");
    let c = load(&["--config", path_str(file.path())]).unwrap();
    assert!(c.is_cluster());
    assert_eq!(c.cluster.redis.as_deref(), Some("redis://file:6379"));

    env.set("CHORUS_REDIS", "redis://env:6379")
        .set("CHORUS_CLUSTER_COOKIE", "env-cookie");
    let c = load(&["--config", path_str(file.path())]).unwrap();
    assert_eq!(
        c.cluster.redis.as_deref(),
        Some("redis://env:6379"),
        "env beats file"
    );
    assert_eq!(c.cluster.cluster_cookie, "env-cookie", "env beats file");
    let c = load(&["--cluster-cookie", "flag-cookie"]).unwrap();
    assert_eq!(c.cluster.cluster_cookie, "flag-cookie", "flag beats env");

    env.set("CHORUS_REDIS", "");
    let c = load(&["--config", path_str(file.path())]).unwrap();
    assert_eq!(
        c.cluster.redis.as_deref(),
        Some("redis://file:6379"),
        "an empty variable counts as unset"
    );
}

#[test]
fn cluster_settings_are_validated_after_merging() {
    let env = Env::new();
    let err = load(&["--redis", "redis://127.0.0.1:6379"]).unwrap_err();
    let ConfigError::Invalid { setting, value, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (setting.as_str(), value.as_str()),
        ("cluster.cluster_cookie", "<0 characters, redacted>")
    );
    let shown = err.to_string();
    assert!(
        shown.contains("--cluster-cookie") && shown.contains("CHORUS_CLUSTER_COOKIE"),
        "{shown}"
    );

    env.set("CHORUS_LEASE_MS", "1000");
    let err = load(&["--renew-interval-ms", "600"]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { setting, allowed, .. }
            if setting == "cluster.renew_interval_ms" && allowed.contains("(500)")),
        "{err:?}"
    );

    let err = load(&["--redis-sentinel", "s1:26379"]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { setting, .. } if setting == "cluster.redis_sentinels"),
        "{err:?}"
    );
}

#[test]
fn cookie_and_redis_password_are_never_printed() {
    let env = Env::new();
    env.set("CHORUS_CLUSTER_COOKIE", "s3cret-cookie")
        .set("CHORUS_REDIS", "redis://:s3cret-pw@127.0.0.1:6379/0");
    let c = load(&[]).unwrap();
    assert_eq!(c.cluster.cluster_cookie, "s3cret-cookie");
    let mut shown = format!("{c:?} {c:#?}");
    shown += &Config::command().render_long_help().to_string();
    match load(&["--help"]) {
        Err(e) => shown += &e.to_string(),
        Ok(c) => panic!("{c:?}"),
    }
    // Errors: a short cookie, a bad Redis URL, a repeated flag, a bad value next to the cookie.
    env.set("CHORUS_CLUSTER_COOKIE", "s3cret");
    shown += &format!("{:?}", load(&[]).unwrap_err());
    shown += &load(&[]).unwrap_err().to_string();
    env.set("CHORUS_REDIS", "http://:s3cret-pw@127.0.0.1:6379/0");
    shown += &format!("{:?}", load(&[]).unwrap_err());
    shown += &load(&[]).unwrap_err().to_string();
    let twice = [
        "--cluster-cookie",
        "s3cret-1",
        "--cluster-cookie",
        "s3cret-2",
    ];
    shown += &load(&twice).unwrap_err().to_string();
    shown += &load(&["--cluster-cookie", "s3cret-3", "--lease-ms", "x"])
        .unwrap_err()
        .to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("[env: CHORUS_CLUSTER_COOKIE]"), "{shown}");
    assert!(shown.contains("<redacted>@127.0.0.1:6379/0"), "{shown}");
}

#[test]
fn empty_env_var_counts_as_unset() {
    let env = Env::new();
    let file = toml_file("listen = \"127.0.0.1:4004\"\n");
    env.set("CHORUS_LISTEN", "").set("CHORUS_OP_BURST", "");
    let c = load(&["--config", path_str(file.path())]).unwrap();
    assert_eq!(c.listen.port(), 4004);
    assert_eq!(c.limits.op_burst, 400);
}

#[test]
fn bad_env_values_name_the_variable() {
    for (var, value, expected) in [
        ("CHORUS_LISTEN", "localhost:80", "IP address and port"),
        ("CHORUS_OP_BURST", "-1", "whole number"),
        ("CHORUS_MAX_RESTARTS", "4294967296", "0 to 4294967295"),
        ("CHORUS_OP_RATE_PER_S", "fast", "a number"),
        ("CHORUS_FSYNC", "sometimes", "always or never"),
        ("CHORUS_ALLOW_ANONYMOUS", "maybe", "true or false"),
        ("CHORUS_PING_TIMEOUT_MS", "45s", "whole number"),
        (
            "CHORUS_CLUSTER_LISTEN",
            "localhost:8090",
            "IP address and port",
        ),
        ("CHORUS_REDIS_WAIT_REPLICAS", "-1", "0 to 4294967295"),
        ("CHORUS_LEASE_MS", "3s", "whole number"),
    ] {
        let env = Env::new();
        env.set(var, value);
        let err = load(&[]).unwrap_err();
        let ConfigError::Env {
            var: v,
            value: val,
            message,
        } = &err
        else {
            panic!("{var}: {err:?}")
        };
        assert_eq!((v.as_str(), val.as_str()), (var, value));
        assert!(message.contains(expected), "{message}");
        let shown = err.to_string();
        assert!(shown.contains(var) && shown.contains(value), "{shown}");
    }
}

#[test]
fn a_flag_overrides_a_bad_env_value() {
    let env = Env::new();
    env.set("CHORUS_OP_BURST", "lots");
    assert_eq!(load(&["--op-burst", "9"]).unwrap().limits.op_burst, 9);
}

#[test]
fn bad_flag_values_name_the_flag() {
    let _env = Env::new();
    for (flag, value) in [
        ("--listen", "nowhere"),
        ("--op-burst", "-3"),
        ("--fsync", "Always"),
        ("--allow-anonymous", "perhaps"),
        ("--cluster-listen", "*:8090"),
        ("--heartbeat-timeout-ms", "1.5"),
    ] {
        let err = load(&[flag, value]).unwrap_err();
        let ConfigError::Cli(e) = &err else {
            panic!("{flag}: {err:?}")
        };
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        let shown = err.to_string();
        assert!(shown.contains(flag) && shown.contains(value), "{shown}");
    }
    let err = load(&["--no-such-flag"]).unwrap_err();
    assert!(matches!(&err, ConfigError::Cli(e) if e.kind() == ErrorKind::UnknownArgument));
}

#[test]
fn help_and_version_are_cli_errors_for_the_caller_to_exit_with() {
    let _env = Env::new();
    for (arg, kind) in [
        ("--help", ErrorKind::DisplayHelp),
        ("-h", ErrorKind::DisplayHelp),
        ("--version", ErrorKind::DisplayVersion),
    ] {
        match load(&[arg]) {
            Err(ConfigError::Cli(e)) => assert_eq!(e.kind(), kind, "{arg}"),
            other => panic!("{arg}: {other:?}"),
        }
    }
}

#[test]
fn file_errors_name_the_file_and_key() {
    let _env = Env::new();
    let file = toml_file("[limits]\nmax_frame_byte = 2048\n");
    let err = load(&["--config", path_str(file.path())]).unwrap_err();
    let ConfigError::Toml { path, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, file.path());
    assert!(message.contains("max_frame_byte"), "{message}");
    assert!(err.to_string().contains(path_str(file.path())), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = load(&["--config", path_str(&missing)]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::File { path, .. } if path == &missing),
        "{err:?}"
    );
}

#[test]
fn merged_config_is_validated() {
    let env = Env::new();
    let file = toml_file("[websocket]\nping_interval_ms = 20000\n");
    env.set("CHORUS_PING_TIMEOUT_MS", "30000");
    assert!(load(&["--config", path_str(file.path())]).is_ok());
    let err = load(&[
        "--config",
        path_str(file.path()),
        "--ping-timeout-ms",
        "20000",
    ])
    .unwrap_err();
    let ConfigError::Invalid {
        setting,
        value,
        allowed,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(setting, "websocket.ping_timeout_ms");
    assert_eq!(value, "20000");
    assert!(allowed.contains("ping_interval_ms (20000)"), "{allowed}");

    let err = load(&["--allow-anonymous", "false"]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { setting, .. } if setting == "auth.allow_anonymous"),
        "{err:?}"
    );
}
