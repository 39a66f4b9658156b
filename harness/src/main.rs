//! `dpp-guard-harness`: runs scenario files in the wasmtime harness.
//!
//!   dpp-guard-harness run [--wasm FILE] [--json] SCENARIO.yaml...
//!   dpp-guard-harness check --observed OBSERVED.json SCENARIO.yaml
//!
//! `run` prints PASS/FAIL per step with what differed (`--json`: the
//! observations instead, for the end-to-end suite). `check` holds another
//! side's observations (a real Envoy's) to the same expectations.
//! Exit status 1 if anything failed, 2 on usage or load errors.

use std::path::PathBuf;
use std::process::ExitCode;

use harness::scenario::{self, Observed};
use harness::Plugin;

const USAGE: &str = "usage:
  dpp-guard-harness run [--wasm FILE] [--json] SCENARIO.yaml...
  dpp-guard-harness check --observed OBSERVED.json SCENARIO.yaml";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("check") => check(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn default_wasm() -> PathBuf {
    std::env::var("DPP_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/wasm32-wasip1/release/dpp_guard.wasm"))
}

fn run(args: &[String]) -> ExitCode {
    let mut wasm = default_wasm();
    let mut json = false;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--wasm" => match it.next() {
                Some(p) => wasm = PathBuf::from(p),
                None => return usage("--wasm needs a file"),
            },
            "--json" => json = true,
            f if f.starts_with("--") => return usage(&format!("unknown option {f}")),
            f => files.push(PathBuf::from(f)),
        }
    }
    if files.is_empty() {
        return usage("no scenario files");
    }
    let plugin = match Plugin::load(&wasm) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\n(build it with `make build`, or pass --wasm)");
            return ExitCode::from(2);
        }
    };
    let mut all_ok = true;
    let mut observed = Vec::new();
    for file in &files {
        let s = match scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let obs = match scenario::run(&plugin, &s) {
            Ok(o) => o,
            Err(e) => {
                println!("FAIL {}\n  {e}", s.name);
                all_ok = false;
                continue;
            }
        };
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

fn check(args: &[String]) -> ExitCode {
    let (Some("--observed"), Some(obs_path), Some(file)) =
        (args.first().map(String::as_str), args.get(1), args.get(2))
    else {
        return usage("check needs --observed FILE and a scenario");
    };
    let s = match scenario::load(file.as_ref()) {
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
            eprintln!("{obs_path}: {e}");
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

fn usage(msg: &str) -> ExitCode {
    eprintln!("{msg}\n{USAGE}");
    ExitCode::from(2)
}
