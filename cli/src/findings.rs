//! What `lint-envoy` reads and reports: input documents and findings,
//! shared by the checks in `lint_envoy` and `lint_access_log`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    /// Stable identifier, e.g. `cluster-without-tls`.
    pub code: &'static str,
    /// Where in the file, e.g. `static_resources.clusters[1]`.
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// A parsed input file.
pub struct Doc {
    pub file: String,
    pub value: Value,
}

pub fn load(path: &Path) -> Result<Doc, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // YAML is a superset of JSON: one parser reads both.
    let value: Value = serde_norway::from_str(&text)
        .map_err(|e| format!("{}: not YAML or JSON: {e}", path.display()))?;
    Ok(Doc {
        file: path.display().to_string(),
        value,
    })
}

pub fn finding(
    file: &str,
    code: &'static str,
    path: String,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        file: file.to_string(),
        code,
        path,
        message,
        fix: fix.to_string(),
    }
}

pub fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(
            s,
            "{}: {} at {}\n  {}\n  fix: {}",
            f.file, f.code, f.path, f.message, f.fix
        );
    }
    let _ = writeln!(s, "{} finding(s)", findings.len());
    s
}

pub fn render_json(findings: &[Finding]) -> String {
    serde_json::json!({ "findings": findings, "count": findings.len() }).to_string()
}
