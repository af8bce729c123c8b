//! Connecting a user's Oura or WHOOP account: the redirect to the vendor, the
//! callback the vendor sends the browser back to, disconnecting, and the list of a user's
//! connections with their health.

use super::problem::{ApiQuery, Problem};
use super::users::require_user_or_admin;
use super::{AppState, ClientAddr};
use crate::connect::{vendor_of, ConnectError, ConnectionView};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

fn problem(e: ConnectError) -> Problem {
    let status = match &e {
        ConnectError::UnknownVendor | ConnectError::NotConfigured(_) => StatusCode::NOT_FOUND,
        ConnectError::NotConnected => StatusCode::NOT_FOUND,
        ConnectError::NoTokenKey => StatusCode::CONFLICT,
        ConnectError::Revoked => StatusCode::CONFLICT,
        ConnectError::BadState(_) => StatusCode::BAD_REQUEST,
        ConnectError::Refused(_) | ConnectError::NotFound => StatusCode::BAD_GATEWAY,
        ConnectError::Unavailable(_) | ConnectError::RateLimited(_) => StatusCode::BAD_GATEWAY,
        ConnectError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    Problem::new(status, e.reason(), e.to_string())
}

#[derive(Deserialize)]
pub struct UserQuery {
    user_id: String,
}

/// `GET /connect/{vendor}?user_id=U`: 302 to the vendor's authorize page.
#[utoipa::path(get, path = "/connect/{vendor}", tag = "connections",
    params(("vendor" = String, Path, description = "`oura` or `whoop`"), ("user_id" = String, Query, description = "Our user to connect")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 302, description = "To the vendor's authorize page (Location)"),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or unconfigured vendor", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No AUREN_TOKEN_KEY: tokens cannot be stored", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn start(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(vendor): Path<String>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<Response, Problem> {
    let vendor = vendor_of(&vendor).map_err(problem)?;
    require_user_or_admin(&state, ip, &headers, &q.user_id).await?;
    let url = state
        .inner
        .connections
        .authorize_url(vendor, &q.user_id)
        .map_err(problem)?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    /// Set by the vendor when the user declined.
    #[serde(default)]
    error: Option<String>,
}

/// `GET /connect/{vendor}/callback?code&state`: the browser, back from the vendor. Success is a
/// small page for the user; a refusal is a problem document like every error of the API.
#[utoipa::path(get, path = "/connect/{vendor}/callback", tag = "connections",
    params(("vendor" = String, Path, description = "`oura` or `whoop`"), ("code" = Option<String>, Query, description = "From the vendor"), ("state" = Option<String>, Query, description = "As sent to the vendor"), ("error" = Option<String>, Query, description = "Set by the vendor when access was not granted")),
    responses(
        (status = 200, description = "Connected: a page for the user", body = String, content_type = "text/html"),
        (status = 400, description = "Missing parameter, declined, or a forged, expired or used state", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or unconfigured vendor", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The vendor cannot be connected here yet", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 502, description = "The vendor refused the code or is unavailable", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    Path(vendor): Path<String>,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, Problem> {
    let vendor = vendor_of(&vendor).map_err(problem)?;
    if q.error.is_some() {
        return Err(Problem::bad_request(
            "authorization_declined",
            "the vendor did not grant access (the user declined, or the request was refused)",
        ));
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(Problem::bad_request(
            "missing_parameter",
            "the callback needs both `code` and `state`",
        ));
    };
    state
        .inner
        .connections
        .callback(vendor, code, st)
        .await
        .map_err(problem)?;
    let name = match vendor.as_str() {
        "whoop" => "WHOOP",
        _ => "Oura",
    };
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connected</title></head>\
         <body><h1>{name} is connected</h1><p>AUREN now receives your {name} data. You can close \
         this page.</p></body></html>"
    ))
    .into_response())
}

/// `DELETE /connect/{vendor}?user_id=U`: revoke at the vendor and forget the tokens.
#[utoipa::path(delete, path = "/connect/{vendor}", tag = "connections",
    params(("vendor" = String, Path, description = "`oura` or `whoop`"), ("user_id" = String, Query, description = "Our user to disconnect")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 204, description = "Revoked at the vendor (when it answered) and the tokens deleted"),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or unconfigured vendor, or not connected", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No AUREN_TOKEN_KEY: tokens cannot be stored", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn disconnect(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(vendor): Path<String>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<StatusCode, Problem> {
    let vendor = vendor_of(&vendor).map_err(problem)?;
    require_user_or_admin(&state, ip, &headers, &q.user_id).await?;
    state
        .inner
        .connections
        .disconnect(vendor, &q.user_id)
        .await
        .map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

/// `GET /users/{id}/connections`.
#[utoipa::path(get, path = "/users/{user_id}/connections", tag = "connections",
    params(("user_id" = String, Path, description = "The user's own id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user's connections and their health", body = ConnectionList),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<ConnectionList>, Problem> {
    require_user_or_admin(&state, ip, &headers, &user_id).await?;
    let connections = state
        .inner
        .connections
        .list(&user_id)
        .await
        .map_err(problem)?;
    Ok(Json(ConnectionList { connections }))
}
