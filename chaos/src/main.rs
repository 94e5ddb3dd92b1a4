//! Chorus chaos: load generator and fault injection (see `chorus-chaos --help`).
//!
//! # Layout
//! - [`load`]: `chorus-chaos load`, N collaborators over D documents over real WebSockets, with
//!   latency histograms, server CPU and memory, and convergence and loss checks at the end.

mod load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Chorus chaos tools: every scenario is a subcommand with its own deadline and exit code.
#[derive(Debug, Parser)]
#[command(name = "chorus-chaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate collaborators typing over WebSockets; report throughput, latency percentiles,
    /// server CPU and memory, bytes per op, and check convergence and loss at the end. Exits 1
    /// if a check fails, 2 on a usage or setup error.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => match load::run(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("chorus-chaos load: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
