//! Normalizes phone numbers read from stdin, for the differential oracle
//! (`tests/phone_oracle/oracle.py`).
//!
//! Each input line is a JSON string (so inputs may hold newlines); each output
//! line is a JSON string: the E.164 form, or `""` when the input is refused.
//!
//! `cargo run -q -p leadstream-pipeline --example normalize_lines < inputs.jsonl`

use std::io::{self, BufRead, BufWriter, Write};

use leadstream_pipeline::PhoneNormalizer;

fn main() -> io::Result<()> {
    let normalizer = PhoneNormalizer::new();
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let line = line?;
        let raw: String = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}: not a JSON string: {e}", n + 1),
            )
        })?;
        let answer = normalizer
            .normalize(&raw)
            .map(|p| p.to_string())
            .unwrap_or_default();
        serde_json::to_writer(&mut out, &answer)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
