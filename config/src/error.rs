//! `ConfigError`: why loading failed, naming the file, variable, flag or setting at fault.

use std::path::PathBuf;

/// Why loading or validating the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad command line (unknown flag, bad flag value), or `--help` / `--version` was asked for:
    /// call `.exit()` on it to print it and exit with clap's status.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    File {
        /// The file named by `--config` / `CHORUS_CONFIG`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid config file {}: {message}", .path.display())]
    Toml {
        /// The file named by `--config` / `CHORUS_CONFIG`.
        path: PathBuf,
        /// The parser's message, with line, column and the offending key or value.
        message: String,
    },
    /// An environment variable holds a value that does not parse as its setting's type.
    #[error("invalid value {value:?} in environment variable {var}: {message}")]
    Env {
        /// The variable, e.g. `CHORUS_LISTEN`.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A setting is out of range or inconsistent with another one (after merging all sources).
    #[error("invalid setting {setting} = {value}: allowed {allowed}{}", crate::cli::where_set(.setting))]
    Invalid {
        /// The setting, as its TOML key path, e.g. `limits.max_frame_bytes`.
        setting: String,
        /// The offending value (token values are never shown).
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
}
