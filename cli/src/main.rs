//! `dpp-guard`: the command-line side of dpp-guard, sharing `dpp_core` with
//! the filter. `encrypt` and `decrypt` run the very code the filter runs
//! (`dpp_core::protect::rewrite`), so a document handled here and one
//! handled in Envoy are interchangeable.

use std::io::{Read, Write};
use std::process::ExitCode;

use dpp_core::crypto::keyring::generate_entry;
use dpp_core::crypto::{KeyId, Keyring};
use dpp_core::policy::{Direction, FieldAction, Policy};
use dpp_core::protect;

mod findings;
mod lint_access_log;
mod lint_envoy;
mod verify_log;

const USAGE: &str = "usage: dpp-guard <command> [args]

commands:
  validate-policy FILE   check a policy document; prints the first problem and exits 1
  keygen ID              print a new keyring entry `ID=<256-bit key, base64url>`
                         (add it to the keyring variable; promote with `primary=ID`)
  encrypt  --policy FILE --route NAME [--direction request|response] [--keys-env VAR] [DOC|-]
  decrypt  --policy FILE --route NAME [--direction request|response] [--keys-env VAR] [DOC|-]
                         encrypt / decrypt the fields the route's rules select in a
                         JSON document (stdin when DOC is `-` or absent), print it to
                         stdout. The keyring comes from the variable the policy's
                         `keys.env` names (or --keys-env).
  lint-envoy [--json] FILE [ECDS_FILE...]
                         check an Envoy bootstrap (YAML or JSON) and the ECDS files it
                         uses for plaintext clusters, clusters with their own http_filters,
                         a router without the upstream TLS guard, listeners serving
                         protected routes without TLS, invalid dpp_guard policies, key
                         material in Wasm configuration
                         or key_values, a non-loopback admin address, access logs that
                         print request data instead of dpp_guard's scrubbed record;
                         exits 1 on findings
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("validate-policy") => validate_policy(rest),
        Some("keygen") => keygen(rest),
        Some("encrypt") => transform(rest, FieldAction::Encrypt),
        Some("decrypt") => transform(rest, FieldAction::Decrypt),
        Some("lint-envoy") => lint_envoy_cmd(rest),
        Some("verify-log") => verify_log::run(rest),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}{}", verify_log::USAGE);
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprint!("{USAGE}{}", verify_log::USAGE);
    ExitCode::from(2)
}

fn validate_policy(args: &[String]) -> ExitCode {
    let [file] = args else {
        return usage();
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::from(2);
        }
    };
    match Policy::from_json(&bytes) {
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

fn keygen(args: &[String]) -> ExitCode {
    let [id] = args else {
        return usage();
    };
    let id = match KeyId::new(id) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("keygen: {e}");
            return ExitCode::from(2);
        }
    };
    match generate_entry(&id) {
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

struct TransformArgs {
    policy: String,
    route: String,
    direction: Option<Direction>,
    keys_env: Option<String>,
    input: Option<String>,
}

fn parse_transform_args(args: &[String]) -> Result<TransformArgs, String> {
    let (mut policy, mut route, mut direction, mut keys_env, mut input) =
        (None, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--policy" => policy = Some(value("--policy")?),
            "--route" => route = Some(value("--route")?),
            "--keys-env" => keys_env = Some(value("--keys-env")?),
            "--direction" => {
                direction = Some(match value("--direction")?.as_str() {
                    "request" => Direction::Request,
                    "response" => Direction::Response,
                    d => return Err(format!("--direction {d:?}: request or response")),
                })
            }
            other if input.is_none() && (other == "-" || !other.starts_with('-')) => {
                input = Some(other.to_string())
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(TransformArgs {
        policy: policy.ok_or("--policy is required")?,
        route: route.ok_or("--route is required")?,
        direction,
        keys_env,
        input,
    })
}

fn transform(args: &[String], action: FieldAction) -> ExitCode {
    match run_transform(args, action) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("dpp-guard: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_transform(args: &[String], action: FieldAction) -> Result<(), (u8, String)> {
    let a = parse_transform_args(args).map_err(|e| (2, format!("{e}\n{USAGE}")))?;
    let bytes = std::fs::read(&a.policy).map_err(|e| (2, format!("{}: {e}", a.policy)))?;
    let policy = Policy::from_json(&bytes).map_err(|e| (1, format!("{}: {e}", a.policy)))?;
    let route = policy
        .routes
        .iter()
        .find(|r| r.name == a.route)
        .ok_or((1, format!("no route named {:?} in {}", a.route, a.policy)))?;
    let dir = match (
        a.direction,
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
        None | Some("-") => std::io::stdin().read_to_end(&mut doc).map(|_| ()),
        Some(path) => std::fs::read(path).map(|b| doc = b),
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
fn lint_envoy_cmd(args: &[String]) -> ExitCode {
    let json = args.iter().any(|a| a == "--json");
    let files: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    if files.is_empty() || files.iter().any(|f| f.starts_with('-')) {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut docs = Vec::new();
    for f in files {
        match findings::load(std::path::Path::new(f)) {
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
