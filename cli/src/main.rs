//! `dpp-guard`: the command-line side of dpp-guard, sharing `dpp_core` with the filter.

use std::process::ExitCode;

mod lint_access_log;
mod lint_envoy;
mod verify_log;

const USAGE: &str = "usage: dpp-guard <command> [args]

commands:
  validate-policy FILE   check a policy document; prints the first problem and exits 1
  lint-envoy [--json] FILE [ECDS_FILE...]
                         check an Envoy bootstrap (YAML or JSON) and the ECDS files it
                         uses for plaintext clusters, clusters with their own http_filters,
                         a router without the upstream TLS guard, listeners serving
                         protected routes without TLS, key material in Wasm configuration
                         or key_values, a non-loopback admin address, access logs that
                         print request data instead of dpp_guard's scrubbed record;
                         exits 1 on findings
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("validate-policy") => validate_policy(&args[1..]),
        Some("lint-envoy") => lint_envoy_cmd(&args[1..]),
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

fn lint_envoy_cmd(args: &[String]) -> ExitCode {
    let json = args.iter().any(|a| a == "--json");
    let files: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    if files.is_empty() || files.iter().any(|f| f.starts_with('-')) {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut docs = Vec::new();
    for f in files {
        match lint_envoy::load(std::path::Path::new(f)) {
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    let findings = lint_envoy::lint(&docs);
    if json {
        println!("{}", lint_envoy::render_json(&findings));
    } else {
        print!("{}", lint_envoy::render_text(&findings));
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
