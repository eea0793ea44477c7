//! Phone normalization to E.164 (placeholder; being implemented).

/// A normalized E.164 number, held as its digits (country code first) in a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(pub u64);

impl std::fmt::Display for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// Normalizes raw phone strings; cheap to clone and share across threads.
#[derive(Clone, Default)]
pub struct PhoneNormalizer {}

impl PhoneNormalizer {
    pub fn new() -> Self {
        Self {}
    }
    /// Normalizes `raw`, or `None` when it is not a possible number.
    pub fn normalize(&self, raw: &str) -> Option<Phone> {
        let d: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
        if d.len() < 8 || d.len() > 15 { return None; }
        d.parse().ok().map(Phone)
    }
}
