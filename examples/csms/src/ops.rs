//! Operations beyond single calls: firmware campaigns (the file served by
//! the CSMS over HTTP, UpdateFirmware to every station of the campaign in
//! its version, FirmwareStatusNotification tracked per station), log and
//! diagnostics upload (GetLog / GetDiagnostics pointing the station at an
//! upload URL of ours, uploads kept under the data directory), and the
//! per-station local authorization list (SendLocalList).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use evproto_ocpp_proto::ProtocolVersion;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{body, ApiError, ApiResult};
use crate::App;

/// Largest firmware image or log upload accepted, bytes.
pub const MAX_FILE: usize = 64 * 1024 * 1024;

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
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(station.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `PUT /api/firmware/{name}`: stores a firmware image (raw body).
pub async fn put_firmware(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    if !safe_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name: letters, digits, '.', '-', '_' (1 to 128)",
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty firmware image",
        ));
    }
    let dir = firmware_dir(&app);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tokio::fs::write(dir.join(&name), &bytes)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let url = format!("{}/firmware/{name}", app.public_base());
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "size": bytes.len(), "url": url})),
    )
        .into_response())
}

/// `GET /firmware/{name}`: what stations download (no API key: stations
/// have none; the names are chosen by the operator).
pub async fn get_firmware(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    if !safe_name(&name) {
        return ApiError::new(StatusCode::NOT_FOUND, "no such firmware").into_response();
    }
    match tokio::fs::read(firmware_dir(&app).join(&name)).await {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(_) => ApiError::new(StatusCode::NOT_FOUND, "no such firmware").into_response(),
    }
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
}

/// `POST /api/firmware-campaigns`: sends UpdateFirmware to each station.
pub async fn start_campaign(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult {
    let b: CampaignBody = body(&bytes)?;
    let location = match (&b.firmware, &b.location) {
        (Some(name), None) => {
            if !safe_name(name) || !firmware_dir(&app).join(name).exists() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("no uploaded firmware {name}"),
                ));
            }
            format!("{}/firmware/{name}", app.public_base())
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
        app.server().map(|s| s.connected()).unwrap_or_default()
    } else {
        b.stations.clone()
    };
    if stations.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "no stations"));
    }
    let id: i64 = (chrono::Utc::now().timestamp_millis() % 1_000_000_000).abs();
    let retrieve = crate::store::now();
    let mut results = Vec::new();
    for st in &stations {
        let payload = match app.station_version(st) {
            Some(ProtocolVersion::V16) => json!({"location": location, "retrieveDate": retrieve}),
            Some(_) => {
                json!({"requestId": id, "firmware": {"location": location, "retrieveDateTime": retrieve}})
            }
            None => {
                results.push(json!({"station": st, "requested": false, "reason": "not connected"}));
                continue;
            }
        };
        match app.call_station(st, "UpdateFirmware", payload).await {
            Ok(a) => results.push(json!({"station": st, "requested": a["status"].as_str().is_none_or(|s| s == "Accepted" || s == "AcceptedCanceled"), "answer": a})),
            Err(e) => results.push(json!({"station": st, "requested": false, "reason": e})),
        }
    }
    let campaign =
        json!({"id": id, "location": location, "started_at": retrieve, "stations": results});
    app.store
        .put_setting(&format!("campaign:{id}"), &campaign.to_string())
        .await?;
    app.notify(json!({"type": "firmware_campaign", "id": id, "stations": stations.len()}));
    Ok((StatusCode::CREATED, Json(campaign)).into_response())
}

async fn campaign_view(app: &App, c: Value) -> Value {
    let mut c = c;
    if let Some(list) = c["stations"].as_array_mut() {
        for s in list {
            let id = s["station"].as_str().unwrap_or_default().to_string();
            let status = app
                .store
                .setting(&format!("firmware_status:{id}"))
                .await
                .ok()
                .flatten()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            s["status"] = status.map(|v| v["status"].clone()).unwrap_or(Value::Null);
        }
    }
    c
}

/// `GET /api/firmware-campaigns/{id}`: the campaign with each station's
/// latest FirmwareStatusNotification.
pub async fn get_campaign(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let Some(text) = app.store.setting(&format!("campaign:{id}")).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no campaign {id}"),
        ));
    };
    let c: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Json(campaign_view(&app, c).await).into_response())
}

/// `GET /api/firmware-campaigns`.
pub async fn list_campaigns(State(app): State<Arc<App>>) -> ApiResult {
    let mut out = Vec::new();
    for (_, v) in app.store.settings_with_prefix("campaign:").await? {
        if let Ok(c) = serde_json::from_str::<Value>(&v) {
            out.push(campaign_view(&app, c).await);
        }
    }
    out.sort_by_key(|c| {
        std::cmp::Reverse(c["started_at"].as_str().unwrap_or_default().to_string())
    });
    Ok(Json(out).into_response())
}

/// `POST /api/stations/{id}/logs`: asks the station to upload its log
/// (2.x GetLog) or diagnostics (1.6 GetDiagnostics) to us.
pub async fn request_logs(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let version = app.station_version(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        )
    })?;
    let token = crate::store::random_hex(12);
    app.store
        .put_setting(&format!("upload_token:{id}"), &token)
        .await?;
    let url = format!("{}/upload/{id}/{token}", app.public_base());
    let request_id: i64 = (chrono::Utc::now().timestamp_millis() % 1_000_000_000).abs();
    let (action, payload) = if version == ProtocolVersion::V16 {
        ("GetDiagnostics", json!({"location": url}))
    } else {
        (
            "GetLog",
            json!({"logType": "DiagnosticsLog", "requestId": request_id, "log": {"remoteLocation": url}}),
        )
    };
    match app.call_station(&id, action, payload).await {
        Ok(answer) => Ok(
            Json(json!({"action": action, "upload_url": url, "answer": answer})).into_response(),
        ),
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e)),
    }
}

/// `PUT|POST /upload/{station}/{token}/{filename}`: a station's upload.
pub async fn upload(
    State(app): State<Arc<App>>,
    Path((station, token, filename)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Response {
    let expected = app
        .store
        .setting(&format!("upload_token:{station}"))
        .await
        .ok()
        .flatten();
    if expected.as_deref() != Some(token.as_str()) || !safe_name(&filename) {
        return ApiError::new(StatusCode::FORBIDDEN, "unknown upload").into_response();
    }
    let dir = upload_dir(&app, &station);
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    if let Err(e) = tokio::fs::write(dir.join(&filename), &bytes).await {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    app.notify(
        json!({"type": "upload", "station": station, "file": filename, "size": bytes.len()}),
    );
    (
        StatusCode::CREATED,
        Json(json!({"stored": filename, "size": bytes.len()})),
    )
        .into_response()
}

/// `GET /api/stations/{id}/logs`: uploads received and the last status.
pub async fn list_logs(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let mut files = Vec::new();
    if let Ok(mut rd) = tokio::fs::read_dir(upload_dir(&app, &id)).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            let size = e.metadata().await.map(|m| m.len()).unwrap_or(0);
            files.push(json!({"file": e.file_name().to_string_lossy(), "size": size}));
        }
    }
    let status = app
        .store
        .setting(&format!("log_status:{id}"))
        .await?
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(Json(json!({"station": id, "files": files, "status": status})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalListBody {
    /// Tokens to put on the station's list (default: every Accepted token
    /// in the registry).
    tokens: Option<Vec<String>>,
}

/// `PUT /api/stations/{id}/local-list`: replaces the station's local
/// authorization list (SendLocalList, update type Full) and returns the
/// station's answer; the list version increases each time.
pub async fn put_local_list(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: LocalListBody = if bytes.is_empty() {
        LocalListBody { tokens: None }
    } else {
        body(&bytes)?
    };
    let version = app.station_version(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("station {id} is not connected"),
        )
    })?;
    let all = app.store.tokens().await?;
    let entries: Vec<(String, String)> = match b.tokens {
        Some(list) => list
            .into_iter()
            .map(|t| {
                let status = all
                    .iter()
                    .find(|x| x["id_token"] == t)
                    .and_then(|x| x["status"].as_str())
                    .unwrap_or("Invalid")
                    .to_string();
                (t, status)
            })
            .collect(),
        None => all
            .iter()
            .filter(|x| x["status"] == "Accepted")
            .filter_map(|x| Some((x["id_token"].as_str()?.to_string(), "Accepted".to_string())))
            .collect(),
    };
    let key = format!("local_list_version:{id}");
    let list_version = app
        .store
        .setting(&key)
        .await?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    let payload = if version == ProtocolVersion::V16 {
        json!({"listVersion": list_version, "updateType": "Full", "localAuthorizationList": entries.iter()
            .map(|(t, s)| json!({"idTag": t, "idTagInfo": {"status": s}})).collect::<Vec<_>>()})
    } else {
        json!({"versionNumber": list_version, "updateType": "Full", "localAuthorizationList": entries.iter()
            .map(|(t, s)| json!({"idToken": {"idToken": t, "type": "ISO14443"}, "idTokenInfo": {"status": s}})).collect::<Vec<_>>()})
    };
    match app.call_station(&id, "SendLocalList", payload).await {
        Ok(answer) => {
            if answer["status"] == "Accepted" {
                app.store
                    .put_setting(&key, &list_version.to_string())
                    .await?;
            }
            Ok(Json(
                json!({"list_version": list_version, "entries": entries.len(), "answer": answer}),
            )
            .into_response())
        }
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e)),
    }
}

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
}
