//! Statements written once for both backends.
//!
//! The delivery engine, campaigns and domain records run the same statements on the
//! embedded SQLite store and on the shared Postgres database. [`Sql`] is a connection
//! (inside a transaction) of either; a statement is written with SQLite's `?N`
//! placeholders and in the SQL both accept (`INSERT … ON CONFLICT`, `RETURNING`,
//! `COALESCE`); on Postgres the placeholders become `$N` and the prepared statement is
//! cached per connection. Where the dialects differ (bulk rows as `rarray` or
//! `UNNEST`), the caller matches on [`Sql::backend`].
//!
//! Values cross as [`Value`]s and [`Cell`]s: integers of any width, text, bytes,
//! reals. The Postgres schema stores integers as `BIGINT` and flags as `BIGINT` 0/1,
//! as SQLite does, so one statement and one row mapper serve both.

use super::RepoError;
use std::cell::RefCell;
use std::collections::HashMap;

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Something that can be bound to a statement of either backend.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8);

impl Param for usize {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for u64 {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for std::sync::Arc<str> {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl Param for bytes::Bytes {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

/// The parameters of a statement: `args![a, b, c]`.
#[macro_export]
macro_rules! args {
    () => { &[] as &[&dyn $crate::db::sql::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::sql::Param),+] as &[&dyn $crate::db::sql::Param] };
}
pub use args;

/// A text value holding the NUL character: Postgres text cannot store one (SQLSTATE
/// 22021), so the embedded store refuses it too, and a client gets one answer
/// whichever backend it talks to.
#[derive(Debug, thiserror::Error)]
#[error("a text value contains the NUL character, which the shared database cannot store")]
pub struct NulInText;

impl NulInText {
    /// Whether SQLite's error is this refusal.
    pub fn is(e: &rusqlite::Error) -> bool {
        matches!(e, rusqlite::Error::ToSqlConversionFailure(b) if b.is::<NulInText>())
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(r) => ValueRef::Real(r),
            Value::Text(s) if s.contains('\0') => {
                return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(NulInText)))
            }
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match *self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Real(r) => r.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::BOOL
                | Type::FLOAT8
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    postgres::types::to_sql_checked!();
}

/// A value read from a row.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Int(_) => "integer",
            Cell::Real(_) => "real",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "bytes",
        }
    }
}

impl<'a> postgres::types::FromSql<'a> for Cell {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        Ok(match *ty {
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Cell::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Cell::Real(f64::from_sql(ty, raw)?),
            Type::BYTEA => Cell::Blob(raw.to_vec()),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(
        _: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell::Null)
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::BOOL
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }
}

/// A type a column reads as.
pub trait Column: Sized {
    /// `None`: the cell is not of this type.
    fn from_cell(cell: Cell) -> Option<Self>;
    const NAME: &'static str;
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_cell(cell: Cell) -> Option<Self> {
                match cell {
                    Cell::Int(i) => <$t>::try_from(i).ok(),
                    _ => None,
                }
            }
            const NAME: &'static str = stringify!($t);
        }
    )*};
}
int_column!(i64, i32, u32, u16, u8, usize, u64);

impl Column for bool {
    fn from_cell(cell: Cell) -> Option<Self> {
        match cell {
            Cell::Int(i) => Some(i != 0),
            _ => None,
        }
    }
    const NAME: &'static str = "flag";
}
impl Column for f64 {
    fn from_cell(cell: Cell) -> Option<Self> {
        match cell {
            Cell::Real(r) => Some(r),
            Cell::Int(i) => Some(i as f64),
            _ => None,
        }
    }
    const NAME: &'static str = "real";
}
impl Column for String {
    fn from_cell(cell: Cell) -> Option<Self> {
        match cell {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
    const NAME: &'static str = "text";
}
impl Column for Vec<u8> {
    fn from_cell(cell: Cell) -> Option<Self> {
        match cell {
            Cell::Blob(b) => Some(b),
            // SQLite keeps what was bound as text as text.
            Cell::Text(s) => Some(s.into_bytes()),
            _ => None,
        }
    }
    const NAME: &'static str = "bytes";
}
impl<T: Column> Column for Option<T> {
    fn from_cell(cell: Cell) -> Option<Self> {
        match cell {
            Cell::Null => Some(None),
            c => T::from_cell(c).map(Some),
        }
    }
    const NAME: &'static str = T::NAME;
}

/// A row of either backend.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i` as a `T`.
    ///
    /// # Errors
    /// [`RepoError::Type`] when the stored value is not a `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, RepoError> {
        let cell = match self {
            Row::Sqlite(r) => {
                use rusqlite::types::ValueRef;
                match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                }
            }
            Row::Postgres(r) => r.try_get::<_, Cell>(i)?,
        };
        let found = cell.kind();
        T::from_cell(cell).ok_or(RepoError::Type {
            column: i,
            expected: T::NAME,
            found,
        })
    }
}

/// A Postgres connection with its prepared statements.
pub struct PgSession {
    /// `None` only while it is dropped ([`Drop`] below).
    inner: RefCell<Option<PgConn>>,
}

/// The blocking client closes its connection by running its own runtime, which must
/// not happen on an async worker: dropped there, it is closed on a thread of its own.
impl Drop for PgSession {
    fn drop(&mut self) {
        let Some(conn) = self.inner.get_mut().take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(conn));
        }
    }
}

struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl PgSession {
    pub fn new(client: postgres::Client) -> Self {
        Self {
            inner: RefCell::new(Some(PgConn {
                client,
                statements: HashMap::new(),
            })),
        }
    }

    fn conn(&self) -> Result<std::cell::RefMut<'_, PgConn>, RepoError> {
        std::cell::RefMut::filter_map(self.inner.borrow_mut(), Option::as_mut)
            .map_err(|_| RepoError::Backend("a closed database session"))
    }

    /// Runs statements without parameters (`BEGIN`, `SAVEPOINT`).
    ///
    /// # Errors
    /// The server's.
    pub fn batch(&self, sql: &str) -> Result<(), RepoError> {
        Ok(self.conn()?.client.batch_execute(sql)?)
    }

    /// Whether the connection is gone (the writer then opens another).
    pub fn is_closed(&self) -> bool {
        self.conn().is_ok_and(|c| c.client.is_closed())
    }

    /// The client itself, for what [`Sql`] does not cover (arrays, `COPY`).
    ///
    /// # Errors
    /// `f`'s.
    pub fn with_client<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, RepoError> {
        Ok(f(&mut self.conn()?.client)?)
    }

    fn run<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn postgres::types::ToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, RepoError> {
        let mut conn = self.conn()?;
        let PgConn { client, statements } = &mut *conn;
        let statement = match statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = client.prepare(&dollar_placeholders(sql))?;
                statements.insert(sql.to_owned(), s.clone());
                s
            }
        };
        let values: Vec<Value<'_>> = params.iter().map(|p| p.value()).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        Ok(f(client, &statement, &refs)?)
    }
}

/// `?N` (and a bare `?`, numbered in order) as Postgres's `$N`.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut bare = 0;
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '?' || quoted {
            out.push(c);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(char::is_ascii_digit) {
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
        } else {
            bare += 1;
            out.push_str(&bare.to_string());
        }
    }
    out
}

/// Runs `sql` on SQLite (through the statement cache) and hands each row to `each`
/// until it answers false.
fn sqlite_rows(
    c: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
    mut each: impl FnMut(&Row<'_>) -> Result<bool, RepoError>,
) -> Result<(), RepoError> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(|p| p.value())))?;
    while let Some(r) = rows.next()? {
        if !each(&Row::Sqlite(r))? {
            break;
        }
    }
    Ok(())
}

/// A connection of either backend, in the transaction its caller runs in.
#[derive(Clone, Copy)]
pub enum Sql<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgSession),
}

impl<'a> Sql<'a> {
    /// Whether this is the shared database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Sql::Postgres(_))
    }

    /// The SQLite connection, for statements of the embedded store alone.
    ///
    /// # Errors
    /// [`RepoError::Backend`] on Postgres.
    pub fn sqlite(&self) -> Result<&'a rusqlite::Connection, RepoError> {
        match *self {
            Sql::Sqlite(c) => Ok(c),
            Sql::Postgres(_) => Err(RepoError::Backend("an embedded-store statement")),
        }
    }

    /// Runs `sql`; answers the rows it changed.
    ///
    /// # Errors
    /// The backend's.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, RepoError> {
        match self {
            Sql::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.iter().map(|p| p.value())))?),
            Sql::Postgres(s) => s
                .run(sql, params, |c, st, p| c.execute(st, p))
                .map(|n| n as usize),
        }
    }

    /// Runs `sql` and maps each row it answers.
    ///
    /// # Errors
    /// The backend's, or `f`'s.
    pub fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_>) -> Result<T, RepoError>,
    ) -> Result<Vec<T>, RepoError> {
        match self {
            Sql::Sqlite(c) => {
                let mut out = Vec::new();
                sqlite_rows(c, sql, params, |r| {
                    out.push(f(r)?);
                    Ok(true)
                })?;
                Ok(out)
            }
            Sql::Postgres(s) => {
                let rows = s.run(sql, params, |c, st, p| c.query(st, p))?;
                rows.iter().map(|r| f(&Row::Postgres(r))).collect()
            }
        }
    }

    /// The first row `sql` answers, mapped; `None` when there is none.
    ///
    /// # Errors
    /// The backend's, or `f`'s.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, RepoError>,
    ) -> Result<Option<T>, RepoError> {
        match self {
            Sql::Sqlite(c) => {
                let mut f = Some(f);
                let mut out = None;
                sqlite_rows(c, sql, params, |r| {
                    if let Some(f) = f.take() {
                        out = Some(f(r)?);
                    }
                    Ok(false)
                })?;
                Ok(out)
            }
            Sql::Postgres(s) => {
                let rows = s.run(sql, params, |c, st, p| c.query(st, p))?;
                rows.first().map(|r| f(&Row::Postgres(r))).transpose()
            }
        }
    }

    /// The row `sql` answers, mapped.
    ///
    /// # Errors
    /// [`RepoError::NoRow`] when it answers none; the backend's, or `f`'s.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        self.query_opt(sql, params, f)?.ok_or(RepoError::NoRow)
    }

    /// Runs statements without parameters.
    ///
    /// # Errors
    /// The backend's.
    pub fn batch(&self, sql: &str) -> Result<(), RepoError> {
        match self {
            Sql::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Sql::Postgres(s) => s.batch(sql),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
        assert_eq!(dollar_placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
    }

    #[test]
    fn sqlite_round_trips_every_type() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let sql = Sql::Sqlite(&conn);
        sql.batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, r REAL, n INTEGER)")
            .unwrap();
        let none: Option<i64> = None;
        sql.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            args![7u32, "x", vec![1u8, 2], 1.5, none],
        )
        .unwrap();
        let row = sql
            .query_one("SELECT i, s, b, r, n FROM t", args![], |r| {
                Ok((
                    r.get::<u32>(0)?,
                    r.get::<String>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<f64>(3)?,
                    r.get::<Option<i64>>(4)?,
                ))
            })
            .unwrap();
        assert_eq!(row, (7, "x".into(), vec![1, 2], 1.5, None));
        let wrong = sql.query_one("SELECT s FROM t", args![], |r| r.get::<i64>(0));
        assert!(matches!(wrong, Err(RepoError::Type { .. })), "{wrong:?}");
        assert!(matches!(
            sql.query_one("SELECT i FROM t WHERE i = 8", args![], |r| r.get::<i64>(0)),
            Err(RepoError::NoRow)
        ));
    }
}
