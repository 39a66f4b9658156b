//! `dpp-guard`: the command-line side of dpp-guard, sharing `dpp_core` with
//! the filter. `encrypt` and `decrypt` run the very code the filter runs
//! (`dpp_core::protect::rewrite`), so a document handled here and one
//! handled in Envoy are interchangeable.
//!
//! Arguments are parsed with clap: per-command `--help`, `--version`,
//! errors that name the bad argument (exit 2), shell completions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use dpp_core::crypto::keyring::generate_entry;
use dpp_core::crypto::KeyId;
use dpp_core::policy::{FieldAction, Policy, DEFAULT_LOG_KEY_ENV};

mod canary;
mod findings;
mod lint_access_log;
mod lint_envoy;
mod transform;
mod verify_log;

/// dpp-guard: check policies, manage keys, encrypt and decrypt JSON
/// documents by policy, check Envoy configurations and sealed access logs.
#[derive(Debug, Parser)]
#[command(name = "dpp-guard", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a policy document; prints the first problem and exits 1.
    ValidatePolicy {
        /// The policy document (JSON, docs/policy.md).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a new keyring entry `ID=<256-bit key, base64url>`.
    ///
    /// Add it to the keyring variable; promote it with `primary=ID`.
    Keygen {
        /// Key id: 1 to 32 characters of [A-Za-z0-9_-], not `primary`.
        #[arg(value_name = "ID", value_parser = parse_key_id)]
        id: KeyId,
    },
    /// Encrypt the fields the route's rules select in a JSON document.
    ///
    /// Reads DOC (stdin when `-` or absent), prints the document to stdout.
    /// The keyring comes from the variable the policy's `keys.env` names
    /// (or --keys-env). Failures exit 1 and print only a code.
    Encrypt(transform::TransformArgs),
    /// Decrypt the fields the route's rules select in a JSON document.
    ///
    /// Reads DOC (stdin when `-` or absent), prints the document to stdout.
    /// The keyring comes from the variable the policy's `keys.env` names
    /// (or --keys-env). Failures exit 1 and print only a code.
    Decrypt(transform::TransformArgs),
    /// Check an Envoy configuration for mistakes that defeat dpp-guard.
    ///
    /// Checks an Envoy bootstrap (YAML or JSON, or an admin /config_dump)
    /// and the ECDS files it uses for: plaintext clusters, clusters with
    /// their own http_filters, a router without the upstream TLS guard,
    /// listeners serving protected routes without TLS or without path
    /// normalisation, invalid dpp_guard policies, key material in Wasm
    /// configuration or key_values, a non-loopback admin address, access
    /// logs that print request data instead of dpp_guard's scrubbed
    /// record. Exits 1 on findings.
    LintEnvoy {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// The bootstrap, then any ECDS files it uses.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Check the sealed access records (MAC chains) in a captured log.
    ///
    /// FILE is an Envoy access log, an Envoy log with plugin lines, or
    /// both. The log key is read from the environment, never from the
    /// command line. Exit 0: intact; 1: the first broken link is printed.
    VerifyLog {
        /// Environment variable holding the log key.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_LOG_KEY_ENV)]
        key_env: String,
        /// Every chain must begin at seq 0 (nothing cut from the start).
        #[arg(long)]
        from_start: bool,
        /// The captured log.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Canary records (docs/monitoring.md).
    Canary {
        #[command(subcommand)]
        command: CanaryCommand,
    },
    /// Print a shell completion script, e.g. `dpp-guard completions bash`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum CanaryCommand {
    /// Print the digest a policy lists for a canary value
    /// (`monitoring.canaries[].digest`): HMAC-SHA256 under the log key.
    ///
    /// The log key is read from the environment, never from the command
    /// line. Pass `-` to read the value from stdin (one trailing newline
    /// dropped) and keep it out of shell history. The filter compares the
    /// exact string: a JSON string's characters, a percent-decoded path
    /// segment or query value.
    Digest {
        /// Environment variable holding the log key.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_LOG_KEY_ENV)]
        key_env: String,
        /// The canary value, or `-` for stdin.
        #[arg(value_name = "VALUE")]
        value: String,
    },
}

fn parse_key_id(id: &str) -> Result<KeyId, String> {
    KeyId::new(id).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::ValidatePolicy { file } => validate_policy(&file),
        Command::Keygen { id } => keygen(&id),
        Command::Encrypt(args) => transform::run(&args, FieldAction::Encrypt),
        Command::Decrypt(args) => transform::run(&args, FieldAction::Decrypt),
        Command::LintEnvoy { json, files } => lint_envoy_cmd(json, &files),
        Command::VerifyLog {
            key_env,
            from_start,
            file,
        } => verify_log::run(&key_env, from_start, &file),
        Command::Canary {
            command: CanaryCommand::Digest { key_env, value },
        } => canary::digest(&key_env, &value),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "dpp-guard", &mut out);
            match out.flush() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
    }
}

fn validate_policy(file: &Path) -> ExitCode {
    let name = file.display();
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    match Policy::from_json(&bytes) {
        Ok(p) => {
            println!("{name}: ok ({} routes)", p.routes.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(id: &KeyId) -> ExitCode {
    match generate_entry(id) {
        Ok(entry) => {
            println!("{}", entry.as_str());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lint_envoy_cmd(json: bool, files: &[PathBuf]) -> ExitCode {
    let mut docs = Vec::new();
    for f in files {
        match findings::load(f) {
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    let found = lint_envoy::lint(&docs);
    if json {
        println!("{}", findings::render_json(&found));
    } else {
        print!("{}", findings::render_text(&found));
    }
    if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
