//! Reading request bodies within bounds: size, progress and memory across requests.
//!
//! A body is read only after the credential headers passed what can be checked
//! without it, and every byte held counts against one process-wide budget
//! ([`BodyBudget`], `http.max_body_bytes_in_flight`): a flood of large bodies gets 503
//! with Retry-After instead of memory. A body that stalls for `http.body_timeout` gets
//! 408 and its connection is closed.

use super::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The request-body bytes all requests may hold at once.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes free right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Holds `n` bytes of the budget until the permit is dropped: what a streamed
    /// body keeps in memory at most (an audience upload's buffers).
    ///
    /// # Errors
    /// 503 with `Retry-After` when the budget has not that much free.
    pub fn hold(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        self.take(n)
    }

    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                ApiError::unavailable(
                    "server busy: too many request bodies in flight; retry shortly",
                )
            })
    }
}

/// A body read into memory, holding its share of the [`BodyBudget`] until dropped.
pub struct ReadBody {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

fn too_large(max: usize) -> ApiError {
    const MB: usize = 1024 * 1024;
    // The small bodies of the management routes are KB: "over 0 MB" says nothing.
    let message = if max >= MB {
        format!(
            "request body over {} MB ({max} bytes); split the batch",
            max / MB
        )
    } else {
        format!(
            "request body over {} KB ({max} bytes); send a smaller body",
            max / 1024
        )
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
}

/// Reads the body, refusing as soon as it is known to exceed `max`: from
/// `Content-Length` before reading, or while streaming a chunked body. Nothing past
/// the limit is kept.
///
/// # Errors
/// 413 over `max`, 408 when no bytes arrive for `stall`, 503 when the budget is spent,
/// 400 when the connection fails mid-body.
pub async fn read(
    headers: &HeaderMap,
    mut body: Body,
    max: usize,
    stall: Duration,
    budget: &BodyBudget,
) -> Result<ReadBody, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        discard(&mut body).await;
        return Err(too_large(max));
    }
    let mut held = match declared.map(|n| budget.take(n as usize)).transpose() {
        Ok(h) => h,
        Err(e) => {
            discard(&mut body).await;
            return Err(e);
        }
    };
    let mut reserved = declared.unwrap_or(0) as usize;
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => {
                return Err(ApiError::timeout(format!(
                    "request body stalled: no bytes for {} s; send it faster or in smaller batches",
                    stall.as_secs()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("failed reading the request body: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > max {
            drop(buf);
            discard(&mut body).await;
            return Err(too_large(max));
        }
        if buf.len() + data.len() > reserved {
            let more = buf.len() + data.len() - reserved;
            let p = match budget.take(more) {
                Ok(p) => p,
                Err(e) => {
                    drop(buf);
                    discard(&mut body).await;
                    return Err(e);
                }
            };
            reserved += more;
            match &mut held {
                Some(h) => h.merge(p),
                None => held = Some(p),
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok(ReadBody {
        bytes: buf.freeze(),
        _held: held,
    })
}

/// Reads and drops what a client keeps sending after its request was refused (413,
/// 503), for a
/// bounded time and amount, so that it sees the 413 instead of a connection reset
/// (closing a socket with unread input makes the kernel send RST). Memory stays flat.
async fn discard(body: &mut Body) {
    const MAX_DISCARD: usize = 64 * 1024 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = 0usize;
    while seen < MAX_DISCARD {
        let next = tokio::time::timeout(Duration::from_millis(500), body.frame());
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Ok(Some(Ok(frame)))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Reads a management API's JSON body: at most `max` bytes, within the same
/// progress and memory bounds as every body.
///
/// # Errors
/// As [`read`].
pub async fn read_small(
    s: &super::AppState,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<ReadBody, ApiError> {
    read(headers, body, max, s.limits.body_timeout, &s.budget).await
}

/// Parses `bytes` as `T`, with a 400 that says what is wrong.
///
/// # Errors
/// 400: not JSON, or not the shape `T` wants.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = match e.classify() {
            serde_json::error::Category::Data => format!("invalid request body: {e}"),
            _ => format!("request body is not valid JSON: {e}"),
        };
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    })
}

/// A JSON array read one element at a time, refused as soon as it holds more than
/// `MAX`: what a request's list costs in memory is bounded by `MAX` elements, not by
/// what the body holds.
#[derive(Debug)]
pub struct Capped<T, const MAX: usize>(pub Vec<T>);

impl<'de, T: serde::Deserialize<'de>, const MAX: usize> serde::Deserialize<'de> for Capped<T, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements<T, const MAX: usize>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de>
            for Elements<T, MAX>
        {
            type Value = Capped<T, MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of at most {MAX} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(4096));
                while let Some(x) = seq.next_element()? {
                    if out.len() == MAX {
                        return Err(serde::de::Error::custom(format!("more than {MAX} entries")));
                    }
                    out.push(x);
                }
                Ok(Capped(out))
            }
        }
        d.deserialize_seq(Elements::<T, MAX>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_array_is_refused_past_its_cap_while_it_is_read() {
        let ok: Capped<u8, 3> = serde_json::from_str("[1,2,3]").unwrap();
        assert_eq!(ok.0, [1, 2, 3]);
        let e = serde_json::from_str::<Capped<u8, 3>>("[1,2,3,4,").unwrap_err();
        assert!(e.to_string().contains("more than 3 entries"), "{e}");
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "60".parse().unwrap());
        let first = read(
            &h,
            Body::from(vec![b'x'; 60]),
            1000,
            Duration::from_secs(1),
            &budget,
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(budget.available(), 40);
        let refused = read(
            &h,
            Body::from(vec![b'x'; 60]),
            1000,
            Duration::from_secs(1),
            &budget,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        // A chunked body (no Content-Length) is counted as it arrives.
        let chunked = read(
            &HeaderMap::new(),
            Body::from(vec![b'y'; 30]),
            1000,
            Duration::from_secs(1),
            &budget,
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(budget.available(), 10);
        drop((first, chunked));
        assert_eq!(budget.available(), 100);
    }
}
