//! `dpp-guard`: the command-line side of dpp-guard, sharing `dpp_core` with the filter.

use std::process::ExitCode;

mod verify_log;

const USAGE: &str = "usage: dpp-guard <command> [args]

commands:
  validate-policy FILE   check a policy document; prints the first problem and exits 1
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("validate-policy") => validate_policy(&args[1..]),
        Some("verify-log") => verify_log::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}{}", verify_log::USAGE);
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}{}", verify_log::USAGE);
            ExitCode::from(2)
        }
    }
}

fn validate_policy(args: &[String]) -> ExitCode {
    let [file] = args else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::from(2);
        }
    };
    match dpp_core::Policy::from_json(&bytes) {
        Ok(p) => {
            println!("{file}: ok ({} routes)", p.routes.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}
