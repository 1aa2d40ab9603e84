//! Fuzz target for the secret scanner on arbitrary bytes: never a panic,
//! findings point inside the input, and no finding shows more than the
//! short redacted prefix of what it found.
#![no_main]

use std::sync::OnceLock;

use guard::config::Config;
use guard::secrets::scan::Scanner;
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new(&Config::default()).expect("built-in rules compile"))
}

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|b| *b == b'\n').count();
    for path in ["x.nix", "secrets.env", "notes.txt"] {
        for f in scanner().scan_bytes(path, data, None) {
            assert!(f.line >= 1 && f.line <= lines, "line {} of {}", f.line, lines);
            assert!(f.secret.as_str().ends_with("(redacted)"));
        }
    }
});
