//! Runs one input through one target's check on stable, with the panic
//! message and backtrace: `cargo run -p dpp-guard-fuzz-checks --example
//! run_input -- TARGET FILE...` (to reproduce a fuzzer's artifact).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: run_input TARGET FILE...");
        std::process::exit(2);
    };
    let Some((_, check)) = dpp_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        eprintln!("unknown target {name}");
        std::process::exit(2);
    };
    for file in files {
        let data = std::fs::read(&file).expect("readable input");
        check(&data);
        println!("{file}: ok");
    }
}
