//! Generated data: pattern rows and queries shaped like the real ones (3–8 word Italian/English
//! questions, ~20 categories, metadata on most rows), from a fixed seed so every run measures
//! the same data.

use std::{collections::HashSet, sync::LazyLock};

use chrono::{DateTime, TimeZone, Utc};
use hotplane::{
    model::{PatternRow, PatternStatus},
    normalize::Normalizer,
};

/// A small, fast, deterministic generator (SplitMix64). Not for anything but test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; different `stream`s give independent sequences.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 < n < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A random element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A random word of a word list.
    pub fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[self.below(words.len())]
    }
}

/// Words a query starts with.
const OPENERS_TEXT: &str = "quali quanti mostra mostrami dammi elenca come dove perché quando visualizza controlla \
     apri cerca trova verifica show list what how which where why get find check open display \
     count give";
static OPENERS: LazyLock<Vec<&str>> = LazyLock::new(|| OPENERS_TEXT.split_whitespace().collect());

/// Words the rest of a query is made of.
const WORDS_TEXT: &str = "sono i gli le il lo la un una di del della dei nel nella per con su tra da e o non tutti \
     tutte ultimo ultima ultimi prossimo nuovi attivi falliti bloccati lenti aperti chiusi \
     workflow processo processi errore errori log cliente clienti fattura fatture ordine \
     ordini utente utenti server database backup report ticket richieste pagamenti scadenze \
     contratti fornitori magazzino prodotti vendite costi budget progetto progetti task \
     attività email messaggi notifiche documenti file cartella agenda riunione riunioni \
     calendario turni ferie stato esecuzione esecuzioni durata media totale numero elenco \
     dettagli sistema rete memoria disco cpu coda code job pipeline deploy release versione \
     modulo the a an of in on for with from to and or all my our last next new active failed \
     running pending open closed slow recent today's weekly monthly status errors logs \
     customers invoices orders users servers backups reports tickets requests payments \
     deadlines contracts suppliers stock products sales costs projects tasks emails messages \
     alerts documents files meetings calendar shifts runs duration average total list details \
     system network memory disk queue jobs pipelines deployments version 2024 2025 q1 q2 q3 \
     q4 milano roma torino napoli europe italy";
static WORDS: LazyLock<Vec<&str>> = LazyLock::new(|| WORDS_TEXT.split_whitespace().collect());

/// The 20 categories patterns are learned into.
const CATEGORIES_TEXT: &str = "workflow_status workflow_errors error_logs customer_info invoice_lookup order_status \
     user_admin server_health backup_status reporting ticketing payments deadlines contracts \
     inventory sales_stats cost_analysis project_status calendar notifications";
static CATEGORIES: LazyLock<Vec<&str>> =
    LazyLock::new(|| CATEGORIES_TEXT.split_whitespace().collect());

/// The normalized texts of generated rows (to build queries that surely miss).
pub type Known = HashSet<String>;

/// A generated data set: rows as they would be stored, ids `1..=rows.len()` in order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Every row: `served` approved and enabled, then a few pending or disabled ones.
    pub rows: Vec<PatternRow>,
    /// How many rows are served.
    pub served: usize,
}

impl Dataset {
    /// `served` served rows plus 5% rows that are not served (pending or disabled), all with
    /// distinct normalized texts. Deterministic for a seed.
    pub fn generate(served: usize, seed: u64, normalizer: &Normalizer) -> Dataset {
        let unserved = served / 20;
        let total = served + unserved;
        let mut rng = Rng::new(seed, 1);
        let mut seen: Known = HashSet::with_capacity(total);
        let mut rows = Vec::with_capacity(total);
        let epoch = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        while rows.len() < total {
            let raw = sentence(&mut rng, true);
            let normalized = normalizer.normalize(&raw);
            if normalized.chars().count() < 3 || !seen.insert(normalized.clone()) {
                continue;
            }
            let id = rows.len() as i64 + 1;
            let is_served = rows.len() < served;
            rows.push(row(&mut rng, id, raw, normalized, is_served, epoch));
        }
        Dataset { rows, served }
    }

    /// The served rows.
    pub fn served_rows(&self) -> &[PatternRow] {
        &self.rows[..self.served]
    }

    /// Normalized texts of every row.
    pub fn known(&self) -> Known {
        self.rows
            .iter()
            .map(|r| r.normalized_pattern.clone())
            .collect()
    }
}

/// A row with realistic values: confidence 0.9–1, usage counts, metadata on ~70% of rows.
fn row(
    rng: &mut Rng,
    id: i64,
    pattern: String,
    normalized: String,
    served: bool,
    epoch: DateTime<Utc>,
) -> PatternRow {
    let category = rng.word(&CATEGORIES);
    let times_used = rng.below(2000) as i64;
    let times_correct = if times_used == 0 {
        0
    } else {
        rng.below(times_used as usize + 1) as i64
    };
    let created_at = epoch + chrono::Duration::seconds(rng.below(30_000_000) as i64);
    let metadata = match rng.below(10) {
        0..=4 => serde_json::json!({
            "action": format!("{category}_{}", rng.word(&["list", "show", "count", "open"])),
            "params": { "limit": 10 + rng.below(90) },
        }),
        5 | 6 => {
            serde_json::json!({ "response": format!("Ecco {} per {category}.", rng.word(&WORDS)) })
        }
        _ => serde_json::Value::Null,
    };
    let (enabled, status) = if served {
        (true, PatternStatus::Approved)
    } else if rng.chance(0.5) {
        (true, PatternStatus::Pending)
    } else {
        (false, PatternStatus::Disabled)
    };
    PatternRow {
        id,
        pattern,
        normalized_pattern: normalized,
        category: category.to_owned(),
        confidence: 0.9 + rng.unit() * 0.1,
        times_used,
        times_correct,
        accuracy: if times_used == 0 {
            0.0
        } else {
            times_correct as f64 / times_used as f64
        },
        created_at,
        last_used_at: None,
        created_by: if rng.chance(0.8) { "llm" } else { "manual" }.to_owned(),
        enabled,
        status,
        metadata: (!metadata.is_null()).then(|| metadata.to_string()),
        updated_at: created_at,
        revision: 0,
    }
}

/// A 3–8 word query. `styled`: capitalized, with a question mark now and then, as users type.
fn sentence(rng: &mut Rng, styled: bool) -> String {
    let words = 3 + rng.below(6);
    let mut s = String::with_capacity(words * 8);
    s.push_str(rng.word(&OPENERS));
    for _ in 1..words {
        s.push(' ');
        s.push_str(rng.word(&WORDS));
    }
    if styled {
        if let Some(first) = s.get(..1) {
            let upper = first.to_uppercase();
            s.replace_range(..1, &upper);
        }
        match rng.below(4) {
            0 => s.push('?'),
            1 => s.push_str(" ?"),
            _ => {}
        }
    }
    s
}

/// `n` queries that match served rows, typed differently from how they were learned (case,
/// spacing, punctuation), so normalization has real work to do. Deterministic.
pub fn hit_queries(data: &Dataset, n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed, 2);
    (0..n)
        .map(|_| {
            let row = rng.pick(data.served_rows());
            let mut q = String::with_capacity(row.pattern.len() + 8);
            if rng.chance(0.3) {
                q.push_str("  ");
            }
            for (i, word) in row.pattern.split(' ').enumerate() {
                if i > 0 {
                    q.push_str(if rng.chance(0.1) { "  " } else { " " });
                }
                if rng.chance(0.15) {
                    q.push_str(&word.to_uppercase());
                } else {
                    q.push_str(word);
                }
            }
            match rng.below(5) {
                0 => q.push('!'),
                1 => q.push_str("?!"),
                _ => {}
            }
            q
        })
        .collect()
}

/// `n` queries shaped like the others that match no generated row. Deterministic.
pub fn miss_queries(known: &Known, normalizer: &Normalizer, n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed, 3);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let q = sentence(&mut rng, true);
        if !known.contains(&normalizer.normalize(&q)) {
            out.push(q);
        }
    }
    out
}

/// Hits and misses interleaved at random, half each.
pub fn mixed_queries(hits: &[String], misses: &[String], seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed, 4);
    let (mut h, mut m) = (hits.iter(), misses.iter());
    let mut out = Vec::with_capacity(hits.len());
    while out.len() < hits.len() {
        let next = if rng.chance(0.5) { h.next() } else { m.next() };
        match next {
            Some(q) => out.push(q.clone()),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotplane::normalize::Profile;

    #[test]
    fn data_is_deterministic_valid_and_queries_hit_or_miss() {
        let norm = Normalizer::new(Profile::Default, None);
        let a = Dataset::generate(500, 7, &norm);
        let b = Dataset::generate(500, 7, &norm);
        assert_eq!(a.rows.len(), 525);
        assert_eq!(a.rows, b.rows);
        for r in &a.rows {
            r.check_invariants().expect("generated rows are valid");
            assert!((3..=8).contains(&r.pattern.split(' ').filter(|w| *w != "?").count()));
        }
        let known = a.known();
        let served: HashSet<_> = a
            .served_rows()
            .iter()
            .map(|r| r.normalized_pattern.clone())
            .collect();
        for q in hit_queries(&a, 200, 7) {
            assert!(served.contains(&norm.normalize(&q)), "{q}");
        }
        for q in miss_queries(&known, &norm, 200, 7) {
            assert!(!known.contains(&norm.normalize(&q)), "{q}");
        }
        let categories: HashSet<_> = a.rows.iter().map(|r| r.category.as_str()).collect();
        assert!(categories.len() >= 18);
    }
}
