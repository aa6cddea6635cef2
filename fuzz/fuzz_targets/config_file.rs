//! Structure-aware: the config file (`--config FILE`, TOML) through parsing and the range checks
//! over the built-in defaults, as start-up and every reload run them.
//!
//! Each input is a list of assignments. Most name one of the keys the file accepts
//! ([`config::file::KEYS`]), some an unknown key; each value is any TOML scalar or list (any
//! text, NaN and infinite numbers, durations with any unit, socket addresses), written as
//! top-level dotted keys so that sections, duplicates and mixed types all occur. Sometimes a
//! raw line is added, for TOML syntax errors.
//!
//! What must hold:
//! - parsing and checking never panic;
//! - every error names a key the input wrote, a section, or `(file)` for TOML syntax, with a
//!   reason, and any line number it gives is a line of the file;
//! - an accepted file passes the range checks again (`check` finds nothing in what `effective`
//!   returned), and the values the server shows for the keys it set (`Key::show`, as GetStatus
//!   and the reload answer print them), written back as a file, parse to the same config.
#![no_main]

use arbitrary::Arbitrary;
use hotplane::config::{self, Config, file::KEYS};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone)]
enum Val {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// A duration: a number and a unit among humantime's and some it does not know.
    Duration(u32, u8),
    Address([u8; 4], u16),
    Words(Vec<String>),
}

const UNITS: &[&str] = &[
    "ms", "s", "m", "h", "d", "us", "ns", "", "sec", "min", "parsecs",
];

impl Val {
    fn toml(&self) -> String {
        match self {
            Val::Int(n) => n.to_string(),
            Val::Float(f) if f.is_nan() => "nan".into(),
            Val::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
            Val::Float(f) => format!("{f:?}"),
            Val::Bool(b) => b.to_string(),
            Val::Text(s) => toml::Value::from(s.as_str()).to_string(),
            Val::Duration(n, u) => {
                let unit = UNITS[usize::from(*u) % UNITS.len()];
                toml::Value::from(format!("{n}{unit}")).to_string()
            }
            Val::Address(ip, port) => {
                let [a, b, c, d] = ip;
                toml::Value::from(format!("{a}.{b}.{c}.{d}:{port}")).to_string()
            }
            Val::Words(w) => toml::Value::from(w.clone()).to_string(),
        }
    }

    /// How a shown value is written back, given the kind of value the file was accepted with.
    fn rewrite(&self, shown: &str) -> String {
        match self {
            Val::Int(_) | Val::Float(_) | Val::Bool(_) => shown.to_owned(),
            _ => toml::Value::from(shown).to_string(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Unknown(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    assignments: Vec<(Name, Val)>,
    raw_line: Option<String>,
}

fn key_name(name: &Name) -> Option<String> {
    match name {
        Name::Known(i) => Some(KEYS[usize::from(*i) % KEYS.len()].path.to_owned()),
        // A bare or dotted key of letters, digits, `_` and `-` (anything else is a syntax
        // error, which the raw line covers).
        Name::Unknown(s) => {
            let k: String = s
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .collect();
            let ok = !k.is_empty() && k.split('.').all(|part| !part.is_empty());
            ok.then_some(k)
        }
    }
}

/// Keys whose shown value is not the file's value (redacted URLs, the stop-word list's
/// summary, an unset address shown empty).
fn shown_differs(path: &str) -> bool {
    matches!(
        path,
        "database.url" | "bus.redis_url" | "normalize.stop_words" | "server.advertise_addr"
    )
}

fuzz_target!(|input: Input| {
    let mut text = String::new();
    let mut written = Vec::new();
    for (name, val) in &input.assignments {
        if let Some(key) = key_name(name) {
            text.push_str(&format!("{key} = {}\n", val.toml()));
            written.push((key, val.clone()));
        }
    }
    if let Some(line) = &input.raw_line {
        text.push_str(line);
        text.push('\n');
    }
    let lines = text.lines().count().max(1);
    // The built-in defaults, parsed once (clap's parse is most of an input's time otherwise).
    static BASE: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| Config::for_database("sqlite://fuzz.db"));
    let outcome = config::file::parse(&text)
        .and_then(|loaded| config::file::effective(base, &loaded.file).map(|c| (loaded, c)));
    let (loaded, config) = match outcome {
        Ok(ok) => ok,
        Err(errors) => {
            assert!(!errors.is_empty(), "rejected without an error: {text:?}");
            for e in &errors {
                assert!(!e.reason.is_empty(), "an error without a reason: {e:?}");
                // A list item is named by its index: `normalize.stop_words[0]`.
                let key = e.key.split('[').next().unwrap_or_default();
                let names = |k: &str| k == key || k.starts_with(&format!("{key}."));
                let known = e.key == "(file)"
                    || KEYS.iter().any(|k| names(k.path))
                    || written.iter().any(|(k, _)| names(k))
                    || key.split('.').all(|part| text.contains(part)); // from the raw line
                assert!(
                    known,
                    "an error names a key the file does not have: {e:?} in {text:?}"
                );
                if let Some(n) = e
                    .reason
                    .rsplit("(line ")
                    .next()
                    .and_then(|t| t.strip_suffix(')'))
                    && let Ok(n) = n.parse::<usize>()
                {
                    assert!((1..=lines + 1).contains(&n), "line {n} of {lines}: {e:?}");
                }
            }
            return;
        }
    };
    assert!(
        config::file::check(&config).is_empty(),
        "accepted, then out of range: {text:?}"
    );

    // What is shown for each key the file set, written back, must load to the same values.
    let mut again = String::new();
    let mut kinds = std::collections::BTreeMap::new();
    for (key, val) in &written {
        kinds.insert(key.clone(), val); // the last assignment of a key is the one in effect
    }
    for key in KEYS
        .iter()
        .filter(|k| kinds.contains_key(k.path) && !shown_differs(k.path))
    {
        let shown = (key.show)(&config);
        again.push_str(&format!(
            "{} = {}\n",
            key.path,
            kinds[key.path].rewrite(&shown)
        ));
    }
    let reloaded = config::file::parse(&again)
        .and_then(|l| config::file::effective(base, &l.file))
        .unwrap_or_else(|e| panic!("the shown values do not load: {e:?}\n{again}\nfrom {text:?}"));
    for key in KEYS
        .iter()
        .filter(|k| kinds.contains_key(k.path) && !shown_differs(k.path))
    {
        assert_eq!(
            (key.show)(&reloaded),
            (key.show)(&config),
            "{} changed when written back: {again:?} from {text:?}",
            key.path
        );
    }
    assert!(loaded.keys_set <= KEYS.len());
});
