//! Operations beyond single calls: firmware campaigns (the file served by
//! the CSMS over HTTP, UpdateFirmware to every station of the campaign in
//! its version, FirmwareStatusNotification tracked per station), log and
//! diagnostics upload (GetLog / GetDiagnostics pointing the station at an
//! upload URL of ours, uploads kept under the data directory). The
//! per-station local authorization list is in `local_list.rs`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use evproto_ocpp_proto::ProtocolVersion;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::api::{body, ct_eq, ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::store::{Campaign, CampaignStation};
use crate::App;
use evproto_ocpp_types::{v16, v201, v21, Action as _};

/// How long an upload URL handed to a station stays usable.
const UPLOAD_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Transfers in progress and their limits.
#[derive(Debug)]
pub(crate) struct Transfers {
    uploads: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
    max_file: u64,
    idle: Duration,
}

impl Transfers {
    pub(crate) fn new(config: &crate::config::Config) -> Transfers {
        Transfers {
            uploads: Arc::new(Semaphore::new(config.max_uploads)),
            downloads: Arc::new(Semaphore::new(config.max_downloads)),
            max_file: config.max_file_bytes,
            idle: config.http_idle_timeout,
        }
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn firmware_dir(app: &App) -> PathBuf {
    app.config.data_dir.join("firmware")
}

/// A station's upload folder: named by the server (a digest of the
/// identity), never by the identity itself, so no identity can name a path
/// outside `uploads/`.
fn upload_dir(app: &App, station: &str) -> PathBuf {
    app.config
        .data_dir
        .join("uploads")
        .join(upload_folder(station))
}

fn upload_folder(station: &str) -> String {
    sha256_hex(station)[..32].to_owned()
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored form of an upload token: its hash and when it expires
/// (Unix seconds); the token itself is only in the URL given to the station.
fn upload_token_record(token: &str, expires: i64) -> String {
    format!("{} {expires}", sha256_hex(token))
}

/// Whether `given` is the token of `record` and `now` is before its expiry
/// (hashes compared in constant time).
fn upload_token_valid(record: &str, given: &str, now: i64) -> bool {
    let Some((hash, expires)) = record.split_once(' ') else {
        return false;
    };
    let fresh = expires.parse::<i64>().is_ok_and(|e| now < e);
    ct_eq(hash.as_bytes(), sha256_hex(given).as_bytes()) && fresh
}

/// A received file not yet in place: removed unless [`Part::persist`]ed.
#[derive(Debug)]
struct Part {
    path: PathBuf,
    size: u64,
}

impl Part {
    /// Moves the file to `dest` (same file system: atomic).
    async fn persist(mut self, dest: &FsPath) -> Result<u64, ApiError> {
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(io_error)?;
        self.path = PathBuf::new();
        Ok(self.size)
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!("file: {e}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the file could not be stored",
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("larger than {max} bytes"),
    )
}

/// Refuses at once a body whose declared length is over the cap.
fn check_length(headers: &HeaderMap, max: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(too_large(max)),
        _ => Ok(()),
    }
}

/// Streams a request body to a temporary file under the data directory,
/// at most `max_file` bytes (413 past it) and each chunk within the idle
/// limit (408): nothing of it is held in memory.
async fn receive(app: &App, body: Body) -> Result<Part, ApiError> {
    let limits = &app.http.transfers;
    let dir = app.config.data_dir.join("incoming");
    tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
    let mut part = Part {
        path: dir.join(format!("{}.part", crate::store::random_hex(12))),
        size: 0,
    };
    let mut file = tokio::fs::File::create(&part.path)
        .await
        .map_err(io_error)?;
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout(limits.idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("no data for {} s", limits.idle.as_secs()),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk: Bytes = chunk.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("body interrupted: {e}"))
        })?;
        part.size += chunk.len() as u64;
        if part.size > limits.max_file {
            return Err(too_large(limits.max_file));
        }
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.sync_all().await.map_err(io_error)?;
    Ok(part)
}

/// `PUT /api/firmware/{name}`: stores a firmware image (raw body,
/// streamed to disk, at most `max_file_bytes`).
pub(crate) async fn put_firmware(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    if !safe_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name: letters, digits, '.', '-', '_' (1 to 128)",
        ));
    }
    check_length(&headers, app.http.transfers.max_file)?;
    let part = receive(&app, body).await?;
    if part.size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty firmware image",
        ));
    }
    let size = part.persist(&firmware_dir(&app).join(&name)).await?;
    let url = format!("{}/firmware/{name}", app.public_base);
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "size": size, "url": url})),
    )
        .into_response())
}

/// `GET /firmware/{name}`: what stations download (no API key: stations
/// have none; the names are chosen by the operator), streamed from disk,
/// at most `max_downloads` at once (503 beyond).
pub(crate) async fn get_firmware(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Response {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "no such firmware").into_response();
    if !safe_name(&name) {
        return missing();
    }
    let Ok(slot) = app.http.transfers.downloads.clone().try_acquire_owned() else {
        return busy("downloads");
    };
    let Ok(file) = tokio::fs::File::open(firmware_dir(&app).join(&name)).await else {
        return missing();
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return missing(),
    };
    // the slot goes with the body: freed when the download ends or is dropped
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map(move |chunk| {
        let _held = &slot;
        chunk
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn busy(what: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} at once; try again later"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignBody {
    /// A firmware image uploaded with `PUT /api/firmware/{name}`.
    firmware: Option<String>,
    /// Or any URL the stations can fetch.
    location: Option<String>,
    /// Stations (default: every connected station).
    #[serde(default)]
    stations: Vec<String>,
    /// A secure update (L01): the PEM certificate the firmware was signed
    /// with (at most 5500 characters), with `signature`.
    signing_certificate: Option<String>,
    /// The firmware's signature, base64 (at most 800 characters), with
    /// `signing_certificate`.
    signature: Option<String>,
}

/// A secure update's signing certificate and signature (L01; 1.6:
/// `SignedUpdateFirmware`).
#[derive(Debug, Clone)]
struct Signed {
    certificate: String,
    signature: String,
}

impl CampaignBody {
    /// The signature the campaign sends, if any: both fields or neither, each
    /// within its message's bounds.
    fn signed(&self) -> Result<Option<Signed>, ApiError> {
        let bad = |why: &str| Err(ApiError::new(StatusCode::BAD_REQUEST, why));
        match (&self.signing_certificate, &self.signature) {
            (None, None) => Ok(None),
            (Some(c), Some(s)) => {
                if c.is_empty()
                    || c.chars().count() > 5500
                    || !c.contains("-----BEGIN CERTIFICATE-----")
                {
                    return bad(
                        "signing_certificate: a PEM certificate of at most 5500 characters",
                    );
                }
                let base64 = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '/' | '=');
                if s.is_empty() || s.chars().count() > 800 || !s.chars().all(base64) {
                    return bad("signature: base64 of at most 800 characters");
                }
                Ok(Some(Signed {
                    certificate: c.clone(),
                    signature: s.clone(),
                }))
            }
            _ => bad("give signing_certificate and signature together"),
        }
    }
}

/// `POST /api/firmware-campaigns`: sends UpdateFirmware to each station.
pub(crate) async fn start_campaign(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: CampaignBody = body(&bytes)?;
    let signed = b.signed()?;
    let location = match (&b.firmware, &b.location) {
        (Some(name), None) => {
            if !safe_name(name) || !firmware_dir(&app).join(name).exists() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("no uploaded firmware {name}"),
                ));
            }
            format!("{}/firmware/{name}", app.public_base)
        }
        (None, Some(url))
            if url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("ftp://") =>
        {
            url.clone()
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give firmware (an uploaded name) or location (a URL), not both",
            ))
        }
    };
    let stations = if b.stations.is_empty() {
        app.gateway.connected().await
    } else {
        b.stations.clone()
    };
    if stations.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "no stations"));
    }
    let id = request_id();
    let started_at = chrono::Utc::now();
    let mut results = Vec::new();
    for st in &stations {
        let refused = |reason: String| CampaignStation {
            station: st.clone(),
            requested: false,
            reason: Some(reason),
            answer: None,
        };
        let Some(version) = app.gateway.version(st).await else {
            results.push(refused("not connected".into()));
            continue;
        };
        match update_firmware(&app.gateway, st, version, &location, id, signed.as_ref()).await {
            // 1.6 answers without a status: the request is taken
            Ok(a) => results.push(CampaignStation {
                station: st.clone(),
                requested: a
                    .status
                    .is_none_or(|s| s == "Accepted" || s == "AcceptedCanceled"),
                reason: None,
                answer: Some(a.json),
            }),
            Err(e) => results.push(refused(e.to_string())),
        }
    }
    let campaign = Campaign {
        id,
        location,
        signed: signed.is_some(),
        started_at,
        stations: results,
    };
    app.store.put_campaign(&campaign).await?;
    app.notify(crate::events::LiveEvent::FirmwareCampaign {
        id: id.to_string(),
        stations: stations.len(),
    });
    Ok((StatusCode::CREATED, Json(campaign)).into_response())
}

/// A campaign as the API shows it: each station with its latest firmware
/// status (`null` before its first FirmwareStatusNotification).
#[derive(serde::Serialize)]
struct CampaignView {
    id: i32,
    location: String,
    signed: bool,
    /// RFC 3339 to the millisecond.
    started_at: String,
    stations: Vec<StationProgress>,
}

/// A campaign's station and its latest firmware status.
#[derive(serde::Serialize)]
struct StationProgress {
    #[serde(flatten)]
    station: CampaignStation,
    status: Option<String>,
}

async fn campaign_view(app: &App, c: Campaign) -> Result<CampaignView, ApiError> {
    let mut stations = Vec::with_capacity(c.stations.len());
    for s in c.stations {
        let status = app
            .store
            .operation_status(&s.station, crate::store::Operation::Firmware)
            .await?
            .map(|st| st.status);
        stations.push(StationProgress { station: s, status });
    }
    Ok(CampaignView {
        id: c.id,
        location: c.location,
        signed: c.signed,
        started_at: crate::store::ts(c.started_at),
        stations,
    })
}

/// `GET /api/firmware-campaigns/{id}`: the campaign with each station's
/// latest FirmwareStatusNotification.
pub(crate) async fn get_campaign(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let found = match id.parse::<i32>() {
        Ok(n) => app.store.campaign(n).await?,
        Err(_) => None,
    };
    let Some(c) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no campaign {id}"),
        ));
    };
    Ok(Json(campaign_view(&app, c).await?).into_response())
}

/// `GET /api/firmware-campaigns`: newest first, paged like every list
/// (campaigns are few: they are read whole and paged here, by start and id).
pub(crate) async fn list_campaigns(
    State(app): State<Arc<App>>,
    crate::api::ApiQuery(q): crate::api::ApiQuery<crate::api::ListParams>,
) -> ApiResult {
    let q = q.check(crate::api::Filters::NONE)?;
    let key = |c: &Campaign| vec![crate::store::ts(c.started_at), c.id.to_string()];
    // newest first, by start then id (as the cursor compares them)
    let mut all = app.store.campaigns().await?;
    all.sort_by_key(|c| std::cmp::Reverse(key(c)));
    let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
    if q.after.as_ref().is_some_and(|a| a.len() != 2) {
        return Err(crate::store::StoreError::BadCursor.into());
    }
    let limit = usize::try_from(q.limit).unwrap_or(1);
    let rest: Vec<Campaign> = all
        .into_iter()
        .filter(|c| q.after.as_ref().is_none_or(|a| key(c) < *a))
        .take(limit + 1)
        .collect();
    let next = (rest.len() > limit).then(|| key(&rest[limit - 1]));
    let mut items = Vec::with_capacity(limit);
    for c in rest.into_iter().take(limit) {
        items.push(campaign_view(&app, c).await?);
    }
    Ok(crate::api::page_response(items, next, total))
}

/// Which log `POST /api/stations/{id}/logs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
enum LogKind {
    /// The diagnostics log (2.x GetLog `DiagnosticsLog`, 1.6 GetDiagnostics).
    #[default]
    DiagnosticsLog,
    /// The security log (2.x GetLog `SecurityLog`, 1.6 security extensions
    /// GetLog `SecurityLog`: GetDiagnostics cannot ask for it).
    SecurityLog,
}

/// The optional body of `POST /api/stations/{id}/logs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBody {
    #[serde(default)]
    log_type: LogKind,
}

/// `POST /api/stations/{id}/logs`: asks the station to upload its log to
/// us: the diagnostics log (2.x GetLog, 1.6 GetDiagnostics) or, with
/// `{"log_type": "SecurityLog"}`, the security log (2.x GetLog, 1.6 GetLog
/// of the security extensions).
pub(crate) async fn request_logs(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: LogBody = if bytes.is_empty() {
        LogBody::default()
    } else {
        body(&bytes)?
    };
    // 404 not connected, 503 when the cluster's registry cannot tell
    let version = app.gateway.connection(&id).await?;
    // single-use and expiring; only its hash is stored
    let token = crate::store::random_hex(24);
    let expires = chrono::Utc::now().timestamp() + UPLOAD_TOKEN_TTL.as_secs() as i64;
    app.store
        .put_setting(
            &format!("upload_token:{id}"),
            &upload_token_record(&token, expires),
        )
        .await?;
    let url = format!("{}/upload/{id}/{token}", app.public_base);
    let (action, answer) =
        get_log(&app.gateway, &id, version, (&url, b.log_type), request_id()).await;
    match answer {
        Ok(answer) => Ok(
            Json(json!({"action": action, "upload_url": url, "answer": answer.json}))
                .into_response(),
        ),
        Err(e) => Err(e.into()),
    }
}

/// `PUT|POST /upload/{station}/{token}/{filename}`: a station's upload.
/// The token is checked before a byte of the body is read (403), the
/// declared size before it is streamed (413), then the body goes to disk
/// with at most `max_uploads` at once (503); the token is used up when the
/// file is in place.
pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    Path((station, token, filename)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive_upload(&app, &station, &token, &filename, &headers, body).await {
        Ok(size) => {
            app.notify(crate::events::LiveEvent::Upload {
                station: station.to_string(),
                file: filename.to_string(),
                size,
            });
            (
                StatusCode::CREATED,
                Json(json!({"stored": filename, "size": size})),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn receive_upload(
    app: &App,
    station: &str,
    token: &str,
    filename: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<u64, ApiError> {
    let unknown = || ApiError::new(StatusCode::FORBIDDEN, "unknown, used or expired upload URL");
    let key = format!("upload_token:{station}");
    let now = chrono::Utc::now().timestamp();
    let record = app
        .store
        .setting(&key)
        .await?
        .filter(|r| upload_token_valid(r, token, now))
        .ok_or_else(unknown)?;
    if !safe_name(filename) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "filename: letters, digits, '.', '-', '_' (1 to 128)",
        ));
    }
    let transfers = &app.http.transfers;
    check_length(headers, transfers.max_file)?;
    let Ok(_slot) = transfers.uploads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads at once; try again later",
        ));
    };
    let part = receive(app, body).await?;
    // single use: of two uploads with one token, only the first to finish lands
    if !app.store.take_setting(&key, &record).await? {
        return Err(unknown());
    }
    part.persist(&upload_dir(app, station).join(filename)).await
}

/// `GET /api/stations/{id}/logs`: uploads received and the last status.
pub(crate) async fn list_logs(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let mut files = Vec::new();
    if let Ok(mut rd) = tokio::fs::read_dir(upload_dir(&app, &id)).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            let size = e.metadata().await.map(|m| m.len()).unwrap_or(0);
            files.push(json!({"file": e.file_name().to_string_lossy(), "size": size}));
        }
    }
    let status = app
        .store
        .operation_status(&id, crate::store::Operation::Log)
        .await?;
    Ok(Json(json!({"station": id, "files": files, "status": status})).into_response())
}

/// A request id of ours (a campaign, a log request): the time in
/// milliseconds, modulo 10^9 (fits every version's `requestId`).
fn request_id() -> i32 {
    i32::try_from(chrono::Utc::now().timestamp_millis() % 1_000_000_000).unwrap_or_default()
}

/// A station's typed answer, as the API shows it.
#[derive(Debug)]
struct Answer {
    /// Its `status`, when the message has one.
    status: Option<&'static str>,
    /// The answer as JSON, for the operator.
    json: Value,
}

impl Answer {
    fn of<R: serde::Serialize>(status: Option<&'static str>, response: &R) -> Answer {
        Answer {
            status,
            json: serde_json::to_value(response).unwrap_or(Value::Null),
        }
    }
}

/// UpdateFirmware: download from `location` now, in `version`; a signed
/// one (L01) with its certificate and signature (1.6: SignedUpdateFirmware).
async fn update_firmware(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    location: &str,
    request_id: i32,
    signed: Option<&Signed>,
) -> Result<Answer, StationCallError> {
    let retrieve = chrono::Utc::now();
    let bad = |e| StationCallError::rejected(station, e);
    match (version, signed) {
        (ProtocolVersion::V16, Some(signed)) => {
            let request = v16::SignedUpdateFirmwareRequest {
                retries: None,
                retry_interval: None,
                request_id,
                firmware: v16::FirmwareType {
                    location: location.parse().map_err(bad)?,
                    retrieve_date_time: retrieve,
                    install_date_time: None,
                    signing_certificate: signed.certificate.parse().map_err(bad)?,
                    signature: signed.signature.parse().map_err(bad)?,
                },
            };
            let r = gateway
                .call::<v16::action::SignedUpdateFirmware>(station, request)
                .await?;
            Ok(Answer::of(Some(r.status.as_str()), &r))
        }
        (ProtocolVersion::V16, None) => {
            let request = v16::UpdateFirmwareRequest {
                location: location.to_owned(),
                retries: None,
                retrieve_date: retrieve,
                retry_interval: None,
            };
            let r = gateway
                .call::<v16::action::UpdateFirmware>(station, request)
                .await?;
            Ok(Answer::of(None, &r))
        }
        (ProtocolVersion::V201, _) => {
            ops_201::update_firmware(gateway, station, location, request_id, retrieve, signed).await
        }
        _ => {
            ops_21::update_firmware(gateway, station, location, request_id, retrieve, signed).await
        }
    }
}

/// 2.x GetLog, 1.6 GetDiagnostics (the diagnostics log) or 1.6 GetLog
/// (the security log) to `url`: the action sent and the answer.
async fn get_log(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    (url, kind): (&str, LogKind),
    request_id: i32,
) -> (&'static str, Result<Answer, StationCallError>) {
    match version {
        ProtocolVersion::V16 if kind == LogKind::SecurityLog => {
            type A = v16::action::GetLog;
            let sent = async {
                let request = v16::GetLogRequest {
                    log: v16::LogParametersType {
                        remote_location: url
                            .parse()
                            .map_err(|e| StationCallError::rejected(station, e))?,
                        oldest_timestamp: None,
                        latest_timestamp: None,
                    },
                    log_type: v16::LogEnumType::SecurityLog,
                    request_id,
                    retries: None,
                    retry_interval: None,
                };
                let r = gateway.call::<A>(station, request).await?;
                Ok(Answer::of(Some(r.status.as_str()), &r))
            };
            (A::NAME, sent.await)
        }
        ProtocolVersion::V16 => {
            let request = v16::GetDiagnosticsRequest {
                location: url.to_owned(),
                retries: None,
                retry_interval: None,
                start_time: None,
                stop_time: None,
            };
            type A = v16::action::GetDiagnostics;
            let r = gateway.call::<A>(station, request).await;
            (A::NAME, r.map(|r| Answer::of(None, &r)))
        }
        ProtocolVersion::V201 => {
            let kind = match kind {
                LogKind::DiagnosticsLog => v201::LogEnumType::DiagnosticsLog,
                LogKind::SecurityLog => v201::LogEnumType::SecurityLog,
            };
            ops_201::get_log(gateway, station, (url, kind), request_id).await
        }
        _ => {
            let kind = match kind {
                LogKind::DiagnosticsLog => v21::LogEnumType::DiagnosticsLog,
                LogKind::SecurityLog => v21::LogEnumType::SecurityLog,
            };
            ops_21::get_log(gateway, station, (url, kind), request_id).await
        }
    }
}

/// The 2.0.1 and 2.1 requests of these operations (the same messages).
macro_rules! ops_2x {
    ($m:ident, $ver:ident, $token_type:ty) => {
        mod $m {
            use evproto_ocpp_types::{$ver, Action as _};

            use super::{Answer, Signed};
            use crate::gateway::{StationCallError, StationGateway};

            pub(super) async fn update_firmware(
                gateway: &StationGateway,
                station: &str,
                location: &str,
                request_id: i32,
                retrieve: chrono::DateTime<chrono::Utc>,
                signed: Option<&Signed>,
            ) -> Result<Answer, StationCallError> {
                let bad = |e| StationCallError::rejected(station, e);
                let (signing_certificate, signature) = match signed {
                    Some(s) => (
                        Some(s.certificate.parse().map_err(bad)?),
                        Some(s.signature.parse().map_err(bad)?),
                    ),
                    None => (None, None),
                };
                let request = $ver::UpdateFirmwareRequest {
                    retries: None,
                    retry_interval: None,
                    request_id,
                    firmware: $ver::FirmwareType {
                        location: location
                            .parse()
                            .map_err(|e| StationCallError::rejected(station, e))?,
                        retrieve_date_time: retrieve,
                        install_date_time: None,
                        signing_certificate,
                        signature,
                        custom_data: None,
                    },
                    custom_data: None,
                };
                let r = gateway
                    .call::<$ver::action::UpdateFirmware>(station, request)
                    .await?;
                Ok(Answer::of(Some(r.status.as_str()), &r))
            }

            pub(super) async fn get_log(
                gateway: &StationGateway,
                station: &str,
                (url, log_type): (&str, $ver::LogEnumType),
                request_id: i32,
            ) -> (&'static str, Result<Answer, StationCallError>) {
                type A = $ver::action::GetLog;
                let sent = async {
                    let request = $ver::GetLogRequest {
                        log: $ver::LogParametersType {
                            remote_location: url
                                .parse()
                                .map_err(|e| StationCallError::rejected(station, e))?,
                            oldest_timestamp: None,
                            latest_timestamp: None,
                            custom_data: None,
                        },
                        log_type,
                        request_id,
                        retries: None,
                        retry_interval: None,
                        custom_data: None,
                    };
                    let r = gateway.call::<A>(station, request).await?;
                    Ok(Answer::of(Some(r.status.as_str()), &r))
                };
                (A::NAME, sent.await)
            }
        }
    };
}

ops_2x!(ops_201, v201, Result<v201::IdTokenEnumType, StationCallError>);
ops_2x!(
    ops_21,
    v21,
    Result<evproto_ocpp_types::BoundedString<20>, StationCallError>
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_folders_are_server_named() {
        for id in ["..", ".", "../../data", "CP1", "a/b"] {
            let f = upload_folder(id);
            assert_eq!(f.len(), 32);
            assert!(f.bytes().all(|b| b.is_ascii_hexdigit()), "{f}");
        }
        assert_ne!(upload_folder("CP1"), upload_folder("CP2"));
        assert_eq!(upload_folder("CP1"), upload_folder("CP1"));
    }

    #[test]
    fn upload_tokens_expire_and_store_no_token() {
        let record = upload_token_record("abc123", 1_000);
        assert!(!record.contains("abc123"));
        assert!(upload_token_valid(&record, "abc123", 999));
        assert!(!upload_token_valid(&record, "abc123", 1_000), "expired");
        assert!(!upload_token_valid(&record, "abc124", 999));
        assert!(!upload_token_valid(&record, "", 999));
        // a plain token stored by an older version is not a valid record
        assert!(!upload_token_valid("abc123", "abc123", 0));
    }
}
