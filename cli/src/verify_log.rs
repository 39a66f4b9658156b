//! `dpp-guard verify-log`: checks the MAC chains of a captured access log.

use std::process::ExitCode;

use dpp_core::access::chain::verify;
use dpp_core::policy::DEFAULT_LOG_KEY_ENV;
use dpp_core::LogKey;

pub const USAGE: &str = "  verify-log [--key-env NAME] [--from-start] FILE
                         check the sealed access records in FILE (Envoy access
                         log, Envoy log with plugin lines, or both); the log key
                         is read from the environment variable NAME (default
                         DPP_GUARD_LOG_KEY), never from the command line.
                         --from-start: every chain must begin at seq 0.
                         Exit 0: intact; 1: first broken link printed; 2: usage.
";

pub fn run(args: &[String]) -> ExitCode {
    let mut key_env = DEFAULT_LOG_KEY_ENV.to_string();
    let mut from_start = false;
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--key-env" => match it.next() {
                Some(n) => key_env = n.clone(),
                None => return usage(),
            },
            "--from-start" => from_start = true,
            f if file.is_none() && !f.starts_with("--") => file = Some(f.to_string()),
            _ => return usage(),
        }
    }
    let Some(file) = file else {
        return usage();
    };
    let key = match LogKey::from_env(&key_env) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("log key: environment variable {key_env} {e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read(&file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::from(2);
        }
    };
    match verify(&text, &key.chain_key(), from_start) {
        Ok(v) if v.records == 0 => {
            eprintln!("{file}: no access records found");
            ExitCode::FAILURE
        }
        Ok(v) => {
            println!(
                "{file}: ok: {} records in {} chain(s)",
                v.records,
                v.chains.len()
            );
            for (worker, (first, last)) in &v.chains {
                println!("  worker {worker}: seq {first}..={last}");
            }
            ExitCode::SUCCESS
        }
        Err(broken) => {
            println!("{file}: BROKEN at {broken}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprint!("usage: dpp-guard verify-log [--key-env NAME] [--from-start] FILE\n{USAGE}");
    ExitCode::from(2)
}
