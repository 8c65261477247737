//! `/api/v1/orgs/{org}/exports`: an organization's export (owners, signed in: an API key is
//! refused). An export is a run of the `export_organization` workflow; its archive is
//! downloadable until `result.expires_at`, then 410. See docs/exports.md.

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;
use workflows::RunId;

use super::workflows::RunDto;
use crate::auth::Client;
use crate::error::{ApiError, Problem};
use crate::extract::{Id, PathId};
use crate::state::AppState;
use crate::tenant::{Access, Caller, OrgAccess, Owner};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(start).service(get_export).service(download);
}

/// An organization's export is its owners' act, signed in: never an API key's.
fn owner_in_person(access: &Access<Owner>) -> Result<kernel::UserId, ApiError> {
    match &access.caller {
        Caller::User(u) => Ok(u.user.id),
        Caller::ApiKey(_) => Err(ApiError::Forbidden),
    }
}

async fn audit(
    state: &AppState,
    action: &'static str,
    actor: kernel::UserId,
    tenant: kernel::TenantId,
    run: RunId,
    client: kernel::ClientInfo,
) {
    kernel::audit::record(
        &*state.audit,
        kernel::AuditEvent {
            at: time::OffsetDateTime::now_utc(),
            action,
            actor: Some(actor),
            tenant: Some(tenant),
            target: Some(format!("run={run}")),
            client,
            access: None,
        },
    )
    .await;
}

/// Starts an export of the whole organization (owners): a run of `export_organization`,
/// queued; its `result` names the archive once it succeeded.
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug")),
    responses(
        (status = 202, body = RunDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an owner, or an API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[post("/orgs/{org}/exports")]
async fn start(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Owner>,
    Client(client): Client,
) -> Result<HttpResponse, ApiError> {
    let actor = owner_in_person(&access)?;
    let run = state.workflows.export_organization(&access.ctx).await?;
    audit(
        &state,
        "export.requested",
        actor,
        access.ctx.tenant_id(),
        run.id,
        client,
    )
    .await;
    Ok(HttpResponse::Accepted().json(RunDto::from(run)))
}

/// One export (owners): its status, progress and, once it succeeded, what the archive holds
/// (`bytes`, `sha256`, `counts`, `expires_at`, `download`).
#[utoipa::path(
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 200, body = RunDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/orgs/{org}/exports/{id}")]
async fn get_export(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Owner>,
    id: Id<RunId>,
) -> Result<web::Json<RunDto>, ApiError> {
    owner_in_person(&access)?;
    let PathId(id) = id?;
    Ok(web::Json(
        state.workflows.export_run(&access.ctx, id).await?.into(),
    ))
}

/// The export's archive (`application/zip`: a manifest with the SHA-256 of every entry, the
/// rows as NDJSON, the original files), until it expires. Streamed part by part (at most
/// 1 MiB of it in memory), with its `Content-Length` and its SHA-256 in
/// `X-Checksum-Sha256`.
#[utoipa::path(
    operation_id = "download_export",
    tag = "orgs",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "organization id or slug"), ("id" = String, Path)),
    responses(
        (status = 200, body = Vec<u8>, content_type = "application/zip", headers(
            ("Content-Length" = u64, description = "the archive's size in bytes"),
            ("X-Checksum-Sha256" = String, description = "the archive's SHA-256, hex (the run's `result.sha256`)")
        )),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such export, or one that failed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the export has not ended", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "the export expired (its archive is deleted)", body = Problem, content_type = "application/problem+json")
    )
)]
#[get("/orgs/{org}/exports/{id}/download")]
async fn download(
    state: web::Data<AppState>,
    OrgAccess(access): OrgAccess<Owner>,
    id: Id<RunId>,
    Client(client): Client,
) -> Result<HttpResponse, ApiError> {
    let actor = owner_in_person(&access)?;
    let PathId(id) = id?;
    let archive = state.workflows.download_export(&access.ctx, id).await?;
    audit(
        &state,
        "export.downloaded",
        actor,
        access.ctx.tenant_id(),
        id,
        client,
    )
    .await;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, "application/zip"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"export-{id}.zip\""),
        ));
    if let Some(sha256) = archive.sha256 {
        res.insert_header(("X-Checksum-Sha256", sha256));
    }
    let size = archive.reader.size();
    // One part in memory at a time; a failure mid-way ends the connection short of the
    // Content-Length, so the client sees an incomplete download.
    let parts = futures_util::stream::unfold(Some(archive.reader), move |reader| async move {
        let mut reader = reader?;
        match reader.next_part().await {
            Ok(Some(part)) => Some((Ok(web::Bytes::from(part)), Some(reader))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = ?e, run = %id, "reading an export archive failed mid-download");
                Some((
                    Err(actix_web::error::ErrorInternalServerError(
                        "reading the archive failed",
                    )),
                    None,
                ))
            }
        }
    });
    Ok(res.no_chunking(size).streaming(parts))
}
