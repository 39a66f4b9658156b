//! `dpp-guard verify-log`: checks the MAC chains of a captured access log.

use std::path::Path;
use std::process::ExitCode;

use dpp_core::access::chain::verify;
use dpp_core::LogKey;

/// Verifies `file` with the log key read from the environment variable
/// `key_env`. Exit 0: intact; 1: broken (first broken link printed) or no
/// records; 2: the key or the file cannot be read.
pub fn run(key_env: &str, from_start: bool, path: &Path) -> ExitCode {
    let file = path.display();
    let key = match LogKey::from_env(key_env) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("log key: environment variable {key_env} {e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read(path) {
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
