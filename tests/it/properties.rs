//! Property tests (proptest) for the two parsers of untrusted input: the query normalizer and
//! the bus message decoder. Case counts are moderate so the whole module runs in seconds; a
//! failure prints the minimal input, which belongs in a regression unit test beside the code.

use hotplane::{
    bus::{
        Action, Reason, Secret,
        envelope::{MAX_MESSAGE_BYTES, decode},
        signing::{canonical, seal},
        verifier::Verifier,
    },
    normalize::{Normalizer, Profile},
};
use proptest::{collection, prelude::*};
use serde_json::{Map, Value, json};

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        // PROPTEST_CASES (read by the default) asks for a longer hunt.
        cases: match std::env::var_os("PROPTEST_CASES") {
            Some(_) => default.cases,
            None => CASES,
        },
        // Shrinking a failure must not take minutes on a loaded CI machine.
        max_shrink_iters: 2048,
        ..default
    }
}

/// Text that exercises the normalizer: words, every kind of whitespace it splits on, ASCII and
/// Unicode punctuation, case pairs with special mappings (İ, Σ/ς, ß), combining marks, stop
/// words of the pilotpros profile, and arbitrary characters.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z]{1,8}",
        2 => Just(" ".to_owned()),
        1 => prop::sample::select(vec![
            "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\u{85}",
            "\u{a0}", "\u{2028}", "\u{3000}", "  ",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "?", "!", ".", ",", "'", "\"", "-", "(", ")", "¿", "¡", "«", "»", "…", "“", "”",
            "。", "、", "_", "@", "#", "%", "‼", "?!",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "İ", "Σ", "ΑΣ", "ς", "ß", "ẞ", "Ǆ", "ǅ", "\u{307}", "\u{301}", "ﬃ", "K", "Å",
            "oggi", "OGGI", "Questa", "settimana", "ora?",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn normalizers() -> Vec<Normalizer> {
    vec![
        Normalizer::new(Profile::Default, None),
        Normalizer::new(Profile::PilotPros, None),
        // Replaced stop words, including ones that only match after case folding.
        Normalizer::new(Profile::Default, Some(vec!["Ciao".into(), " il ".into()])),
    ]
}

fn stop_words(n: usize) -> &'static [&'static str] {
    match n {
        1 => Profile::PilotPros.default_stop_words(),
        2 => &["ciao", "il"],
        _ => &[],
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalizing_is_total_idempotent_and_canonical(q in query()) {
        for (i, n) in normalizers().iter().enumerate() {
            let once = n.normalize(&q);
            prop_assert_eq!(&n.normalize(&once), &once, "idempotent ({})", i);
            prop_assert_eq!(once.trim(), once.as_str(), "trimmed ({})", i);
            prop_assert!(!once.contains("  "), "no double spaces ({}): {:?}", i, once);
            prop_assert!(
                once.split(' ').all(|w| !w.is_empty() || once.is_empty()),
                "single spaces only ({}): {:?}", i, once
            );
            prop_assert!(
                !once.chars().any(|c| c.is_whitespace() && c != ' '),
                "only plain spaces ({}): {:?}", i, once
            );
            for w in once.split(' ') {
                prop_assert!(!stop_words(i).contains(&w), "stop word {:?} kept ({})", w, i);
            }
        }
    }

    #[test]
    fn normalizing_arbitrary_strings_never_panics(q in any::<String>()) {
        for n in normalizers() {
            let once = n.normalize(&q);
            prop_assert_eq!(n.normalize(&once), once);
        }
    }

    #[test]
    fn case_spacing_and_end_punctuation_do_not_matter(
        words in collection::vec("[a-z]{1,6}", 1..6),
        gap in prop::sample::select(vec![" ", "  ", "\t", " \n "]),
        end in prop::sample::select(vec!["", "?", "!", ".", "?!", " ..."]),
    ) {
        for n in normalizers() {
            let plain = n.normalize(&words.join(" "));
            let noisy = format!("  {}{end} ", words.join(gap).to_uppercase());
            prop_assert_eq!(n.normalize(&noisy), plain);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let mut v = Verifier::new(Some(Secret::new("k")), "me", std::time::Duration::from_secs(300), 16);
        let _ = v.check(&bytes, 1.0e9);
    }

    #[test]
    fn decoding_arbitrary_json_objects_never_panics(
        object in collection::btree_map(field_name(), json_value(), 0..8)
    ) {
        let object: Map<String, Value> = object.into_iter().collect();
        let text = Value::Object(object.clone()).to_string();
        if let Ok(d) = decode(text.as_bytes()) {
            // Whatever decodes is a valid request: a known action, a positive id when named,
            // an id for every invalidate.
            prop_assert!(d.envelope.pattern_id.is_none_or(|id| id > 0));
            prop_assert!(d.envelope.action != Action::Invalidate || d.envelope.pattern_id.is_some());
            prop_assert_eq!(&d.object, &object);
        }
        let mut v = Verifier::new(None, "me", std::time::Duration::from_secs(300), 16);
        let _ = v.check(text.as_bytes(), 1.0e9);
    }

    #[test]
    fn what_the_publisher_writes_round_trips_and_verifies(
        pattern_id in prop::option::of(1..=i64::MAX),
        invalidate in any::<bool>(),
        revision in any::<i64>(),
        ts in prop_oneof![(0..4_000_000_000i64).prop_map(|s| s as f64), 0.0..4.0e9f64],
        origin in "[a-z0-9-]{1,40}",
        extra in prop::option::of(("[a-z_]{1,12}", json_value())),
        secret in "[ -~]{1,32}",
    ) {
        let action = if invalidate && pattern_id.is_some() { "invalidate" } else { "reload" };
        let mut fields = json!({
            "action": action,
            "pattern_id": pattern_id,
            "event_id": format!("{origin}-1"),
            "origin": origin,
            "target": "patterns",
            "revision": revision,
            "ts": ts,
        });
        if let (Some((k, v)), Some(map)) = (extra, fields.as_object_mut()) {
            // Unknown fields ride along (covered by the signature).
            map.entry(k).or_insert(v);
        }
        let Value::Object(object) = fields else { unreachable!() };
        let secret = Secret::new(&secret);
        let text = seal(object.clone(), Some(&secret));
        prop_assert!(text.len() <= MAX_MESSAGE_BYTES);

        let mut v = Verifier::new(Some(secret.clone()), "receiver", std::time::Duration::from_secs(300), 16);
        let e = v.check(text.as_bytes(), ts);
        prop_assert!(e.is_ok(), "{:?} rejected: {:?}", text, e);
        let e = e.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(e.pattern_id, pattern_id);
        prop_assert_eq!(e.action.as_str(), action);
        prop_assert_eq!(e.revision, Some(revision));
        prop_assert_eq!(e.ts, Some(ts));
        prop_assert_eq!(e.origin.as_deref(), Some(origin.as_str()));
        // The same message again is a replay.
        prop_assert_eq!(v.check(text.as_bytes(), ts).err().map(|r| r.reason), Some(Reason::Replayed));

        // The wire text is canonical, so the receiver's recomputation is the publisher's text.
        let mut received = decode(text.as_bytes()).map_err(|r| TestCaseError::fail(format!("{r:?}")))?.object;
        received.remove("sig");
        prop_assert_eq!(canonical(&received), canonical(&object));

        // Another secret, or any change to the payload, fails the signature.
        let mut other = Verifier::new(Some(Secret::new("not the secret")), "receiver", std::time::Duration::from_secs(300), 16);
        prop_assert_eq!(other.check(text.as_bytes(), ts).err().map(|r| r.reason), Some(Reason::BadSignature));
        let unsigned = seal(object.clone(), None);
        let mut strict = Verifier::new(Some(secret.clone()), "receiver", std::time::Duration::from_secs(300), 16);
        prop_assert_eq!(strict.check(unsigned.as_bytes(), ts).err().map(|r| r.reason), Some(Reason::Unsigned));
        // Outside the replay window (either direction): stale, however well signed.
        let mut late = Verifier::new(Some(secret.clone()), "receiver", std::time::Duration::from_secs(300), 16);
        prop_assert_eq!(late.check(text.as_bytes(), ts + 301.0).err().map(|r| r.reason), Some(Reason::Stale));
        prop_assert_eq!(late.check(text.as_bytes(), ts - 301.0).err().map(|r| r.reason), Some(Reason::Stale));
        let tampered = text.replacen("\"origin\":\"", "\"origin\":\"x", 1);
        let mut fresh = Verifier::new(Some(secret), "receiver", std::time::Duration::from_secs(300), 16);
        prop_assert_eq!(fresh.check(tampered.as_bytes(), ts).err().map(|r| r.reason), Some(Reason::BadSignature));
    }

    #[test]
    fn bad_ids_and_actions_are_rejected_with_their_reason(
        id in prop_oneof![
            (i64::MIN..=0).prop_map(|i| i.to_string()),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(|u| u.to_string()),
            Just("1e3".to_owned()),
            Just("1.5".to_owned()),
            Just("\"7\"".to_owned()),
            Just("99999999999999999999999".to_owned()),
        ],
        action in "[a-z]{1,10}",
    ) {
        let msg = format!(r#"{{"action":"reload","pattern_id":{id}}}"#);
        prop_assert_eq!(decode(msg.as_bytes()).err().map(|r| r.reason), Some(Reason::WrongType), "{}", msg);
        let msg = format!(r#"{{"action":"invalidate","pattern_id":{id}}}"#);
        prop_assert_eq!(decode(msg.as_bytes()).err().map(|r| r.reason), Some(Reason::WrongType), "{}", msg);
        if action != "reload" && action != "invalidate" {
            let msg = format!(r#"{{"action":"{action}","pattern_id":1}}"#);
            prop_assert_eq!(decode(msg.as_bytes()).err().map(|r| r.reason), Some(Reason::UnknownAction));
        }
    }

    #[test]
    fn oversize_messages_are_rejected_before_parsing(pad in MAX_MESSAGE_BYTES - 20..MAX_MESSAGE_BYTES + 64) {
        let msg = format!(r#"{{"action":"reload","p":"{}"}}"#, "a".repeat(pad));
        let r = decode(msg.as_bytes());
        if msg.len() > MAX_MESSAGE_BYTES {
            prop_assert_eq!(r.err().map(|r| r.reason), Some(Reason::TooLarge));
        } else {
            prop_assert!(r.is_ok());
        }
    }
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "action",
            "pattern_id",
            "event_id",
            "origin",
            "target",
            "revision",
            "ts",
            "sig"
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop::sample::select(vec!["reload", "invalidate", "patterns", "", "x"])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
