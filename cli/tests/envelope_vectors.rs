//! The shared envelope test vectors (core/testdata/envelope-vectors.json)
//! through the command line: every vector's document decrypts with
//! `dpp-guard decrypt` under its rule, and deterministic vectors re-encrypt
//! to the same document with `dpp-guard encrypt`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const VECTORS: &str = include_str!("../../core/testdata/envelope-vectors.json");

fn run(cmd: &str, policy: &std::path::Path, direction: &str, keys: &str, doc: &[u8]) -> Vec<u8> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpp-guard"))
        .args([cmd, "--policy", policy.to_str().unwrap(), "--route", "r"])
        .args(["--direction", direction, "-"])
        .env("VECTOR_KEYS", keys)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_vector_decrypts_with_the_cli() {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    let dir = std::env::temp_dir().join(format!("dpp-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for (i, v) in vectors.iter().enumerate() {
        let name = v["name"].as_str().unwrap();
        let direction = v["direction"].as_str().unwrap();
        let keys = v["keyring"].as_str().unwrap();
        let policy = dir.join(format!("p{i}.json"));
        let mut rule = v["rule"].clone();
        std::fs::write(
            &policy,
            json!({"version": 1, "keys": {"env": "VECTOR_KEYS"},
                   "routes": [{"name": "r", "decrypt": [rule.clone()]}]})
            .to_string(),
        )
        .unwrap();
        let out = run(
            "decrypt",
            &policy,
            direction,
            keys,
            v["document"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            serde_json::from_str::<Value>(v["decrypted"].as_str().unwrap()).unwrap(),
            "{name}"
        );
        if v["mode"] == "deterministic" {
            rule["mode"] = json!("deterministic");
            rule["blind_index"] = v["blind_index"].clone();
            std::fs::write(
                &policy,
                json!({"version": 1, "keys": {"env": "VECTOR_KEYS"},
                       "routes": [{"name": "r", "encrypt": [rule]}]})
                .to_string(),
            )
            .unwrap();
            let out = run(
                "encrypt",
                &policy,
                direction,
                keys,
                v["decrypted"].as_str().unwrap().as_bytes(),
            );
            assert_eq!(
                String::from_utf8(out).unwrap(),
                v["document"].as_str().unwrap(),
                "{name}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
