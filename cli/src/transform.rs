//! `dpp-guard encrypt` / `decrypt`: the fields a route's rules select in a
//! JSON document, sealed or opened with the filter's own code
//! (`dpp_core::protect::rewrite`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use dpp_core::crypto::Keyring;
use dpp_core::policy::{Direction, FieldAction, Policy};
use dpp_core::protect;

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The policy document (JSON) that names the route.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The route whose field rules (selectors or preset, and context) apply.
    #[arg(long, value_name = "NAME")]
    route: String,
    /// Which of the route's rules apply; needed when it has rules in both
    /// directions.
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// Read the keyring from this environment variable instead of the one
    /// the policy's `keys.env` names.
    #[arg(long, value_name = "VAR")]
    keys_env: Option<String>,
    /// The JSON document; standard input when `-` or absent.
    #[arg(value_name = "DOC")]
    input: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    Request,
    Response,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Request => Direction::Request,
            DirectionArg::Response => Direction::Response,
        }
    }
}

/// Runs the command; failures print only a code, never data or keys.
pub fn run(a: &TransformArgs, action: FieldAction) -> ExitCode {
    match transform(a, action) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("dpp-guard: {msg}");
            ExitCode::from(code)
        }
    }
}

fn transform(a: &TransformArgs, action: FieldAction) -> Result<(), (u8, String)> {
    let policy_file = a.policy.display();
    let bytes = std::fs::read(&a.policy).map_err(|e| (2, format!("{policy_file}: {e}")))?;
    let policy = Policy::from_json(&bytes).map_err(|e| (1, format!("{policy_file}: {e}")))?;
    let route = policy
        .routes
        .iter()
        .find(|r| r.name == a.route)
        .ok_or((1, format!("no route named {:?} in {policy_file}", a.route)))?;
    let dir = match (
        a.direction.map(Direction::from),
        route.request_fields.is_some(),
        route.response_fields.is_some(),
    ) {
        (Some(d), _, _) => d,
        (None, true, false) => Direction::Request,
        (None, false, true) => Direction::Response,
        (None, true, true) => {
            return Err((
                2,
                "the route has rules in both directions: add --direction".into(),
            ))
        }
        (None, false, false) => {
            return Err((
                1,
                format!("route {:?} has no encrypt or decrypt rules", a.route),
            ))
        }
    };
    let rules = route
        .fields(dir)
        .ok_or((
            1,
            format!("route {:?} has no {} rules", a.route, dir.name()),
        ))?
        .with_action(action);

    let keyring: Keyring = match (&a.keys_env, &policy.keys) {
        (Some(var), _) => {
            let text = std::env::var(var).map_err(|_| (1, format!("{var} is not set")))?;
            Keyring::parse(&text).map_err(|e| (1, format!("keyring in {var}: {e}")))?
        }
        (None, Some(source)) => source
            .load(|name| std::env::var(name).ok())
            .map_err(|e| (1, e.to_string()))?,
        (None, None) => return Err((1, "the policy has no `keys` section".into())),
    };

    let mut doc = Vec::new();
    match a.input.as_deref() {
        Some(path) if path.as_os_str() != "-" => std::fs::read(path).map(|b| doc = b),
        _ => std::io::stdin().read_to_end(&mut doc).map(|_| ()),
    }
    .map_err(|e| (2, format!("reading the document: {e}")))?;

    let out = protect::rewrite(&rules, &keyring, &doc).map_err(|f| {
        let detail = match f {
            protect::BodyFailure::Envelope(e) => format!(" ({})", e.code()),
            _ => String::new(),
        };
        (1, format!("{}{detail}", f.code()))
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_deref().unwrap_or(&doc))
        .and_then(|_| stdout.flush())
        .map_err(|e| (2, format!("writing: {e}")))
}
