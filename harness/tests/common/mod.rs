//! Locating (and if needed building) the wasm modules the tests run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use harness::Plugin;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// Builds the test modules (probe, root-only) for `target` and returns
/// where they are; cargo makes this a no-op when they are up to date.
pub fn build_test_modules(target: &str) -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target/test-modules");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target", target])
        .arg("--manifest-path")
        .arg(root.join("harness/test-modules/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the test modules for {target} failed"
    );
    target_dir.join(target).join("release")
}

pub fn probe_wasip1() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        Plugin::load(build_test_modules("wasm32-wasip1").join("probe.wasm")).expect("probe loads")
    })
}

pub fn probe_unknown() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        Plugin::load(build_test_modules("wasm32-unknown-unknown").join("probe.wasm"))
            .expect("probe loads")
    })
}

/// A module whose root context offers no HTTP context (test-modules/root-only).
pub fn root_only() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        Plugin::load(build_test_modules("wasm32-wasip1").join("root_only.wasm"))
            .expect("root-only loads")
    })
}

/// The dpp-guard filter as `make build` produces it.
pub fn dpp_guard() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let path = std::env::var("DPP_GUARD_WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                workspace_root().join("target/wasm32-wasip1/release/dpp_guard.wasm")
            });
        assert!(
            path.exists(),
            "{} is missing: run `make build` first (make test does)",
            path.display()
        );
        Plugin::load(&path).expect("dpp_guard.wasm loads")
    })
}
