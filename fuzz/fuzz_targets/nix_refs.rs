//! Fuzz target for the Nix reference extractor: any bytes (as text, lossy)
//! give a list of references, never a panic; every position is inside the
//! input; every resolved path stays inside the repository.
#![no_main]

use guard::nix::parse::{Target, references};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1) as u32;
    for path in ["default.nix", "machines/a/default.nix"] {
        let r = references(&text, path, "");
        for x in &r.refs {
            assert!(x.line >= 1 && x.line <= lines + 1, "line {} of {}", x.line, lines);
            assert!(x.column >= 1);
            if let Target::Path(p) | Target::Under(p) = &x.target {
                assert!(!p.starts_with('/') && !p.split('/').any(|c| c == ".."), "{p}");
            }
        }
    }
});
