//! `dpp-guard canary digest VALUE`: the keyed digest a policy lists for a
//! canary record (docs/monitoring.md). The value never goes in the policy,
//! only this digest: HMAC-SHA256 under the log key's canary subkey, the
//! very function the filter compares with.

use std::io::Read;
use std::process::ExitCode;

use dpp_core::LogKey;

/// Prints the digest of `value` (`-`: read stdin, one trailing newline
/// dropped, so the value stays out of shell history and `ps`).
/// Exit 2 when the key or the value cannot be read.
pub fn digest(key_env: &str, value: &str) -> ExitCode {
    let key = match LogKey::from_env(key_env) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("log key: environment variable {key_env} {e}");
            return ExitCode::from(2);
        }
    };
    let value = match value {
        "-" => {
            let mut text = String::new();
            if std::io::stdin().read_to_string(&mut text).is_err() {
                eprintln!("canary value: stdin is not UTF-8 text");
                return ExitCode::from(2);
            }
            let trimmed = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            trimmed.to_string()
        }
        v => v.to_string(),
    };
    if value.is_empty() {
        eprintln!("canary value: empty");
        return ExitCode::from(2);
    }
    println!("{}", key.canary_key().digest_hex(value.as_bytes()));
    ExitCode::SUCCESS
}
