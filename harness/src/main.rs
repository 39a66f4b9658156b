//! `dpp-guard-harness`: runs scenario files in the wasmtime harness.
//!
//! `run` prints PASS/FAIL per step with what differed (`--json`: the
//! observations instead, for the end-to-end suite). `check` holds another
//! side's observations (a real Envoy's) to the same expectations.
//! Exit status 1 if anything failed, 2 on usage or load errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::scenario::{self, Observed};
use harness::Plugin;

/// Runs proxy-wasm scenario files in a wasmtime host that behaves like
/// Envoy 1.40 (harness/README.md).
#[derive(Debug, Parser)]
#[command(name = "dpp-guard-harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios in the harness and check their expectations.
    Run {
        /// The module for scenarios that name none (`plugin.wasm`).
        /// Default: $DPP_GUARD_WASM, else make build's dpp_guard.wasm.
        #[arg(long, value_name = "FILE")]
        wasm: Option<PathBuf>,
        /// Print the observations as JSON instead of a report.
        #[arg(long)]
        json: bool,
        #[arg(value_name = "SCENARIO", required = true)]
        files: Vec<PathBuf>,
    },
    /// Check another side's observations (a real Envoy's) against a scenario.
    Check {
        /// The observations, as `run --json` prints them.
        #[arg(long, value_name = "FILE")]
        observed: PathBuf,
        #[arg(value_name = "SCENARIO")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { wasm, json, files } => run(wasm, json, &files),
        Command::Check { observed, file } => check(&observed, &file),
    }
}

fn default_wasm() -> PathBuf {
    std::env::var("DPP_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/wasm32-wasip1/release/dpp_guard.wasm"))
}

/// Modules compiled once per run, by path.
#[derive(Default)]
struct Modules(BTreeMap<PathBuf, Plugin>);

impl Modules {
    fn get(&mut self, path: &Path) -> Result<&Plugin, String> {
        if !self.0.contains_key(path) {
            let plugin = Plugin::load(path).map_err(|e| {
                format!("{e}\n(build it with `make build` or `make test-modules`, or pass --wasm)")
            })?;
            self.0.insert(path.to_path_buf(), plugin);
        }
        self.0
            .get(path)
            .ok_or_else(|| format!("{} did not load", path.display()))
    }
}

fn run(wasm: Option<PathBuf>, json: bool, files: &[PathBuf]) -> ExitCode {
    let default = wasm.unwrap_or_else(default_wasm);
    let mut modules = Modules::default();
    let mut all_ok = true;
    let mut observed = Vec::new();
    for file in files {
        let s = match scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let module = s.plugin.wasm.clone().unwrap_or_else(|| default.clone());
        let plugin = match modules.get(&module) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let mut obs = match scenario::run(plugin, &s) {
            Ok(o) => o,
            Err(e) => {
                println!("FAIL {}\n  {e}", s.name);
                all_ok = false;
                continue;
            }
        };
        if let Some(setup) = obs.setup.as_mut() {
            setup.module = Some(module);
        }
        let reports = scenario::check(&s, &obs);
        let mut text = String::new();
        all_ok &= scenario::render(&s, &reports, &mut text);
        if json {
            observed.push(obs);
        } else {
            print!("{text}");
        }
    }
    if json {
        match serde_json::to_string_pretty(&observed) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check(obs_path: &Path, file: &Path) -> ExitCode {
    let s = match scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let obs: Observed = match std::fs::read_to_string(obs_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", obs_path.display());
            return ExitCode::from(2);
        }
    };
    let mut text = String::new();
    let ok = scenario::render(&s, &scenario::check(&s, &obs), &mut text);
    print!("{text}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
