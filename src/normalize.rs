//! Query normalization: the text key under which patterns are stored and looked up.
//!
//! A query and a learned pattern match when their normalized texts are equal, so this module owns
//! the exact definition of "equal". It is pure logic on the hot path of every match: it allocates
//! the output `String` and nothing else for ordinary input, and it must never depend on I/O,
//! configuration reloads or locale.
//!
//! The steps, in order (profile `pilotpros` reproduces the Python deployment's normalizer):
//! 1. lower-case the whole text (Python `str.lower()`; full case mapping, Σ → ς at word end);
//! 2. split on whitespace as Python's `str.split()` does (Unicode `White_Space` plus U+001C..U+001F);
//! 3. strip punctuation from both ends of each word: ASCII punctuation (`string.punctuation`) for
//!    `pilotpros`, Unicode general category P* for `default`;
//! 4. drop empty words and stop words; join with one space; strip trailing `?`, `!`, `.`.
//!
//! Known divergence from Python: Rust's case tables follow a newer Unicode version than Python
//! 3.11–3.13 (Unicode 14–15.1), so the ~55 characters that gained a lower-case mapping in Unicode
//! 16/17 (e.g. U+A7CB, the Garay and Beria Erfe capitals) are lower-cased here but not by Python.

use std::{
    collections::HashSet,
    fmt,
    hash::{BuildHasherDefault, Hasher},
    str::FromStr,
};

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The stop words of the existing deployment (Italian time references), dropped by `pilotpros`.
const PILOTPROS_STOP_WORDS: &[&str] = &[
    "oggi",
    "adesso",
    "ora",
    "attualmente",
    "ieri",
    "domani",
    "stamattina",
    "stasera",
    "questa",
    "settimana",
    "questo",
    "mese",
];

/// A normalization profile: which punctuation is stripped and which stop words are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Unicode punctuation, no stop words.
    Default,
    /// Bit-for-bit compatible with the existing Python deployment (ASCII punctuation, Italian
    /// stop words).
    PilotPros,
}

impl Profile {
    /// Every profile, in the order they are listed to users.
    const ALL: [Profile; 2] = [Profile::Default, Profile::PilotPros];

    /// The configuration name of the profile.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::PilotPros => "pilotpros",
        }
    }

    /// The stop words used when the configuration does not replace them.
    pub fn default_stop_words(self) -> &'static [&'static str] {
        match self {
            Profile::Default => &[],
            Profile::PilotPros => PILOTPROS_STOP_WORDS,
        }
    }

    /// Whether `c` is stripped from the ends of a word.
    fn strips(self, c: char) -> bool {
        match self {
            Profile::Default => is_unicode_punctuation(c),
            Profile::PilotPros => c.is_ascii_punctuation(),
        }
    }

    /// The [`ASCII_CLASS`] bit of the characters [`Profile::strips`].
    fn ascii_strip_class(self) -> u8 {
        match self {
            Profile::Default => UNICODE_PUNCT,
            Profile::PilotPros => ASCII_PUNCT,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is not one of [`Profile`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown normalization profile {0:?}; valid profiles are: default, pilotpros")]
pub struct UnknownProfile(String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// Normalizes queries for one profile and stop-word list. Cheap to share; immutable once built.
#[derive(Debug, Clone)]
pub struct Normalizer {
    /// Which punctuation is stripped from word ends.
    profile: Profile,
    /// The words dropped from the output.
    stop_words: StopWords,
    /// The same words, sorted, for status.
    listed: Box<[Box<str>]>,
}

impl Normalizer {
    /// A normalizer for `profile`. `stop_words`: `None` uses the profile's list; `Some(list)`
    /// replaces it (words are lower-cased and trimmed; empty entries are ignored).
    pub fn new(profile: Profile, stop_words: Option<Vec<String>>) -> Self {
        let words: Vec<Box<str>> = match stop_words {
            None => profile
                .default_stop_words()
                .iter()
                .map(|w| Box::from(*w))
                .collect(),
            Some(list) => list
                .iter()
                .map(|w| w.trim_matches(is_python_whitespace).to_lowercase())
                .filter(|w| !w.is_empty())
                .map(String::into_boxed_str)
                .collect(),
        };
        let mut listed = words.clone();
        listed.sort();
        listed.dedup();
        Normalizer {
            profile,
            stop_words: StopWords::new(words),
            listed: listed.into_boxed_slice(),
        }
    }

    /// The stop words this normalizer drops, sorted.
    pub fn stop_words(&self) -> Vec<String> {
        self.listed.iter().map(|w| w.to_string()).collect()
    }

    /// The profile this normalizer applies.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The normalized form of `query` (possibly empty).
    pub fn normalize(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        if query.is_ascii() {
            self.normalize_ascii(query, &mut out);
        } else if query.contains('Σ') {
            // Python lower-cases the whole text before splitting. Lower-casing each word char by
            // char gives the same result (see the `lowercase_*` tests) except for Σ, whose mapping
            // depends on its neighbours across punctuation ("ΑΣ-Β" → "ας-β", "ΑΣ.Β" → "ασ.β"):
            // only then is the whole text lower-cased first, at the cost of one more allocation.
            self.normalize_unicode(&query.to_lowercase(), &mut out);
        } else {
            self.normalize_unicode(query, &mut out);
        }
        let kept = out.trim_end_matches(['?', '!', '.']).len();
        out.truncate(kept);
        out
    }

    /// The fast path: byte classes from a table, no UTF-8 decoding.
    fn normalize_ascii(&self, query: &str, out: &mut String) {
        let bytes = query.as_bytes();
        let strip = self.profile.ascii_strip_class();
        let is = |i: usize, class: u8| ASCII_CLASS[usize::from(bytes[i] & 0x7f)] & class != 0;
        let mut i = 0;
        while i < bytes.len() {
            if is(i, WHITESPACE) {
                i += 1;
                continue;
            }
            let mut start = i;
            while i < bytes.len() && !is(i, WHITESPACE) {
                i += 1;
            }
            let mut end = i;
            while start < end && is(start, strip) {
                start += 1;
            }
            while end > start && is(end - 1, strip) {
                end -= 1;
            }
            if start < end {
                self.push_word(out, &query[start..end], true);
            }
        }
    }

    fn normalize_unicode(&self, text: &str, out: &mut String) {
        for word in text.split(is_python_whitespace) {
            let word = word.trim_matches(|c| self.profile.strips(c));
            if !word.is_empty() {
                self.push_word(out, word, word.is_ascii());
            }
        }
    }

    /// Appends a non-empty, already stripped `word` lower-cased, unless it is a stop word.
    fn push_word(&self, out: &mut String, word: &str, ascii: bool) {
        let before_separator = out.len();
        if before_separator > 0 {
            out.push(' ');
        }
        let start = out.len();
        if ascii {
            out.push_str(word);
            out[start..].make_ascii_lowercase();
        } else {
            out.extend(word.chars().flat_map(char::to_lowercase));
        }
        if self.stop_words.contains(&out[start..]) {
            out.truncate(before_separator);
        }
    }
}

/// A set of stop words checked without allocating. The check runs for every word of every query
/// and nearly always answers "no", so short words (nearly all of them) are packed into a `u128`
/// and looked up with one multiply-hash and one probe instead of hashing and comparing strings.
#[derive(Debug, Clone)]
struct StopWords {
    /// Words of at most [`StopWords::PACKED_MAX`] bytes, packed by [`StopWords::pack`].
    short: HashSet<u128, BuildHasherDefault<PackedHasher>>,
    /// Longer words, sorted.
    long: Box<[Box<str>]>,
}

impl StopWords {
    /// The longest word that fits in a `u128` next to its length byte.
    const PACKED_MAX: usize = 15;

    fn new(words: Vec<Box<str>>) -> Self {
        let mut short = HashSet::default();
        let mut long = Vec::new();
        for word in words {
            match Self::pack(&word) {
                Some(key) => {
                    short.insert(key);
                }
                None => long.push(word),
            }
        }
        long.sort_unstable();
        long.dedup();
        StopWords {
            short,
            long: long.into_boxed_slice(),
        }
    }

    /// The bytes of `word` with its length in the top byte (so a word that ends in NUL bytes does
    /// not collide with a shorter one). `None` if it does not fit. Built in a register: copying
    /// into a byte buffer and reloading it as one integer stalls store forwarding.
    fn pack(word: &str) -> Option<u128> {
        let bytes = word.as_bytes();
        if bytes.len() > Self::PACKED_MAX {
            return None;
        }
        // Little-endian, in two halves: shifting a u64 by a constant is cheaper than a u128 by a
        // variable amount.
        let half = |b: &[u8]| b.iter().rev().fold(0, |k: u64, b| k << 8 | u64::from(*b));
        let (low, high) = bytes.split_at(bytes.len().min(8));
        Some(u128::from(half(low)) | u128::from(half(high)) << 64 | (bytes.len() as u128) << 120)
    }

    fn contains(&self, word: &str) -> bool {
        match Self::pack(word) {
            Some(key) => self.short.contains(&key),
            None => self.long.binary_search_by(|s| (**s).cmp(word)).is_ok(),
        }
    }
}

/// A multiply-fold hash for packed stop words. Not DoS-resistant, and it need not be: the table
/// holds only configured words, so a query chosen to collide costs at most one short probe.
#[derive(Default)]
struct PackedHasher(u64);

impl PackedHasher {
    /// Folded multiply (as in wyhash/foldhash): the high and low halves of the product, so both
    /// the bucket index (low bits) and the tag (high bits) depend on every input bit.
    fn mix(&mut self, x: u64) {
        let product = u128::from(self.0 ^ x) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ (product >> 64) as u64;
    }
}

impl Hasher for PackedHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; this keeps the hasher correct for any other key type.
        for chunk in bytes.chunks(8) {
            let mut buf = [0; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(buf));
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// [`ASCII_CLASS`] bit: Python whitespace.
const WHITESPACE: u8 = 1;
/// [`ASCII_CLASS`] bit: ASCII punctuation (`string.punctuation`).
const ASCII_PUNCT: u8 = 2;
/// [`ASCII_CLASS`] bit: Unicode punctuation (P*), a subset of [`ASCII_PUNCT`].
const UNICODE_PUNCT: u8 = 4;

/// The class bits of every ASCII byte, built from the same predicates as the Unicode path.
const ASCII_CLASS: [u8; 128] = {
    let mut table = [0; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8 as char;
        if c.is_ascii_whitespace() || c == '\u{b}' || matches!(c, '\u{1c}'..='\u{1f}') {
            table[i] |= WHITESPACE;
        }
        if c.is_ascii_punctuation() {
            table[i] |= ASCII_PUNCT;
            if !is_ascii_symbol(c) {
                table[i] |= UNICODE_PUNCT;
            }
        }
        i += 1;
    }
    table
};

/// The ASCII characters of general category S* (Sc, Sk, Sm) that `is_ascii_punctuation` counts.
const fn is_ascii_symbol(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
}

/// Python's `str.isspace()`, which `str.split()` splits on: Unicode `White_Space` plus the
/// information separators U+001C..U+001F (bidi class B/S). U+200B is whitespace in neither.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Unicode general category P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).
fn is_unicode_punctuation(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_punctuation() && !is_ascii_symbol(c)
    } else {
        c.general_category_group() == GeneralCategoryGroup::Punctuation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compatibility vectors: `input<TAB>expected`, one per line after a header.
    const VECTORS: &str = include_str!("../tests/data/normalize-pilotpros.tsv");

    /// Decodes the vector escapes: `\\` is a backslash, `\u{hex}` a character.
    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('\\') {
                out.push('\\');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("u{") {
                let end = r
                    .find('}')
                    .ok_or_else(|| format!("unterminated escape in {s:?}"))?;
                let c = u32::from_str_radix(&r[..end], 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad escape {:?} in {s:?}", &r[..end]))?;
                out.push(c);
                rest = &r[end + 1..];
            } else {
                return Err(format!("unknown escape in {s:?}"));
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `(line number, input, expected)` for every vector; panics on a malformed line.
    fn vectors() -> Vec<(usize, String, String)> {
        VECTORS
            .lines()
            .enumerate()
            .skip(1)
            .map(|(i, line)| {
                let line_no = i + 1;
                let parsed = line
                    .split_once('\t')
                    .ok_or_else(|| "no tab".to_owned())
                    .and_then(|(input, expected)| Ok((unescape(input)?, unescape(expected)?)));
                match parsed {
                    Ok((input, expected)) => (line_no, input, expected),
                    Err(e) => panic!("normalize-pilotpros.tsv line {line_no}: {e}"),
                }
            })
            .collect()
    }

    fn pilotpros() -> Normalizer {
        Normalizer::new(Profile::PilotPros, None)
    }

    fn default() -> Normalizer {
        Normalizer::new(Profile::Default, None)
    }

    #[test]
    fn pilotpros_matches_every_compatibility_vector() {
        let n = pilotpros();
        let all = vectors();
        assert!(all.len() >= 50, "only {} vectors loaded", all.len());
        let failures: Vec<String> = all
            .iter()
            .filter_map(|(line, input, expected)| {
                let got = n.normalize(input);
                (&got != expected)
                    .then(|| format!("line {line}: {input:?} → {got:?}, expected {expected:?}"))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "failing vectors:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn normalize_is_idempotent() {
        let extra = [
            "ΑΣ-Β ΑΣ.Β ΑΣ.",
            "İstanbul İİ",
            "«¿qué?» (oggi)",
            "a .. b",
            "x?!. y.?",
            "ora?ora ?ora?",
            "\u{1c}\u{85}\u{3000}",
        ];
        for n in [pilotpros(), default()] {
            let inputs = vectors().into_iter().map(|(_, input, _)| input);
            for input in inputs.chain(extra.iter().map(|s| s.to_string())) {
                let once = n.normalize(&input);
                assert_eq!(n.normalize(&once), once, "{:?} on {input:?}", n.profile());
            }
        }
    }

    #[test]
    fn final_sigma_depends_on_the_whole_text_as_in_python() {
        let n = pilotpros();
        // '-' is not case-ignorable, '.' is: Python gives "ας-β" and "ασ.β".
        assert_eq!(n.normalize("ΑΣ-Β"), "ας-β");
        assert_eq!(n.normalize("ΑΣ.Β"), "ασ.β");
        assert_eq!(n.normalize("ΑΣ."), "ας");
        assert_eq!(n.normalize("ΣΟΦΟΣ ΛΟΓΟΣ?"), "σοφος λογος");
        assert_eq!(n.normalize("Σ"), "σ");
    }

    #[test]
    fn default_profile_strips_unicode_punctuation_and_keeps_stop_words() {
        let n = default();
        assert_eq!(n.normalize("¿Qué pasa?"), "qué pasa");
        assert_eq!(n.normalize("«Ciao» mondo、"), "ciao mondo");
        assert_eq!(n.normalize("„quote“ — dash…"), "quote dash");
        assert_eq!(
            n.normalize("errori questo mese oggi"),
            "errori questo mese oggi"
        );
        assert_eq!(n.normalize("100% completato!"), "100 completato");
        // ASCII symbols are not punctuation in Unicode, so they stay.
        assert_eq!(n.normalize("$cash ~tilde~ a+b"), "$cash ~tilde~ a+b");
        // pilotpros strips only ASCII punctuation.
        assert_eq!(pilotpros().normalize("«Ciao» ¿qué?"), "«ciao» ¿qué");
    }

    #[test]
    fn custom_stop_words_replace_the_profile_list() {
        let n = Normalizer::new(
            Profile::PilotPros,
            Some(vec!["Foo".into(), " BAR ".into(), String::new()]),
        );
        assert_eq!(n.normalize("foo bar? oggi FOO baz"), "oggi baz");
        let none = Normalizer::new(Profile::PilotPros, Some(Vec::new()));
        assert_eq!(none.normalize("errori oggi"), "errori oggi");
        let default_with =
            Normalizer::new(Profile::Default, Some(vec!["«oggi»".into(), "ieri".into()]));
        assert_eq!(default_with.normalize("«ieri» oggi"), "oggi");
    }

    #[test]
    fn empty_and_whitespace_only_input_normalize_to_empty() {
        for n in [pilotpros(), default()] {
            for input in [
                "",
                " ",
                "\t\n\r\u{b}\u{c}",
                "\u{1c}\u{1f}\u{85}\u{a0}\u{3000}",
                "?!. ...",
            ] {
                assert_eq!(n.normalize(input), "", "{input:?}");
            }
        }
    }

    #[test]
    fn profile_names_round_trip_and_errors_list_the_valid_names() {
        for p in Profile::ALL {
            assert_eq!(p.as_str().parse::<Profile>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!("PilotPros".parse::<Profile>(), Ok(Profile::PilotPros));
        let err = "pilot".parse::<Profile>().unwrap_err().to_string();
        assert!(
            err.contains("default") && err.contains("pilotpros"),
            "{err}"
        );
        assert_eq!(Profile::Default.default_stop_words(), &[] as &[&str]);
        assert_eq!(Profile::PilotPros.default_stop_words().len(), 12);
    }

    #[test]
    fn ascii_shortcuts_agree_with_the_unicode_predicates() {
        for c in '\0'..='\u{7f}' {
            let table = c.general_category_group() == GeneralCategoryGroup::Punctuation;
            assert_eq!(is_unicode_punctuation(c), table, "{c:?}");
            let class = ASCII_CLASS[c as usize];
            assert_eq!(class & WHITESPACE != 0, is_python_whitespace(c), "{c:?}");
            for p in Profile::ALL {
                assert_eq!(
                    class & p.ascii_strip_class() != 0,
                    p.strips(c),
                    "{c:?} {p:?}"
                );
            }
        }
    }

    #[test]
    fn stop_words_match_exactly() {
        // Short (packed) and long words, NUL bytes, multi-byte characters.
        let words: Vec<String> = (0..500)
            .map(|i| format!("w{i}x{}", "y".repeat(i % 20)))
            .chain([
                "a\0".into(),
                "ünïcödé".into(),
                "x".repeat(15),
                "x".repeat(16),
            ])
            .collect();
        let n = Normalizer::new(Profile::Default, Some(words.clone()));
        for w in &words {
            assert_eq!(n.normalize(&format!("keep {w} keep")), "keep keep", "{w:?}");
        }
        let near_misses = [
            "w1",
            "w1x",
            "w1xyy",
            "a",
            "a\0\0",
            "ünïcöd",
            "x".repeat(14).as_str(),
            "x".repeat(17).as_str(),
        ]
        .join(" ");
        assert_eq!(n.normalize(&near_misses), near_misses);
    }

    /// `normalize` splits and strips before lower-casing each word; that equals Python's
    /// lower-then-split only if lower-casing never changes whether a char is whitespace or
    /// stripped punctuation, and lower-casing already lower-case text changes nothing.
    #[test]
    fn lowercase_preserves_whitespace_and_punctuation_and_is_idempotent() {
        for c in '\0'..=char::MAX {
            for lower in c.to_lowercase() {
                assert_eq!(
                    is_python_whitespace(lower),
                    is_python_whitespace(c),
                    "{c:?}"
                );
                for p in Profile::ALL {
                    assert_eq!(p.strips(lower), p.strips(c), "{c:?} {p:?}");
                }
                assert!(lower.to_lowercase().eq([lower]), "{c:?} → {lower:?}");
            }
        }
    }
}
