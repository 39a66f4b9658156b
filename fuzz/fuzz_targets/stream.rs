#![no_main]
// The check lives in fuzz/checks/src/stream.rs, shared with the stable replay.
libfuzzer_sys::fuzz_target!(|data: &[u8]| dpp_fuzz::stream::check(data));
