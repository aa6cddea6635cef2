//! The query normalizer on arbitrary UTF-8: never panics, and is idempotent with a canonical
//! output (trimmed, single spaces) for every profile.
#![no_main]

use hotplane::normalize::{Normalizer, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for profile in [Profile::Default, Profile::PilotPros] {
        let n = Normalizer::new(profile, None);
        let once = n.normalize(text);
        assert_eq!(n.normalize(&once), once, "not idempotent for {text:?}");
        assert_eq!(once.trim(), once, "not trimmed for {text:?}");
        assert!(!once.contains("  "), "double space for {text:?}");
    }
});
