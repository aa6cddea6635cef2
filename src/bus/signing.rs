//! Bus message signatures: the canonical payload (the text Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"))` writes for the object without
//! `sig`), HMAC-SHA256 over it, and constant-time verification. Pure code.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The bus secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the error branch cannot happen.
        Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The text a signature covers: the message object without `sig`, keys sorted, no whitespace,
/// non-ASCII escaped, exactly as Python writes it with
/// `json.dumps(obj, sort_keys=True, separators=(",", ":"))`:
///
/// - object keys in code-point order, `{"a":1,"b":[true,null]}`;
/// - strings escaped as `\"` `\\` `\n` `\r` `\t` `\b` `\f`, every other character outside
///   printable ASCII (space to `~`) as `\u00e9`, lower-case hex, UTF-16 surrogate pairs above
///   U+FFFF;
/// - integers as written (within 64 bits: larger ones parse as floats and will not match);
///   fractional numbers in Python's `repr` form (`1.5`, `123.0`, `1e-05`, `1e+16`).
///
/// A publisher signs the object it is about to send (without `sig`), then adds
/// `"sig": hex(HMAC-SHA256(secret, canonical))`; a receiver recomputes the text from the object
/// it received, so key order and spacing on the wire do not matter.
pub fn canonical(object: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_object(&mut out, object, true);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, false),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, skip_sig: bool) {
    // serde_json's map is a BTreeMap (no preserve_order feature): keys come sorted by bytes,
    // and UTF-8 byte order is code-point order, Python's sort order.
    out.push('{');
    let mut first = true;
    for (k, v) in map {
        if skip_sig && k == "sig" {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip (Rust's `{:e}` gives the same
/// digits), in fixed notation when the decimal exponent is in -5 < exp < 16, else scientific
/// with a signed, at-least-two-digit exponent.
fn python_float(f: f64) -> String {
    let sci = format!("{f:e}"); // e.g. "-1.2345e3", "1e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-5 < exp && exp < 16) {
        let mut m = digits[..1].to_owned();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if (point as usize) >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Hex HMAC-SHA256 of `text`.
pub fn sign(secret: &Secret, text: &str) -> String {
    let mut mac = secret.mac();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `sig` (hex) is the HMAC of `text`, compared in constant time.
pub fn verify(secret: &Secret, text: &str, sig: &str) -> bool {
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    let mut mac = secret.mac();
    mac.update(text.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The wire text of a message built from `object`: signed (a `sig` field added) when a secret
/// is given. The text is itself canonical JSON.
pub fn seal(mut object: Map<String, Value>, secret: Option<&Secret>) -> String {
    object.remove("sig");
    if let Some(secret) = secret {
        let sig = sign(secret, &canonical(&object));
        object.insert("sig".into(), Value::String(sig));
    }
    let mut out = String::with_capacity(256);
    write_object(&mut out, &object, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// Expected texts produced by CPython 3 with
    /// `json.dumps(obj, sort_keys=True, separators=(",", ":"))`.
    #[test]
    fn canonical_text_is_what_python_writes() {
        let v: Value = serde_json::from_str(
            r#"{"b":1,"a":[1,2.5,null,true],"é":"ü\u2028\n\t\"\\\u0001\u007f😀","sig":"x"}"#,
        )
        .expect("json");
        assert_eq!(
            canonical(&obj(v)),
            r#"{"a":[1,2.5,null,true],"b":1,"\u00e9":"\u00fc\u2028\n\t\"\\\u0001\u007f\ud83d\ude00"}"#
        );
        let v: Value = serde_json::from_str(
            r#"{"x":1e16,"y":1e15,"z":0.0001,"w":0.00001,"v":-0.0,"u":123.0,"t":1.5e-7,
                "s":2.5e300,"r":12345678901234567890,"q":-5,"p":{"z":{},"a":[]},
                "o":1.2345678901234568e+17,"n":0.30000000000000004,"m":1700000000.123}"#,
        )
        .expect("json");
        assert_eq!(
            canonical(&obj(v)),
            r#"{"m":1700000000.123,"n":0.30000000000000004,"o":1.2345678901234568e+17,"p":{"a":[],"z":{}},"q":-5,"r":12345678901234567890,"s":2.5e+300,"t":1.5e-07,"u":123.0,"v":-0.0,"w":1e-05,"x":1e+16,"y":1000000000000000.0,"z":0.0001}"#
        );
    }

    #[test]
    fn hmac_matches_python() {
        // python: hmac.new(b"s3cret", b'{"action":"reload","pattern_id":1}', hashlib.sha256)
        let s = Secret::new("s3cret");
        let text = r#"{"action":"reload","pattern_id":1}"#;
        let sig = "e417cffa688c378b26cb6e4549eaac58dc7a6216119c3c1abc9a5b856addf20b";
        assert_eq!(sign(&s, text), sig);
        assert!(verify(&s, text, sig));
        assert!(!verify(&s, text, &sig.replace('e', "f")));
        assert!(!verify(&s, text, "not hex"));
        assert!(!verify(&Secret::new("other"), text, sig));
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
