//! store-choice: picks the embedded durable store for lead events by measuring.
//!
//! Candidates, each given the same workload in one run:
//! - `sqlite`      rusqlite (bundled), WAL, synchronous=FULL, rowid table, no secondary index
//! - `sqlite-uniq` the same plus a UNIQUE index on the 16-byte fingerprint BLOB
//! - `redb`        key = fingerprint, value = compact encoding; default Durability::Immediate,
//!                 default ConcurrencyMode::ExclusiveWriter
//! - `redb-shared` the same with ConcurrencyMode::SingleWriter (other processes may read)
//! - `fjall`       key = fingerprint, value = compact encoding; WriteBatch with PersistMode::SyncAll
//!
//! Measured per candidate:
//! 1. durable batch write: N batches, each one transaction fsynced before the call returns
//!    (per-batch p50/p99 ms, rows/s over the time spent in the write calls);
//! 2. rebuild: close, reopen (open ms) and read back every fingerprint (keys/s, page cache warm);
//! 3. allocated disk size, still open after writing and after close;
//! 4. multi-process: while this process holds the store open (idle, then inside an open write
//!    transaction) it runs itself with `--probe-open KIND PATH`, which tries to open and read
//!    (and, for SQLite, write) the store, and prints what happened.
//!
//! Each store has a 64 MiB cache. Run (standalone crate, not in the leadstream workspace):
//!   CARGO_TARGET_DIR=/work/target-store cargo run --release -- \
//!       --batches 20 --batch-size 50000 --dir /tmp/store-choice [--only sqlite,redb,fjall]

use std::{error::Error, os::unix::fs::MetadataExt, path::Path, process, time::Duration, time::Instant};

type Res<T> = Result<T, Box<dyn Error>>;
const KINDS: [&str; 5] = ["sqlite", "sqlite-uniq", "redb", "redb-shared", "fjall"];
const CACHE: usize = 64 << 20;
const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");
const EVENT_TYPES: [&str; 4] = ["lead.created.web", "lead.call.answer", "lead.form.submit", "lead.sms.replied"];

struct Row { org: i64, event_type: &'static str, phone: String, occurred_at_ms: i64, metadata: String, ingested_at_ms: i64, fp: [u8; 16] }

/// splitmix64: a bijection on u64, so fingerprints built from distinct counters are distinct.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn gen_batch(batch: usize, size: usize) -> Vec<Row> {
    (0..size).map(|i| {
        let n = (batch * size + i) as u64;
        let (a, b) = (mix(2 * n), mix(2 * n + 1));
        let mut fp = [0u8; 16];
        fp[..8].copy_from_slice(&a.to_be_bytes());
        fp[8..].copy_from_slice(&b.to_be_bytes());
        let t = 1_750_000_000_000 + n as i64 * 7;
        Row {
            org: (b % 50) as i64 + 1,
            event_type: EVENT_TYPES[(a % 4) as usize],
            phone: format!("+1555{:07}", b % 10_000_000),
            occurred_at_ms: t,
            metadata: format!(r#"{{"src":"fb","campaign":{:04},"score":0.{:02}}}"#, a % 10_000, b % 100),
            ingested_at_ms: t + 350,
            fp,
        }
    }).collect()
}

/// Value for the key-value stores: 3 x i64 LE, then u8-len event_type, u8-len phone, u16-len metadata.
fn encode(r: &Row, out: &mut Vec<u8>) {
    out.clear();
    for v in [r.org, r.occurred_at_ms, r.ingested_at_ms] { out.extend_from_slice(&v.to_le_bytes()); }
    for s in [r.event_type, r.phone.as_str()] { out.push(s.len() as u8); out.extend_from_slice(s.as_bytes()); }
    out.extend_from_slice(&(r.metadata.len() as u16).to_le_bytes());
    out.extend_from_slice(r.metadata.as_bytes());
}

enum Store { Sqlite(rusqlite::Connection), Redb(redb::Database), Fjall(fjall::Database, fjall::Keyspace) }

fn redb_mode(kind: &str) -> redb::ConcurrencyMode {
    if kind == "redb-shared" { redb::ConcurrencyMode::SingleWriter } else { redb::ConcurrencyMode::ExclusiveWriter }
}

fn sqlite_conn(path: &Path) -> Res<rusqlite::Connection> {
    let c = rusqlite::Connection::open(path.join("events.sqlite"))?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    c.execute_batch(&format!("PRAGMA synchronous=FULL; PRAGMA cache_size=-{};", CACHE >> 10))?;
    Ok(c)
}

impl Store {
    fn open(kind: &str, path: &Path) -> Res<Store> {
        Ok(match kind {
            "sqlite" | "sqlite-uniq" => {
                let c = sqlite_conn(path)?;
                c.execute_batch("CREATE TABLE IF NOT EXISTS events(org INTEGER NOT NULL, event_type TEXT NOT NULL, \
                    phone TEXT NOT NULL, occurred_at_ms INTEGER NOT NULL, metadata TEXT NOT NULL, \
                    ingested_at_ms INTEGER NOT NULL, fp BLOB NOT NULL);")?;
                if kind == "sqlite-uniq" { c.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS events_fp ON events(fp);")?; }
                Store::Sqlite(c)
            }
            "redb" | "redb-shared" => Store::Redb(redb::Builder::new().set_cache_size(CACHE)
                .set_concurrency_mode(redb_mode(kind)).create(path.join("events.redb"))?),
            "fjall" => {
                let db = fjall::Database::builder(path.join("fjall")).cache_size(CACHE as u64).open()?;
                let ks = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
                Store::Fjall(db, ks)
            }
            _ => return Err(format!("unknown candidate {kind}").into()),
        })
    }

    /// One durable transaction per batch: returns only after the commit is fsynced.
    fn write_batch(&mut self, rows: &[Row]) -> Res<()> {
        let mut buf = Vec::with_capacity(128);
        match self {
            Store::Sqlite(c) => {
                let tx = c.transaction()?;
                {
                    let mut st = tx.prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
                    for r in rows {
                        st.execute(rusqlite::params![r.org, r.event_type, r.phone, r.occurred_at_ms, r.metadata, r.ingested_at_ms, &r.fp[..]])?;
                    }
                }
                tx.commit()?;
            }
            Store::Redb(db) => {
                let txn = db.begin_write()?; // Durability::Immediate is the default
                {
                    let mut t = txn.open_table(TABLE)?;
                    for r in rows { encode(r, &mut buf); t.insert(&r.fp[..], &buf[..])?; }
                }
                txn.commit()?;
            }
            Store::Fjall(db, ks) => {
                let mut b = db.batch().durability(Some(fjall::PersistMode::SyncAll));
                for r in rows { encode(r, &mut buf); b.insert(ks, &r.fp[..], &buf[..]); }
                b.commit()?;
            }
        }
        Ok(())
    }

    /// What the in-memory dedup index needs at start-up: every fingerprint.
    fn fingerprints(&self) -> Res<Vec<[u8; 16]>> {
        let mut out = Vec::new();
        let fp16 = |b: &[u8]| -> [u8; 16] { b.try_into().expect("16-byte fingerprint") };
        match self {
            Store::Sqlite(c) => {
                let mut st = c.prepare("SELECT fp FROM events")?;
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? { out.push(fp16(r.get_ref(0)?.as_blob()?)); }
            }
            Store::Redb(db) => {
                use redb::{ReadableDatabase, ReadableTable};
                let t = db.begin_read()?.open_table(TABLE)?;
                for e in t.iter()? { out.push(fp16(e?.0.value())); }
            }
            Store::Fjall(_, ks) => for g in ks.iter() { out.push(fp16(&g.key()?)); },
        }
        Ok(out)
    }

    /// Runs `f` while this process holds an open write transaction (where the store has one).
    fn with_write_txn<T>(&mut self, f: impl FnOnce() -> T) -> Res<T> {
        Ok(match self {
            Store::Sqlite(c) => { c.execute_batch("BEGIN IMMEDIATE")?; let v = f(); c.execute_batch("ROLLBACK")?; v }
            Store::Redb(db) => { let txn = db.begin_write()?; let v = f(); txn.abort()?; v }
            Store::Fjall(..) => f(), // plain (non-transactional) fjall database: nothing to hold
        })
    }
}

/// Child-process side of the multi-process check: try to open the store the parent holds.
fn probe(kind: &str, path: &Path) -> Res<()> {
    let t = Instant::now();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    match kind {
        "sqlite" | "sqlite-uniq" => {
            let c = sqlite_conn(path)?;
            c.busy_timeout(Duration::ZERO)?;
            let n: Result<i64, _> = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0));
            println!("open+read: {:?} ({:.0} ms)", n, ms(t));
            let w = c.execute_batch("BEGIN IMMEDIATE; INSERT INTO events VALUES (0,'probe','',0,'{}',0,x'00'); ROLLBACK;");
            println!("write txn: {:?}", w.map(|_| "OK (rolled back)"));
        }
        "redb" | "redb-shared" => {
            use redb::{ReadableDatabase, ReadableTableMetadata};
            let b = { let mut b = redb::Builder::new(); b.set_concurrency_mode(redb_mode(kind)); b };
            let rw = b.create(path.join("events.redb")).map(|_| "OK");
            println!("read-write open: {:?} ({:.0} ms)", rw, ms(t));
            let t = Instant::now();
            let ro = b.open_read_only(path.join("events.redb")).map_err(|e| e.to_string())
                .and_then(|db| (|| -> Res<u64> { Ok(db.begin_read()?.open_table(TABLE)?.len()?) })().map_err(|e| e.to_string()));
            println!("read-only open+read: {:?} ({:.0} ms)", ro.map(|n| format!("OK, {n} rows")), ms(t));
        }
        "fjall" => {
            let r = fjall::Database::builder(path.join("fjall")).open().map(|_| "OK");
            println!("open: {:?} ({:.0} ms; fjall has no read-only open)", r, ms(t));
        }
        _ => return Err(format!("unknown candidate {kind}").into()),
    }
    Ok(())
}

/// Runs this binary with --probe-open, killing it if it hangs for 15 s.
fn spawn_probe(kind: &str, path: &Path) -> String {
    let run = || -> Res<String> {
        let mut child = process::Command::new(std::env::current_exe()?)
            .args(["--probe-open", kind, path.to_str().unwrap()])
            .stdout(process::Stdio::piped()).stderr(process::Stdio::piped()).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline { child.kill()?; child.wait()?; return Ok("HUNG: killed after 15 s".into()); }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        Ok(text.trim_end().lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n"))
    };
    run().unwrap_or_else(|e| format!("      probe failed to run: {e}"))
}

/// Allocated bytes (st_blocks * 512) under `p`.
fn disk_bytes(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if !md.is_dir() { return md.blocks() * 512; }
    std::fs::read_dir(p).map(|d| d.flatten().map(|e| disk_bytes(&e.path())).sum()).unwrap_or(0)
}

struct Outcome { kind: &'static str, p50: f64, p99: f64, rows_s: f64, open_ms: f64, keys_s: f64, mib_open: f64, mib_closed: f64, rows: usize }

fn run(kind: &'static str, batches: usize, size: usize, dir: &Path) -> Res<Outcome> {
    let path = dir.join(kind);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)?;
    let mut store = Store::open(kind, &path)?;
    let mut lat = Vec::with_capacity(batches);
    for b in 0..batches {
        let rows = gen_batch(b, size);
        let t = Instant::now();
        store.write_batch(&rows)?;
        lat.push(t.elapsed().as_secs_f64());
    }
    let mib_open = disk_bytes(&path) as f64 / (1 << 20) as f64;
    println!("  [{kind}] second process, while this one holds the store open (idle):\n{}", spawn_probe(kind, &path));
    let busy = store.with_write_txn(|| spawn_probe(kind, &path))?;
    println!("  [{kind}] second process, while this one is inside a write transaction:\n{busy}");
    drop(store);
    let mib_closed = disk_bytes(&path) as f64 / (1 << 20) as f64;

    let t = Instant::now();
    let store = Store::open(kind, &path)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let fps = store.fingerprints()?;
    let keys_s = fps.len() as f64 / t.elapsed().as_secs_f64();
    if fps.len() != batches * size { return Err(format!("{kind}: read back {} of {} keys", fps.len(), batches * size).into()); }
    if let Store::Sqlite(c) = &store {
        let plan: String = c.query_row("EXPLAIN QUERY PLAN SELECT fp FROM events", [], |r| r.get(3))?;
        println!("  [{kind}] rebuild query plan: {plan}");
    }
    let total: f64 = lat.iter().sum();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1] * 1e3; // nearest rank
    Ok(Outcome { kind, p50: pct(0.50), p99: pct(0.99), rows_s: (batches * size) as f64 / total, open_ms, keys_s, mib_open, mib_closed, rows: batches * size })
}

/// The floor every durable commit pays here: write 4 KiB + fsync, p50 over 50 tries.
fn fsync_floor(dir: &Path) -> Res<f64> {
    use std::io::Write;
    let p = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&p)?;
    let mut v: Vec<f64> = (0..50).map(|_| {
        let t = Instant::now();
        f.write_all(&[7u8; 4096]).and_then(|_| f.sync_all()).expect("fsync probe");
        t.elapsed().as_secs_f64() * 1e3
    }).collect();
    std::fs::remove_file(p)?;
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--probe-open" { return probe(&args[2], Path::new(&args[3])); }
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let batches: usize = opt("--batches").map_or(Ok(20), |v| v.parse())?;
    let size: usize = opt("--batch-size").map_or(Ok(50_000), |v| v.parse())?;
    let dir = std::path::PathBuf::from(opt("--dir").unwrap_or_else(|| "/tmp/store-choice".into()));
    let only = opt("--only");
    let kinds: Vec<&'static str> = KINDS.into_iter().filter(|k| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == *k))).collect();
    std::fs::create_dir_all(&dir)?;
    println!("store-choice: {batches} batches x {size} rows, dir {}, fsync floor (4 KiB write+fsync p50) {:.2} ms",
        dir.display(), fsync_floor(&dir)?);

    let mut res = Vec::new();
    for kind in kinds {
        let t = Instant::now();
        res.push(run(kind, batches, size, &dir)?);
        println!("  [{kind}] done in {:.1} s", t.elapsed().as_secs_f64());
    }
    let base = res.iter().find(|r| r.kind == "sqlite").map(|r| (r.rows_s, r.keys_s, r.mib_closed));
    let x = |v: f64, i: usize| base.map_or("-".into(), |b| format!("{:.2}x", v / [b.0, b.1, b.2][i]));
    println!("\n| candidate | batch p50 ms | batch p99 ms | rows/s | vs sqlite | reopen ms | rebuild keys/s | vs sqlite | MiB open | MiB closed | B/row | vs sqlite |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &res {
        println!("| {} | {:.1} | {:.1} | {:.0} | {} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {:.0} | {} |",
            r.kind, r.p50, r.p99, r.rows_s, x(r.rows_s, 0), r.open_ms, r.keys_s, x(r.keys_s, 1),
            r.mib_open, r.mib_closed, r.mib_closed * (1 << 20) as f64 / r.rows as f64, x(r.mib_closed, 2));
    }
    Ok(())
}
