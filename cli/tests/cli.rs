//! The CLI as a user runs it: keygen, encrypt, decrypt, rotation.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dpp-guard"))
}

fn keygen(id: &str) -> String {
    let out = bin().args(["keygen", id]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run(cmd: &str, policy: &str, keys: &str, doc: &[u8]) -> Output {
    let mut child = bin()
        .args([cmd, "--policy", policy, "--route", "orders", "-"])
        .env("TEST_KEYS", keys)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(doc).unwrap();
    child.wait_with_output().unwrap()
}

const DOC: &str = r#"{"payload":{"AmazonOrderId":"1","BuyerInfo":{"BuyerEmail":"jane@example.com","BuyerName":"Jane"}}}"#;

#[test]
fn encrypt_decrypt_and_rotate() {
    let dir = std::env::temp_dir().join(format!("dpp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"version":1,"keys":{"env":"TEST_KEYS"},"routes":[{"name":"orders",
            "encrypt":[{"direction":"request","preset":"sp-api-orders","context":"tenant-1"}]}]}"#,
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let (k1, k2) = (keygen("k1"), keygen("k2"));
    assert!(k1.starts_with("k1=") && k1.len() == 3 + 43);

    let enc = run("encrypt", policy, &k1, DOC.as_bytes());
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let enc_text = String::from_utf8(enc.stdout.clone()).unwrap();
    assert!(!enc_text.contains("jane@example.com") && !enc_text.contains("Jane\""));
    assert!(enc_text.contains("\"dpg1.k1."));

    // Rotation: k2 promoted, k1 still decrypts old data, new data uses k2.
    let ring2 = format!("{k1} {k2} primary=k2");
    let dec = run("decrypt", policy, &ring2, &enc.stdout);
    assert!(dec.status.success());
    assert_eq!(String::from_utf8(dec.stdout).unwrap(), DOC);
    let enc2 = run("encrypt", policy, &ring2, DOC.as_bytes());
    assert!(String::from_utf8(enc2.stdout.clone())
        .unwrap()
        .contains("\"dpg1.k2."));

    // k1 removed: its data fails closed, k2 data still opens.
    let dec_old = run("decrypt", policy, &k2, &enc.stdout);
    assert_eq!(dec_old.status.code(), Some(1));
    assert!(dec_old.stdout.is_empty());
    assert!(String::from_utf8_lossy(&dec_old.stderr).contains("unknown_key"));
    assert!(run("decrypt", policy, &k2, &enc2.stdout).status.success());

    // A tampered envelope fails and prints nothing.
    let tampered = enc_text.replacen("\"dpg1.k1.", "\"dpg1.k1.A", 1);
    let t = run("decrypt", policy, &k1, tampered.as_bytes());
    assert_eq!(t.status.code(), Some(1));
    assert!(t.stdout.is_empty());
    // The key never appears in any error output.
    let secret = k1.split_once('=').unwrap().1;
    assert!(!String::from_utf8_lossy(&t.stderr).contains(secret));
    std::fs::remove_dir_all(&dir).ok();
}

fn output(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn version_and_per_command_help() {
    let (code, stdout, _) = output(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        format!("dpp-guard {}", env!("CARGO_PKG_VERSION"))
    );
    for (command, mentions) in [
        ("validate-policy", "<FILE>"),
        ("keygen", "<ID>"),
        ("encrypt", "--keys-env <VAR>"),
        ("decrypt", "--direction <DIRECTION>"),
        ("lint-envoy", "--json"),
        ("verify-log", "--key-env <NAME>"),
        ("canary digest", "--key-env <NAME>"),
        ("completions", "<SHELL>"),
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let (code, stdout, _) = output(&args);
        assert_eq!(code, Some(0), "{command} --help");
        assert!(
            stdout.contains(&format!("Usage: dpp-guard {command}")) && stdout.contains(mentions),
            "{command} --help:\n{stdout}"
        );
    }
}

#[test]
fn usage_errors_name_the_bad_argument_and_exit_2() {
    for (args, names) in [
        (&["keygen", "bad id"][..], "'bad id' for '<ID>'"),
        (&["keygen", "primary"][..], "'primary' for '<ID>'"),
        (
            &[
                "encrypt",
                "--policy",
                "p.json",
                "--route",
                "r",
                "--direction",
                "up",
            ][..],
            "'up' for '--direction <DIRECTION>'",
        ),
        (&["encrypt", "--route", "r"][..], "--policy <FILE>"),
        (&["lint-envoy", "--jsn", "x.yaml"][..], "'--jsn'"),
        (&["lint-envoy"][..], "<FILE>..."),
        (&["verify-log", "--key-env"][..], "--key-env <NAME>"),
        (&["frobnicate"][..], "'frobnicate'"),
    ] {
        let (code, stdout, stderr) = output(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, stdout, stderr) = output(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        for command in [
            "validate-policy",
            "keygen",
            "encrypt",
            "lint-envoy",
            "verify-log",
        ] {
            assert!(
                stdout.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let (code, _, _) = output(&["completions", "cmd.exe"]);
    assert_eq!(code, Some(2));
}

#[test]
fn canary_digest_is_the_filters_hmac_under_the_log_key() {
    let key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let run = |args: &[&str], stdin: &str| {
        let mut child = bin()
            .args(args)
            .env("DPP_TEST_LOG_KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let want = dpp_core::LogKey::parse(key)
        .unwrap()
        .canary_key()
        .digest_hex(b"ORD-CANARY-7");
    let args = ["canary", "digest", "--key-env", "DPP_TEST_LOG_KEY"];
    let (code, out) = run(&[&args[..], &["ORD-CANARY-7"]].concat(), "");
    assert_eq!((code, out.trim()), (Some(0), want.as_str()));
    let (code, out) = run(&[&args[..], &["-"]].concat(), "ORD-CANARY-7\n");
    assert_eq!((code, out.trim()), (Some(0), want.as_str()), "stdin");
    let (code, out) = run(
        &["canary", "digest", "--key-env", "DPP_NO_SUCH_VAR", "x"],
        "",
    );
    assert_eq!((code, out.as_str()), (Some(2), ""));
}
