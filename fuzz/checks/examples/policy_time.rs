fn main() {
    for f in std::env::args().skip(1) {
        let data = std::fs::read(&f).unwrap();
        let t = std::time::Instant::now();
        let r = dpp_core::Policy::from_json(&data);
        println!("{f}: {:?} {:?}", t.elapsed(), r.as_ref().err());
    }
}
