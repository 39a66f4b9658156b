//! Scrubbing time of long adversarial paths (a request path can be 60 kB in
//! Envoy): each shape at 1k-60k bytes, through `url` and `text`. Cost must
//! grow linearly; a run of colons once took 20 s at 60 kB (one detection
//! round per `::`).
//!
//!     cargo run --release -p dpp-guard-core --example scrub_worst_case

use dpp_core::scrub::PiiKeys;
use dpp_core::Scrubber;
fn main() {
    let s = Scrubber::new(None, PiiKeys::default());
    for n in [1000usize, 4000, 16000, 60000] {
        for (name, t) in [
            ("colons", format!("/a?q={}", ":".repeat(n))),
            ("colon-dot", format!("/a?q={}", ":.".repeat(n / 2))),
            ("digits-sp", format!("/a?q={}", "1 ".repeat(n / 2))),
            ("hex-colon", format!("/a?q={}", "a:".repeat(n / 2))),
            ("eq", format!("/a/{}", "name=a ".repeat(n / 7))),
        ] {
            let t0 = std::time::Instant::now();
            let out = s.url(&t);
            let u = t0.elapsed();
            let t0 = std::time::Instant::now();
            let _ = s.text(&t);
            println!(
                "{name:10} n={n:6} url {:?} text {:?} out {}",
                u,
                t0.elapsed(),
                out.len()
            );
        }
    }
}
