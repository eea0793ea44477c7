//! `[org_limits]`: what one organization may have at most. Past a limit a create is
//! 409 naming it, and nothing is made.

use crate::api::Api;
use crate::support::TestServer;
use serde_json::json;

const ORG: i64 = 61;

#[tokio::test]
async fn every_create_past_its_org_limit_is_409_naming_it() {
    let s = TestServer::builder()
        .config(
            "[delivery]\nallow_private_targets = true\n\
             [org_limits]\nendpoints = 3\ncampaigns = 1\nsends_per_campaign = 1\n\
             triggers = 1\nactions_per_trigger = 1\naudience = 2\n",
        )
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let names = |r: &crate::support::Reply, key: &str| {
        assert_eq!(r.status, 409, "{}", r.body);
        let e = r.body["error"].as_str().unwrap();
        assert!(e.contains(&format!("org_limits.{key}")), "{e}");
    };
    let e1 = api.endpoint("https://a.example.com/1").await;
    api.endpoint("https://a.example.com/2").await;

    let c = api
        .post(
            "/api/v1/campaigns",
            &json!({"name": "one", "endpointId": e1}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let c = c.body["id"].as_i64().unwrap();
    names(
        &api.post(
            "/api/v1/campaigns",
            &json!({"name": "two", "endpointId": e1}),
        )
        .await,
        "campaigns",
    );

    let send =
        json!({"scheduledFor": "2030-01-01T00:00:00Z", "templateName": "t", "language": "en"});
    let path = format!("/api/v1/campaigns/{c}/sends");
    assert_eq!(api.post(&path, &send).await.status, 201);
    names(&api.post(&path, &send).await, "sends_per_campaign");

    let audience = format!("/api/v1/campaigns/{c}/audience");
    let leads = json!([{"phoneE164": "+14155550100"}, {"phoneE164": "+14155550101"}]);
    assert_eq!(api.post(&audience, &leads).await.status, 200);
    names(
        &api.post(&audience, &json!([{"phoneE164": "+14155550102"}]))
            .await,
        "audience",
    );

    let t = api
        .post(
            "/api/v1/triggers",
            &json!({"type": "participant_confirmed", "name": "t"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let t = t.body["id"].as_i64().unwrap();
    names(
        &api.post(
            "/api/v1/triggers",
            &json!({"type": "message_sent", "name": "u"}),
        )
        .await,
        "triggers",
    );
    let actions = format!("/api/v1/triggers/{t}/actions");
    let action = |n: u8| json!({"type": "webhook", "url": format!("https://b.example.com/{n}")});
    // The action's endpoint is the third: the endpoint limit is reached with it.
    assert_eq!(api.post(&actions, &action(1)).await.status, 201);
    names(&api.post(&actions, &action(2)).await, "actions_per_trigger");
    names(
        &api.post(
            "/api/webhooks/create",
            &json!({"webhook": "https://a.example.com/4"}),
        )
        .await,
        "endpoints",
    );
    let listed = api.get("/api/webhooks/get").await.body;
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "nothing past a limit was made"
    );
}
