//! Audience uploads: CSV (a header row naming `phone`, optionally `external_id`; every
//! other column a string variable) or a JSON array of `{phoneE164, externalId?,
//! variables?}`. Rows are read one at a time and handed on in chunks, so an upload of
//! a million rows is never held whole: a CSV is parsed as it streams in, a JSON array
//! element by element.
//!
//! Phones are normalized exactly as lead events are. A row with a bad phone, a wrong
//! number of fields, an oversized externalId or variables is a reject, never an
//! error for the whole upload; the first [`MAX_REJECTS_LISTED`] are listed.

use super::store::AudienceRow;
use crate::delivery::store::DbError;
use leadstream_pipeline::PhoneNormalizer;
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Read;

/// Rows handed to the store at once, at most.
pub const CHUNK_ROWS: usize = 5_000;
/// Bytes of rows (externalIds and variables) handed to the store at once, at most:
/// what an upload holds besides the row being read.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Rejects listed in an answer at most.
pub const MAX_REJECTS_LISTED: usize = 50;
/// Longest externalId.
pub const MAX_EXTERNAL_ID: usize = 256;
/// Largest variables object, encoded.
pub const MAX_VARIABLES_BYTES: usize = 8 * 1024;

/// One rejected row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowReject {
    /// 1-based, the header row not counted.
    pub row: u64,
    /// The row's phone as sent.
    pub value: String,
    pub reason: String,
}

/// What an upload did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct UploadTally {
    /// Rows read (`accepted + duplicates + rejected`).
    pub received: u64,
    /// Distinct leads the upload added to the audience.
    pub accepted: u64,
    /// Rows whose phone an earlier row or the audience already had.
    pub duplicates: u64,
    pub rejected: u64,
    /// The first 50 rejected rows.
    pub rejects: Vec<RowReject>,
}

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The upload as a whole is not one we read: nothing of it was stored.
    #[error("{0}")]
    Invalid(String),
    /// Reading the body failed part-way (its cause is with the caller).
    #[error("reading the upload: {0}")]
    Body(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Collects rows into chunks for `store`, which merges one and answers how many
/// phones were new to the audience.
struct Loader<S> {
    normalizer: PhoneNormalizer,
    store: S,
    chunk: Vec<AudienceRow>,
    chunk_bytes: usize,
    tally: UploadTally,
}

impl<S: FnMut(&[AudienceRow]) -> Result<u64, DbError>> Loader<S> {
    fn new(normalizer: PhoneNormalizer, store: S) -> Self {
        Self {
            normalizer,
            store,
            chunk: Vec::with_capacity(CHUNK_ROWS),
            chunk_bytes: 0,
            tally: UploadTally::default(),
        }
    }

    fn reject(&mut self, value: impl Into<String>, reason: impl Into<String>) {
        self.tally.rejected += 1;
        if self.tally.rejects.len() < MAX_REJECTS_LISTED {
            self.tally.rejects.push(RowReject {
                row: self.tally.received,
                value: value.into(),
                reason: reason.into(),
            });
        }
    }

    /// One row: its phone as sent, its externalId, its variables object.
    fn row(
        &mut self,
        phone: &str,
        external_id: Option<String>,
        variables: &Map<String, Value>,
    ) -> Result<(), DbError> {
        self.tally.received += 1;
        let Some(p) = self.normalizer.normalize(phone) else {
            self.reject(phone, "invalid phoneE164");
            return Ok(());
        };
        if external_id
            .as_ref()
            .is_some_and(|e| e.chars().count() > MAX_EXTERNAL_ID)
        {
            self.reject(
                phone,
                format!("externalId over {MAX_EXTERNAL_ID} characters"),
            );
            return Ok(());
        }
        let variables = serde_json::to_string(variables).unwrap_or_else(|_| "{}".into());
        if variables.len() > MAX_VARIABLES_BYTES {
            self.reject(
                phone,
                format!("variables over {} KB encoded", MAX_VARIABLES_BYTES / 1024),
            );
            return Ok(());
        }
        self.chunk_bytes += variables.len() + external_id.as_ref().map_or(0, String::len);
        self.chunk.push(AudienceRow {
            phone: p,
            external_id: external_id.filter(|e| !e.is_empty()),
            variables,
        });
        if self.chunk.len() >= CHUNK_ROWS || self.chunk_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DbError> {
        if !self.chunk.is_empty() {
            self.tally.accepted += (self.store)(&self.chunk)?;
            self.chunk.clear();
            self.chunk_bytes = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<UploadTally, DbError> {
        self.flush()?;
        let t = &mut self.tally;
        t.duplicates = t.received - t.rejected - t.accepted;
        Ok(self.tally)
    }
}

/// Most bytes of one CSV row (its fields as read): a lead is a phone, an externalId
/// of at most 256 characters and at most 8 KB of variables, so a longer row is
/// refused while it is read and never held (one row of 400 MB once took the server's
/// memory to 1.76 GB before it was refused).
pub const MAX_CSV_ROW_BYTES: usize = 64 * 1024;
/// Most fields of one CSV row.
pub const MAX_CSV_FIELDS: usize = 1024;

/// Reads a CSV upload from `input` as it arrives ([`CsvUpload`] fed from a reader).
///
/// # Errors
/// As [`CsvUpload::push`] and [`CsvUpload::finish`]; [`UploadError::Body`] when
/// `input` fails.
pub fn load_csv(
    mut input: impl Read,
    normalizer: &PhoneNormalizer,
    store: impl FnMut(&[AudienceRow]) -> Result<u64, DbError>,
) -> Result<UploadTally, UploadError> {
    let mut upload = CsvUpload::new(normalizer.clone(), store);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = input.read(&mut buf).map_err(body_error)?;
        if n == 0 {
            return upload.finish();
        }
        upload.push(bytes::Bytes::copy_from_slice(&buf[..n]))?;
    }
}

/// A CSV upload read as its bytes arrive: each [`push`](Self::push) parses the rows
/// the bytes so far complete (storing a chunk whenever one fills) and keeps the rest,
/// so nothing waits on the client between pushes. What it holds is bounded: the
/// bytes pushed and not yet parsed, one row of at most [`MAX_CSV_ROW_BYTES`], and a
/// chunk of rows for the store.
pub struct CsvUpload<S> {
    rows: CsvRows,
    /// The header's column names, once read.
    names: Option<Vec<String>>,
    phone_col: usize,
    ext_col: Option<usize>,
    loader: Loader<S>,
    variables: Map<String, Value>,
}

impl<S: FnMut(&[AudienceRow]) -> Result<u64, DbError>> CsvUpload<S> {
    /// An upload whose rows are normalized by `normalizer` and merged by `store`.
    pub fn new(normalizer: PhoneNormalizer, store: S) -> Self {
        Self {
            rows: CsvRows::new(),
            names: None,
            phone_col: 0,
            ext_col: None,
            loader: Loader::new(normalizer, store),
            variables: Map::new(),
        }
    }

    /// Takes the upload's next bytes and reads the rows they complete.
    ///
    /// # Errors
    /// [`UploadError::Invalid`] for a header without `phone` or over
    /// [`MAX_CSV_ROW_BYTES`] (before anything is stored); [`UploadError::Db`].
    pub fn push(&mut self, bytes: bytes::Bytes) -> Result<(), UploadError> {
        self.rows.queue.push_back(bytes);
        self.drain()
    }

    /// The upload ended: reads its last row and stores what is left.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`UploadError::Invalid`] for an empty upload.
    pub fn finish(mut self) -> Result<UploadTally, UploadError> {
        self.rows.eof = true;
        self.drain()?;
        if self.names.is_none() {
            return Err(empty_csv());
        }
        Ok(self.loader.finish()?)
    }

    fn drain(&mut self) -> Result<(), UploadError> {
        let Self {
            rows,
            names,
            phone_col,
            ext_col,
            loader,
            variables,
        } = self;
        loop {
            let row = match rows.next() {
                Next::NeedMore | Next::End => return Ok(()),
                Next::Row(row) => row,
            };
            let Some(names) = names.as_ref() else {
                let header = header(row)?;
                let find = |wanted: &[&str]| {
                    header
                        .iter()
                        .position(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
                };
                let Some(p) = find(&["phone", "phoneE164", "phone_e164"]) else {
                    return Err(UploadError::Invalid(format!(
                        "the CSV header {:?} has no phone column; the first row must name the columns, e.g. phone,external_id,first_name",
                        header.join(",")
                    )));
                };
                *phone_col = p;
                *ext_col = find(&["external_id", "externalId"]);
                *names = Some(header);
                continue;
            };
            let record = match row {
                CsvRow::Fields(r) => r,
                CsvRow::TooLong { start } => {
                    loader.tally.received += 1;
                    loader.reject(
                        String::from_utf8_lossy(&start).into_owned(),
                        format!(
                            "the row is over {} KB or {MAX_CSV_FIELDS} fields: it was skipped unread",
                            MAX_CSV_ROW_BYTES / 1024
                        ),
                    );
                    continue;
                }
            };
            let field = |i: usize| String::from_utf8_lossy(record.get(i));
            if record.len() != names.len() {
                loader.tally.received += 1;
                let phone = field(*phone_col).into_owned();
                loader.reject(
                    phone,
                    format!(
                        "expected {} fields as in the header, found {}",
                        names.len(),
                        record.len()
                    ),
                );
                continue;
            }
            if std::str::from_utf8(record.bytes).is_err() {
                loader.tally.received += 1;
                loader.reject(field(*phone_col).into_owned(), "the row is not UTF-8");
                continue;
            }
            variables.clear();
            for (i, name) in names.iter().enumerate() {
                if i != *phone_col && Some(i) != *ext_col {
                    variables.insert(name.clone(), Value::String(field(i).into_owned()));
                }
            }
            let phone = field(*phone_col).into_owned();
            let ext = ext_col.map(|i| field(i).trim().to_owned());
            loader.row(&phone, ext, variables)?;
        }
    }
}

/// The column names of a header row.
fn header(row: CsvRow<'_>) -> Result<Vec<String>, UploadError> {
    let names: Vec<String> = match row {
        CsvRow::TooLong { .. } => {
            return Err(UploadError::Invalid(format!(
                "the CSV header row is over {} KB or {MAX_CSV_FIELDS} columns: the first row must name the columns, e.g. phone,external_id,first_name",
                MAX_CSV_ROW_BYTES / 1024
            )))
        }
        CsvRow::Fields(header) => (0..header.len())
            .map(|i| String::from_utf8_lossy(header.get(i)).trim().to_owned())
            .collect(),
    };
    if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
        return Err(empty_csv());
    }
    Ok(names)
}

fn empty_csv() -> UploadError {
    UploadError::Invalid(
        "the CSV is empty: send a header row naming the columns (phone, and optionally external_id), then one row per lead".into(),
    )
}

fn body_error(e: std::io::Error) -> UploadError {
    UploadError::Body(e.to_string())
}

/// One CSV row's fields, as read.
struct CsvRecord<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl CsvRecord<'_> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` (empty past the last).
    fn get(&self, i: usize) -> &[u8] {
        let Some(&end) = self.ends.get(i) else {
            return &[];
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..end]
    }
}

enum CsvRow<'a> {
    Fields(CsvRecord<'a>),
    /// Over [`MAX_CSV_ROW_BYTES`] or [`MAX_CSV_FIELDS`]: read through to its end and
    /// dropped; `start` is its first bytes (at most 32), to name it in the reject.
    TooLong {
        start: Vec<u8>,
    },
}

/// What [`CsvRows::next`] found.
enum Next<'a> {
    Row(CsvRow<'a>),
    /// The bytes pushed so far end inside a row.
    NeedMore,
    /// The upload ended (after its last row).
    End,
}

/// CSV rows from the bytes pushed into `queue` (RFC 4180 quoting, as `csv_core`
/// reads it), each held in fixed buffers: memory stays bounded whatever a row's
/// length. A row cut between two pushes is carried over in `out`.
struct CsvRows {
    queue: std::collections::VecDeque<bytes::Bytes>,
    /// No more bytes will be pushed.
    eof: bool,
    core: csv_core::Reader,
    out: Box<[u8]>,
    ends: Box<[usize]>,
    /// The current row so far: bytes in `out`, field ends in `ends`, and whether it
    /// is over the bounds (then it is read through and dropped).
    outlen: usize,
    endlen: usize,
    too_long: bool,
    scratch: Box<[u8]>,
    scratch_ends: Box<[usize]>,
}

impl CsvRows {
    fn new() -> Self {
        Self {
            queue: std::collections::VecDeque::new(),
            eof: false,
            core: csv_core::Reader::new(),
            out: vec![0; MAX_CSV_ROW_BYTES].into(),
            ends: vec![0; MAX_CSV_FIELDS].into(),
            outlen: 0,
            endlen: 0,
            too_long: false,
            scratch: vec![0; 4096].into(),
            scratch_ends: vec![0; 64].into(),
        }
    }

    /// The next row of what was pushed.
    fn next(&mut self) -> Next<'_> {
        use csv_core::ReadRecordResult as R;
        loop {
            while self.queue.front().is_some_and(bytes::Bytes::is_empty) {
                self.queue.pop_front();
            }
            let input: &[u8] = match self.queue.front() {
                Some(b) => b,
                // csv_core ends the last row at an empty input.
                None if self.eof => &[],
                None => return Next::NeedMore,
            };
            let (res, nin, nout, nend) = if self.too_long {
                // Read through to the row's end, keeping nothing of it.
                self.core
                    .read_record(input, &mut self.scratch, &mut self.scratch_ends)
            } else {
                self.core.read_record(
                    input,
                    &mut self.out[self.outlen..],
                    &mut self.ends[self.endlen..],
                )
            };
            if let Some(b) = self.queue.front_mut() {
                let _ = b.split_to(nin);
            }
            if !self.too_long {
                self.outlen += nout;
                self.endlen += nend;
            }
            match res {
                R::InputEmpty => {}
                R::OutputFull | R::OutputEndsFull => self.too_long = true,
                R::Record => {
                    let (outlen, endlen, too_long) = (self.outlen, self.endlen, self.too_long);
                    (self.outlen, self.endlen, self.too_long) = (0, 0, false);
                    return Next::Row(if too_long {
                        CsvRow::TooLong {
                            start: self.out[..outlen.min(32)].to_vec(),
                        }
                    } else {
                        CsvRow::Fields(CsvRecord {
                            bytes: &self.out[..outlen],
                            ends: &self.ends[..endlen],
                        })
                    });
                }
                R::End => return Next::End,
            }
        }
    }
}

/// Reads a JSON upload, `[{phoneE164, externalId?, variables?}, ...]`, element by
/// element.
///
/// # Errors
/// [`UploadError::Invalid`] when the body is not a JSON array (rows before a syntax
/// error part-way are stored, like a cut-off CSV).
pub fn load_json(
    body: &[u8],
    normalizer: &PhoneNormalizer,
    store: impl FnMut(&[AudienceRow]) -> Result<u64, DbError>,
) -> Result<UploadTally, UploadError> {
    let mut loader = Loader::new(normalizer.clone(), store);
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut db_error = None;
    let seed = Rows {
        loader: &mut loader,
        db_error: &mut db_error,
    };
    let parsed = seed.deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = db_error {
        return Err(UploadError::Db(e));
    }
    if let Err(e) = parsed {
        return Err(UploadError::Invalid(format!(
            "the body must be a JSON array of {{\"phoneE164\": ..., \"externalId\"?: ..., \"variables\"?: {{...}}}}: {e}"
        )));
    }
    Ok(loader.finish()?)
}

struct Rows<'l, S> {
    loader: &'l mut Loader<S>,
    db_error: &'l mut Option<DbError>,
}

impl<'de, S: FnMut(&[AudienceRow]) -> Result<u64, DbError>> DeserializeSeed<'de> for Rows<'_, S> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: FnMut(&[AudienceRow]) -> Result<u64, DbError>> Visitor<'de> for Rows<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of leads")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            let Value::Object(mut o) = v else {
                self.loader.tally.received += 1;
                self.loader
                    .reject(v.to_string(), "a lead must be an object with phoneE164");
                continue;
            };
            let phone = match o.remove("phoneE164") {
                Some(Value::String(p)) => p,
                other => {
                    self.loader.tally.received += 1;
                    let shown = other.map_or_else(|| "null".to_owned(), |v| v.to_string());
                    self.loader.reject(shown, "invalid phoneE164");
                    continue;
                }
            };
            let ext = match o.remove("externalId") {
                None | Some(Value::Null) => None,
                Some(Value::String(e)) => Some(e),
                Some(other) => {
                    self.loader.tally.received += 1;
                    self.loader
                        .reject(phone, format!("externalId must be a string, not {other}"));
                    continue;
                }
            };
            let vars = match o.remove("variables") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m,
                Some(other) => {
                    self.loader.tally.received += 1;
                    self.loader
                        .reject(phone, format!("variables must be an object, not {other}"));
                    continue;
                }
            };
            if let Err(e) = self.loader.row(&phone, ext, &vars) {
                *self.db_error = Some(e);
                // Stop reading: the rest is not stored either.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A store over a map: answers how many phones were new.
    fn store(
        into: &mut HashMap<u64, (Option<String>, String)>,
    ) -> impl FnMut(&[AudienceRow]) -> Result<u64, DbError> + '_ {
        |rows| {
            let mut n = 0;
            for r in rows {
                if into
                    .insert(r.phone.0, (r.external_id.clone(), r.variables.clone()))
                    .is_none()
                {
                    n += 1;
                }
            }
            Ok(n)
        }
    }

    /// A CSV of a header, one good row, a row of `huge` bytes made as it is read (never
    /// held by the test either), and another good row.
    struct HugeRow {
        head: std::io::Cursor<Vec<u8>>,
        huge: usize,
        tail: std::io::Cursor<Vec<u8>>,
    }

    impl Read for HugeRow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.huge > 0 {
                let n = buf.len().min(self.huge);
                buf[..n].fill(b'x');
                self.huge -= n;
                return Ok(n);
            }
            self.tail.read(buf)
        }
    }

    #[test]
    fn a_row_over_the_cap_is_rejected_while_read_and_the_next_rows_are_taken() {
        let normalizer = PhoneNormalizer::default();
        let mut stored = HashMap::new();
        let input = HugeRow {
            head: std::io::Cursor::new(b"phone,first_name\n+14155550100,Ann\n+1415555".to_vec()),
            huge: 50 * 1024 * 1024,
            tail: std::io::Cursor::new(b",x\n\"+14155550102\",\"multi\nline\"\n".to_vec()),
        };
        let t = load_csv(input, &normalizer, store(&mut stored)).unwrap();
        assert_eq!((t.received, t.accepted, t.rejected), (3, 2, 1));
        assert_eq!(t.rejects[0].row, 2);
        assert!(
            t.rejects[0].reason.contains("over 64 KB"),
            "{:?}",
            t.rejects
        );
        assert!(
            t.rejects[0].value.starts_with("+1415555xx"),
            "{:?}",
            t.rejects
        );
        assert_eq!(
            stored[&14155550102].1, r#"{"first_name":"multi\nline"}"#,
            "a quoted field keeps its line break"
        );
    }

    #[test]
    fn csv_rows_collapse_by_phone_and_the_later_row_wins() {
        let n = PhoneNormalizer::new();
        let mut audience = HashMap::new();
        let csv = "external_id,phone,first_name\n\
                   a,+1 555 123 4567,Ann\n\
                   b,not a phone,Bob\n\
                   c,15551234567,Cid\n\
                   d,+447700900123\n\
                   e,+44 7700 900124,\"Eve, Jr\"\n";
        let t = load_csv(csv.as_bytes(), &n, store(&mut audience)).unwrap();
        assert_eq!(
            (t.received, t.accepted, t.duplicates, t.rejected),
            (5, 2, 1, 2)
        );
        assert_eq!(t.rejects[0].row, 2);
        assert_eq!(t.rejects[0].reason, "invalid phoneE164");
        assert_eq!(t.rejects[1].row, 4);
        assert!(t.rejects[1].reason.contains("expected 3 fields"));
        let (ext, vars) = &audience[&15551234567];
        assert_eq!(ext.as_deref(), Some("c"));
        assert_eq!(vars, r#"{"first_name":"Cid"}"#);
        assert_eq!(audience[&447700900124].1, r#"{"first_name":"Eve, Jr"}"#);
    }

    #[test]
    fn rows_cut_anywhere_between_pushes_read_as_when_sent_whole() {
        let n = PhoneNormalizer::new();
        let csv = "external_id,phone,note\n\
                   a,+1 555 123 4567,\"two\nlines, one field\"\n\
                   b,+44 7700 900123,plain\n\
                   c,15551234568,last row without a newline";
        let mut whole = HashMap::new();
        let t_whole = load_csv(csv.as_bytes(), &n, store(&mut whole)).unwrap();
        for cut in [1, 2, 7, 33] {
            let mut pieces = HashMap::new();
            let mut up = CsvUpload::new(n.clone(), store(&mut pieces));
            for chunk in csv.as_bytes().chunks(cut) {
                up.push(bytes::Bytes::copy_from_slice(chunk)).unwrap();
            }
            let t = up.finish().unwrap();
            assert_eq!(
                (t.received, t.accepted, t.rejected),
                (t_whole.received, t_whole.accepted, t_whole.rejected),
                "pushed {cut} bytes at a time"
            );
            assert_eq!(pieces, whole, "pushed {cut} bytes at a time");
        }
        assert_eq!(t_whole.accepted, 3);
        assert_eq!(whole[&15551234567].1, r#"{"note":"two\nlines, one field"}"#);
    }

    #[test]
    fn csv_without_a_phone_column_is_refused_before_storing() {
        let n = PhoneNormalizer::new();
        let mut audience = HashMap::new();
        let e = load_csv("name,number\na,1\n".as_bytes(), &n, store(&mut audience)).unwrap_err();
        assert!(e.to_string().contains("no phone column"), "{e}");
        assert!(audience.is_empty());
        let e = load_csv("".as_bytes(), &n, store(&mut audience)).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn json_rows_are_read_one_by_one_with_rejects() {
        let n = PhoneNormalizer::new();
        let mut audience = HashMap::new();
        let body = br#"[{"phoneE164":"+15551234567","externalId":"x","variables":{"n":1}},
            {"phoneE164":12},{"phoneE164":"+15551234567"},"x",
            {"phoneE164":"+15551234568","variables":[1]}]"#;
        let t = load_json(body, &n, store(&mut audience)).unwrap();
        assert_eq!(
            (t.received, t.accepted, t.duplicates, t.rejected),
            (5, 1, 1, 3)
        );
        assert_eq!(
            t.rejects.iter().map(|r| r.row).collect::<Vec<_>>(),
            [2, 4, 5]
        );
        assert_eq!(audience[&15551234567], (None, "{}".to_owned()));
        let e = load_json(b"{\"a\":1}", &n, store(&mut audience)).unwrap_err();
        assert!(matches!(e, UploadError::Invalid(_)));
    }
}
