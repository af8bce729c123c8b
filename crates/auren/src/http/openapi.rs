//! The API description, generated from the handlers' annotations and the answer types
//! (`utoipa`), served at `/openapi.json`. The test suite runs schemathesis against the live
//! service with it: no 5xx, every status documented, every body matching its schema.
//!
//! Types of the pure core (modes, readings, reasons) are described by mirrors of their JSON beside
//! the messages that carry them ([`crate::messages`]), so the core stays free of this crate.

use axum::Json;
use serde::Serialize;
use utoipa::{Modify, OpenApi, ToSchema};

/// An error: RFC 9457 problem details with a stable `reason`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// A URI naming the problem type, derived from `reason`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable; also the outcome label of the request metrics.
    pub reason: String,
    /// For a human; never echoes request bodies, keys or user ids.
    pub detail: String,
    /// Refused samples, at most 100 (422 answers of pushes).
    #[schema(nullable = false)]
    pub rejected: Option<Vec<RejectionDoc>>,
    #[schema(nullable = false)]
    pub rejected_total: Option<u64>,
    /// The dependency that is not ready (`/ready`).
    #[schema(nullable = false)]
    pub dependency: Option<String>,
}

/// One refused sample: where it was in the request and why.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RejectionDoc {
    /// Where the sample was, e.g. `pushes[0].samples[3]` or `metrics[2].data[7]`.
    pub at: String,
    #[schema(nullable = false)]
    pub sample_type: Option<String>,
    pub reason: String,
    pub detail: String,
}

/// Answer to one vendor notification.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct NotificationAnswer {
    /// `accepted`, or `duplicate` when it was logged before.
    pub status: String,
    pub event_id: String,
}

/// Answer to a HealthKit or Health Auto Export push.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PushAnswer {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectionDoc>,
    pub rejected_total: u64,
    /// Sample types not mapped (at most 20 listed).
    pub unsupported: Vec<String>,
    pub unsupported_total: u64,
    pub event_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ChallengeAnswer {
    pub challenge: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct HistoryAnswer {
    pub user_id: String,
    pub modes: Vec<crate::messages::SwitchMessage>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct KeyAnswer {
    pub user_id: String,
    /// Shown once; stored only hashed.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct StatusAnswer {
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ReadyAnswer {
    pub status: String,
    /// Per role (`log`, `store`, `cache`): its backend and status.
    pub checks: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ReloadAnswer {
    pub status: String,
    /// The thresholds now in force.
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// A HealthKit push, or a batch of them (`{"pushes": [...]}`, at most 100).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct HealthKitPushDoc {
    pub user_id: String,
    pub samples: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The two bearer schemes: the admin token, and a user's key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityScheme;
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AUREN Bridge",
        description = "Wearable webhooks in, cognitive modes out. Every error is application/problem+json with a stable `reason`.",
    ),
    paths(
        super::webhooks::oura_handshake,
        super::webhooks::oura,
        super::webhooks::whoop,
        super::webhooks::healthkit,
        super::webhooks::health_auto_export,
        super::users::user_state,
        super::users::user_modes,
        super::events::user_events,
        super::events::admin_events,
        super::users::reload,
        super::users::issue_key,
        super::keys::list_keys,
        super::keys::revoke_key,
        super::admin_webhooks::create,
        super::admin_webhooks::list,
        super::admin_webhooks::delete,
        super::admin_webhooks::attempts,
        super::connect::start,
        super::connect::callback,
        super::connect::disconnect,
        super::connect::list,
        super::health::health,
        super::health::ready,
        openapi_json,
    ),
    components(schemas(
        ProblemDoc, RejectionDoc, crate::messages::ModeDoc, crate::messages::SnapshotDoc,
        crate::messages::ReasonDoc, NotificationAnswer, PushAnswer,
        ChallengeAnswer, HistoryAnswer, KeyAnswer, StatusAnswer, ReadyAnswer, ReloadAnswer,
        HealthKitPushDoc, crate::store::KeyInfo, super::keys::KeyList, super::keys::RevokedKey,
        HealthKitPushDoc, super::admin_webhooks::NewWebhook, super::admin_webhooks::WebhookView,
        super::admin_webhooks::CreatedWebhook, crate::store::WebhookAttempt,
        super::connect::ConnectionList, crate::connect::ConnectionView, crate::connect::BackfillView,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_with_its_errors() {
        let doc = ApiDoc::openapi();
        let json = serde_json::to_value(&doc).unwrap();
        let paths = json["paths"].as_object().unwrap();
        for p in [
            "/webhooks/oura",
            "/webhooks/whoop",
            "/webhooks/healthkit",
            "/webhooks/health-auto-export",
            "/users/{user_id}/state",
            "/users/{user_id}/modes",
            "/admin/reload",
            "/admin/users/{user_id}/keys",
            "/admin/keys/{key_id}",
            "/admin/webhooks",
            "/admin/webhooks/{id}",
            "/admin/webhooks/{id}/attempts",
            "/health",
            "/ready",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(p), "{p} is not described");
        }
        let hk = &paths["/webhooks/healthkit"]["post"]["responses"];
        for status in [
            "200", "400", "401", "403", "408", "413", "422", "429", "503",
        ] {
            assert!(hk.get(status).is_some(), "healthkit {status}");
        }
        assert_eq!(
            hk["401"]["content"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["application/problem+json"]
        );
    }
}
