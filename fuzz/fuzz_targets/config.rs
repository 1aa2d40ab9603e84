//! Fuzz target for the guard.toml loader: any text is a configuration or an
//! error with a one-line message naming the file, never a panic.
#![no_main]

use std::path::Path;

use guard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(text, Path::new("guard.toml")) {
            let msg = e.to_string();
            assert!(msg.starts_with("guard.toml"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }
});
