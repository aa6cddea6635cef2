//! `store::redact_url`, the one function that hides passwords in URLs wherever one is shown
//! (logs, GetStatus, audit rows, config listings): whatever a password holds, and however it
//! is written (raw `@` and `:`, percent-encoded, a `password=` query parameter), it never
//! appears in the result, while the rest of the URL stays readable.

use hotplane::store::redact_url;
use proptest::prelude::*;

/// Characters a password may hold raw in a URL's userinfo: everything printable except what
/// ends the authority (`/`, `?`, `#`), including `@`, `:` and `%`.
const RAW: &str = "[A-Za-z0-9@:%!$&'()*+,;=._~^|{}<> -]{4,24}";

/// The URL with the password left out, to skip passwords that occur in it anyway.
const FRAME: &str = "postgres://app:@db.internal:5432/patterns?sslmode=require";

fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hidden(url: &str, password: &str) -> Result<(), TestCaseError> {
    let shown = redact_url(url);
    prop_assert!(!shown.contains(password), "{url} -> {shown}");
    let encoded = percent_encoded(password);
    prop_assert!(!shown.contains(&encoded), "{url} -> {shown}");
    prop_assert!(
        shown.contains("db.internal"),
        "the host stays: {url} -> {shown}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_raw_password_never_shows(password in RAW) {
        prop_assume!(!FRAME.contains(&password));
        hidden(&format!("postgres://app:{password}@db.internal:5432/patterns?sslmode=require"), &password)?;
        hidden(&format!("redis://:{password}@db.internal:6379/0"), &password)?;
    }

    #[test]
    fn a_percent_encoded_password_never_shows(password in "\\PC{4,16}") {
        prop_assume!(!FRAME.contains(&password) && !FRAME.contains(&percent_encoded(&password)));
        let encoded = percent_encoded(&password);
        hidden(&format!("postgres://app:{encoded}@db.internal/patterns"), &password)?;
    }

    #[test]
    fn a_password_query_parameter_never_shows(password in "[A-Za-z0-9._~-]{6,24}") {
        prop_assume!(!FRAME.contains(&password));
        hidden(&format!("postgres://db.internal/patterns?user=app&password={password}"), &password)?;
    }
}

/// The cases of the review, and URLs without a password kept as they are.
#[test]
fn known_cases() {
    assert_eq!(
        redact_url("postgres://app:p@ss@db/x"),
        "postgres://app:***@db/x",
        "the last @ ends the userinfo, as URL parsers read it"
    );
    assert_eq!(
        redact_url("postgres://app:s3cret@db:5432/x"),
        "postgres://app:***@db:5432/x"
    );
    assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    assert_eq!(redact_url("sqlite://hotplane.db"), "sqlite://hotplane.db");
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(
        redact_url("redis://:pw12@cache:6379/2"),
        "redis://:***@cache:6379/2"
    );
    assert!(!redact_url("postgres://db/x?password=hunter22&sslmode=require").contains("hunter22"));
}
