//! Sends one attempt: the HTTP client of the workers.
//!
//! SSRF: unless private targets are allowed, a host name is resolved here
//! ([`CheckedResolver`]), every address it resolves to is checked with
//! [`address_refusal`], and the connection is made only to the addresses that pass —
//! the address checked is the address connected to, so a name that resolves to
//! 127.0.0.1 is refused like the literal. A literal IP host is checked before
//! anything is sent. Redirects are not followed and no proxy is used.

use leadstream_pipeline::retry::{parse_retry_after, AttemptOutcome};
use leadstream_pipeline::target::{address_refusal, literal_ip, port_refusal};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Response bytes kept in the attempt log.
pub const MAX_RESPONSE_BODY: usize = 20 * 1024;

/// The `User-Agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("leadstream/", env!("CARGO_PKG_VERSION"));

/// One attempt to send.
pub struct AttemptRequest<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    /// `webhook-signature`'s value.
    pub signature: &'a str,
    pub body: bytes::Bytes,
    pub timeout: Duration,
}

/// What an attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    /// The first [`MAX_RESPONSE_BODY`] bytes of the answer.
    pub response_body: Option<Vec<u8>>,
    pub retry_after: Option<Duration>,
    /// Why it failed, when it did not get an answer (or was refused).
    pub error: Option<String>,
    pub duration: Duration,
}

/// A refused target (in an error chain from the resolver).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RefusedTarget(String);

/// Resolves with the system resolver and drops non-public addresses.
struct CheckedResolver;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| address_refusal(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let why = all.first().map_or_else(
                    || format!("{host} resolves to no address"),
                    |a| {
                        format!(
                            "refused: {host} resolves to {} ({}); private targets are not allowed (delivery.allow_private_targets)",
                            a.ip(),
                            address_refusal(a.ip()).unwrap_or("not public"),
                        )
                    },
                );
                return Err(
                    Box::new(RefusedTarget(why)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The workers' HTTP client.
#[derive(Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    allow_private: bool,
}

impl DeliveryClient {
    /// A client; `allow_private` skips the address checks.
    ///
    /// # Panics
    /// When the TLS backend cannot start (never with rustls).
    pub fn new(allow_private: bool, max_idle_per_host: usize) -> Self {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        if !allow_private {
            b = b.dns_resolver(Arc::new(CheckedResolver));
        }
        Self {
            http: b.build().expect("building the delivery HTTP client"),
            allow_private,
        }
    }

    /// Why `url` may not be connected to, before any resolution: its port, or its host
    /// written as an address.
    pub fn literal_refusal(&self, url: &str) -> Option<String> {
        if self.allow_private {
            return None;
        }
        if let Some(why) = port_refusal(url) {
            return Some(format!(
                "refused: {why}; other ports are not allowed (delivery.allow_private_targets)"
            ));
        }
        let ip = literal_ip(url)?;
        address_refusal(ip).map(|why| {
            format!("refused: {ip} is {why}; private targets are not allowed (delivery.allow_private_targets)")
        })
    }

    /// Sends `req` and reads at most [`MAX_RESPONSE_BODY`] of the answer.
    pub async fn send(&self, req: AttemptRequest<'_>) -> AttemptResult {
        let started = Instant::now();
        if let Some(why) = self.literal_refusal(req.url) {
            return AttemptResult {
                outcome: AttemptOutcome::Refused,
                response_body: None,
                retry_after: None,
                error: Some(why),
                duration: started.elapsed(),
            };
        }
        let sent = self
            .http
            .post(req.url)
            .timeout(req.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
            .header("webhook-id", req.webhook_id)
            .header("webhook-timestamp", req.timestamp.to_string())
            .header("webhook-signature", req.signature)
            .body(req.body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return failed(&e, started),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        let mut error = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BODY - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_RESPONSE_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    // The status came in time; the rest of the body did not.
                    error = Some(format!(
                        "response body not finished within {:?}",
                        req.timeout
                    ));
                    break;
                }
                Err(e) => {
                    error = Some(format!("reading the response body: {e}"));
                    break;
                }
            }
        }
        AttemptResult {
            outcome: AttemptOutcome::Status(status),
            response_body: Some(body),
            retry_after,
            error,
            duration: started.elapsed(),
        }
    }
}

fn failed(e: &reqwest::Error, started: Instant) -> AttemptResult {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut refused = None;
    let mut detail = e.to_string();
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RefusedTarget>() {
            refused = Some(r.0.clone());
        }
        if s.source().is_none() {
            detail = format!("{e}: {s}");
        }
        source = s.source();
    }
    let (outcome, error) = match refused {
        Some(why) => (AttemptOutcome::Refused, why),
        None if e.is_timeout() => (AttemptOutcome::Timeout, format!("timed out: {detail}")),
        None => (AttemptOutcome::ConnectError, detail),
    };
    AttemptResult {
        outcome,
        response_body: None,
        retry_after: None,
        error: Some(error),
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_and_never_connected() {
        // Something listens, so a connection would succeed if it were made.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = DeliveryClient::new(false, 1);
        let r = client
            .send(AttemptRequest {
                url: &format!("http://localhost:{port}/hook"),
                webhook_id: "msg_1",
                timestamp: 1,
                signature: "v1,x",
                body: bytes::Bytes::from_static(b"{}"),
                timeout: Duration::from_secs(2),
            })
            .await;
        assert_eq!(r.outcome, AttemptOutcome::Refused, "{r:?}");
        assert!(r.error.unwrap().contains("loopback"));
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a connection reached the listener");
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused_before_sending() {
        let client = DeliveryClient::new(false, 1);
        for url in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
        ] {
            let r = client
                .send(AttemptRequest {
                    url,
                    webhook_id: "msg_1",
                    timestamp: 1,
                    signature: "v1,x",
                    body: bytes::Bytes::from_static(b"{}"),
                    timeout: Duration::from_secs(1),
                })
                .await;
            assert_eq!(r.outcome, AttemptOutcome::Refused, "{url}: {r:?}");
        }
        assert!(DeliveryClient::new(true, 1)
            .literal_refusal("http://127.0.0.1/")
            .is_none());
    }
}
