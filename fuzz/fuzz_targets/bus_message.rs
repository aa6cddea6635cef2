//! The bus message decoder and verifier on arbitrary bytes: never panics; what decodes is a
//! valid request; in signed mode nothing unsigned or wrongly signed gets through.
#![no_main]

use hotplane::bus::{
    Action, Secret,
    envelope::decode,
    signing::{canonical, sign},
    verifier::Verifier,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(data) {
        let e = &d.envelope;
        assert!(e.pattern_id.is_none_or(|id| id > 0));
        assert!(e.action != Action::Invalidate || e.pattern_id.is_some());
    }
    let window = std::time::Duration::from_secs(300);
    let mut open = Verifier::new(None, "fuzz", window, 64);
    let _ = open.check(data, 1.7e9);

    let secret = Secret::new("fuzz-secret");
    let mut signed = Verifier::new(Some(secret.clone()), "fuzz", window, 64);
    if let Ok(e) = signed.check(data, 1.7e9) {
        // Accepted in signed mode: it carried the right signature of its own payload.
        let mut object = decode(data).expect("it decoded once").object;
        object.remove("sig");
        let expected = sign(&secret, &canonical(&object));
        assert_eq!(e.sig.map(|s| s.to_ascii_lowercase()), Some(expected));
    }
});
