//! The REST API described in OpenAPI 3.1, served at `GET /api/v1/openapi.json`. Each handler
//! carries its own route, statuses and error codes (`#[utoipa::path]` beside it), and the
//! bodies, parameters and limits are the handlers' own types and constants, so the description
//! is derived from the code rather than written beside it. What every route shares is added
//! here ([`Conventions`]): the bearer scheme, the errors any authenticated route, parameter or
//! JSON body can meet, and for each error response the codes it may carry, as an enum its body
//! is held to.
use super::input::MAX_BODY_BYTES;
use super::{auth, blocks, calls, friends, health, ice, me, push, users};
use crate::error::{AppError, ErrorCode};
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Required};
use utoipa::{Modify, OpenApi};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(Document(served(document()))))
        .service(web::resource("/openapi.json").route(web::get().to(openapi_json)));
}

/// The whole description: the probes at the root, the API under `/api/v1`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The description as served.
struct Document(serde_json::Value);

/// The document as JSON, with response links spelled as OpenAPI spells them: utoipa 5.5
/// writes a link's `operationId`, `operationRef` and `requestBody` in snake case, which
/// validators (rightly) refuse.
fn served(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut json = match serde_json::to_value(&doc) {
        Ok(json) => json,
        Err(e) => return serde_json::Value::from(AppError::internal(e).message),
    };
    let links = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    json
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard REST API"),
    paths(health::healthz, health::readyz),
    nest((path = "/api/v1", api = V1)),
    modifiers(&Conventions),
)]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(paths(
    auth::register,
    auth::login,
    auth::logout,
    auth::logout_all,
    me::get_me,
    me::update_me,
    me::delete_me,
    me::change_password,
    users::search,
    friends::send_request,
    friends::list_requests,
    friends::accept_request,
    friends::delete_request,
    friends::list_friends,
    friends::remove_friend,
    blocks::list_blocks,
    blocks::block,
    blocks::unblock,
    calls::history,
    calls::start_call,
    calls::mark_seen,
    calls::get_call,
    calls::end_call,
    ice::ice_servers,
    push::vapid_public_key,
    push::subscribe,
    push::unsubscribe,
    openapi_json,
))]
struct V1;

/// This description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.",
               content_type = "application/json", body = Object)),
)]
async fn openapi_json(doc: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok().json(&doc.0)
}

/// What every route shares, added to each operation after the handlers' own annotations.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.description = Some(format!(
            "Accounts, friends, blocks and calls of the Switchboard broker; the realtime side \
             is the WebSocket at `/ws` (docs/protocol.md). Every body is JSON, at most \
             {MAX_BODY_BYTES} bytes. Every error is `{{\"error\": code, \"message\": text}}`: \
             clients match on the code, which each response below lists."
        ));
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The token from `POST /api/v1/auth/register` or `/auth/login`.",
                        ))
                        .build(),
                ),
            );
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                require_path_parameters(op);
                add_shared_errors(op);
                hold_error_codes(op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.options,
        &mut item.head,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A path parameter is always required, but utoipa leaves it optional when its schema is
/// written by a function (`schema_with`), as the username's is.
fn require_path_parameters(op: &mut Operation) {
    for param in op.parameters.iter_mut().flatten() {
        if param.parameter_in == ParameterIn::Path {
            param.required = Required::True;
        }
    }
}

/// The errors that come from the edge rather than the handler: the token check, the JSON and
/// parameter extractors (`input.rs`), and the database.
fn add_shared_errors(op: &mut Operation) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if authenticated {
        add_error(
            op,
            401,
            "`unauthorized`: a missing, expired or revoked token",
        );
    }
    if has_body {
        add_error(
            op,
            400,
            "`invalid_json`: malformed JSON; `invalid_request`: not the documented body",
        );
        let too_large = format!("`payload_too_large`: the body is over {MAX_BODY_BYTES} bytes");
        add_error(op, 413, &too_large);
        add_error(
            op,
            415,
            "`unsupported_media_type`: a body without `Content-Type: application/json`",
        );
    }
    if has_params {
        add_error(
            op,
            400,
            "`invalid_request`: a malformed or unknown parameter",
        );
    }
    if authenticated || has_body {
        add_error(op, 500, "`internal`: a fault of the server's");
        add_error(op, 503, "`unavailable`: the database is unreachable");
    }
}

fn add_error(op: &mut Operation, status: u16, text: &str) {
    let response = op
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(Response::new("")));
    if let RefOr::T(response) = response {
        if response.description.is_empty() {
            response.description = text.to_owned();
        } else {
            response.description = format!("{}; {text}", response.description);
        }
        response
            .content
            .entry("application/json".into())
            .or_insert_with(|| Content::new(Some(Ref::from_schema_name("Error"))));
    }
}

/// The error codes a response's description names, in backticks, that are codes.
pub fn codes_named(description: &str) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    for word in description.split('`').skip(1).step_by(2) {
        let code = serde_json::from_value::<ErrorCode>(serde_json::Value::from(word));
        if let Ok(code) = code {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    codes
}

/// Narrows each error response's body to the codes its description names, so a client (and
/// a fuzzer) can rely on the list: `Error` with `error` one of them.
fn hold_error_codes(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('4') && !status.starts_with('5') {
            continue;
        }
        let codes = codes_named(&response.description);
        if codes.is_empty() {
            continue;
        }
        let names: Vec<serde_json::Value> = codes
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        let schema = AllOfBuilder::new()
            .item(Ref::from_schema_name("Error"))
            .item(
                ObjectBuilder::new().property(
                    "error",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(names)),
                ),
            )
            .build();
        response.content.insert(
            "application/json".into(),
            Content::new(Some(Schema::AllOf(schema))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_response_names_codes_of_its_own_status() {
        let doc = document();
        let mut checked = 0;
        for (path, item) in doc.paths.paths.clone().iter_mut() {
            for op in operations(item) {
                for (status, response) in &op.responses.responses {
                    let RefOr::T(response) = response else {
                        panic!("{path}: {status} is a reference")
                    };
                    if status.starts_with('2') {
                        continue;
                    }
                    let codes = codes_named(&response.description);
                    assert!(!codes.is_empty(), "{path} {status}: names no error code");
                    for code in codes {
                        assert_eq!(
                            code.status().as_str(),
                            status,
                            "{path}: {code:?} is not a {status}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50, "only {checked} codes named");
    }

    #[test]
    fn codes_are_read_from_backticks() {
        assert_eq!(
            codes_named("`user_not_found` or `request_exists`; not `nope`, not user_blocked"),
            vec![ErrorCode::UserNotFound, ErrorCode::RequestExists]
        );
    }
}
