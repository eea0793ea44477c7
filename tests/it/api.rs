//! An organization's API calls over real sockets, as the integration tests make them.

use crate::support::{Call, Reply, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The org's API calls.
pub struct Api<'a> {
    pub s: &'a TestServer,
    pub key: String,
}

impl<'a> Api<'a> {
    pub fn new(s: &'a TestServer, org: i64) -> Self {
        s.org(org);
        Self {
            s,
            key: s.api_key(org).secret,
        }
    }
    /// The org's calls with a key of `scope` (the org exists).
    pub fn scoped(s: &'a TestServer, org: i64, scope: &str) -> Self {
        Self {
            s,
            key: s.scoped_key(org, scope).secret,
        }
    }
    pub fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.s
            .client()
            .request(m, self.s.url(path))
            .bearer_auth(&self.key)
    }
    pub async fn get(&self, path: &str) -> Reply {
        self.req(reqwest::Method::GET, path).reply().await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.req(reqwest::Method::POST, path)
            .json(body)
            .reply()
            .await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.req(reqwest::Method::PATCH, path)
            .json(body)
            .reply()
            .await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.req(reqwest::Method::PUT, path)
            .json(body)
            .reply()
            .await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.req(reqwest::Method::DELETE, path).reply().await
    }
    /// Creates an endpoint; its id.
    pub async fn endpoint(&self, url: &str) -> i64 {
        let r = self
            .post("/api/webhooks/create", &json!({ "webhook": url }))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"]["id"].as_i64().unwrap()
    }
    pub async fn secret(&self, id: i64) -> String {
        let r = self.get(&format!("/api/webhooks/{id}/secret")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["key"].as_str().unwrap().to_owned()
    }
    pub async fn publish(&self, event_type: &str, payload: Value) -> Value {
        let r = self
            .post(
                "/api/v1/outbound-events",
                &json!({"eventType": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        r.body
    }
    /// Every delivery, once none is pending (at most `within`).
    pub async fn settled(&self, within: Duration) -> Vec<Value> {
        let until = Instant::now() + within;
        loop {
            let r = self.get("/api/v1/deliveries?limit=1000").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let all = r.body["data"].as_array().unwrap().clone();
            if all.iter().all(|d| d["state"] != "pending") {
                return all;
            }
            assert!(
                Instant::now() < until,
                "deliveries still pending after {within:?}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// Asserts the list at `path` answers 400 naming `limit` or the cursor for a bad
    /// one of either.
    pub async fn assert_bad_paging_refused(&self, path: &str) {
        for query in ["limit=0", "limit=1001", "limit=x", "limit=2&cursor=nope"] {
            let msg = self
                .get(&format!("{path}?{query}"))
                .await
                .error(400)
                .to_owned();
            let named = if query.contains("cursor") {
                "cursor"
            } else {
                "limit"
            };
            assert!(msg.contains(named), "{path}?{query}: {msg}");
        }
    }

    /// The pages of a bare-array list from `path` on, following its `Link: <…>;
    /// rel="next"` headers until a page has none.
    pub async fn pages_by_link(&self, path: &str) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut path = path.to_owned();
        loop {
            assert!(pages.len() < 100, "{path}: no last page after 100");
            let r = self.req(reqwest::Method::GET, &path).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let link = r
                .headers()
                .get("link")
                .map(|v| v.to_str().unwrap().to_owned());
            let page: Value = r.json().await.unwrap();
            pages.push(page.as_array().expect("a bare array").clone());
            let Some(link) = link else { return pages };
            path = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("Link: <…>; rel=\"next\", not {link:?}"))
                .to_owned();
        }
    }

    /// The pages of a `{data, nextCursor}` list from `path` (with a query) on,
    /// following `nextCursor` until a page's is null.
    pub async fn pages_by_cursor(&self, path: &str) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut next = path.to_owned();
        loop {
            assert!(pages.len() < 100, "{path}: no last page after 100");
            let r = self.get(&next).await;
            assert_eq!(r.status, 200, "{next}: {}", r.body);
            pages.push(r.body["data"].as_array().expect("data").clone());
            match &r.body["nextCursor"] {
                Value::String(c) => next = format!("{path}&cursor={c}"),
                Value::Null if r.body.get("nextCursor").is_some() => return pages,
                other => panic!("nextCursor is {other}: {}", r.body),
            }
        }
    }
    pub async fn detail(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v1/deliveries/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}
