//! leadstream's core: the lead-event model, parsing (a validating, non-recursive JSON
//! reader), phone normalization (E.164), validation, the dedup index, the event index
//! the retry policy, webhook signatures and the rules for webhook targets.
//!
//! Everything here is synchronous and free of I/O, so it can be benchmarked and
//! property-tested on its own; `leadstream-connectors` wraps it in servers and stores.

pub mod batch;
pub mod dedup;
pub mod eligibility;
pub mod event;
pub mod index;
pub mod parse;
pub mod phone;
pub mod retry;
pub mod signature;
pub mod target;
pub mod time;

pub use batch::{Prepared, Preparer, Reject, RejectReason, RequestError, Row};
pub use dedup::{DedupIndex, Probe};
pub use event::{lead_hash, EventKey, Fingerprint, OrgId};
pub use index::EventIndex;
pub use parse::Parser;
pub use phone::{Phone, PhoneNormalizer};
