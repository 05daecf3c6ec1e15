//! Configuration: defaults, then a TOML file (`--config`), then environment
//! variables and flags (each flag has a `CSMS_*` variable; `DATABASE_URL`
//! for the store). Printed at start with secrets redacted.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a BootNotification from an identity not in the registry gets.
///
/// Spelled `reject`, `pending` and `accept` on the command line, in
/// `CSMS_UNKNOWN_STATIONS` and in the TOML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownStations {
    /// `Rejected`, nothing recorded.
    #[default]
    Reject,
    /// Registered, answered `Pending` (the operator accepts it later).
    Pending,
    /// Registered and `Accepted`.
    Accept,
}

/// Flags and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "CSMS_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the OCPP port and the public HTTP port (OCPI, firmware downloads, station uploads).
    #[arg(long, env = "CSMS_BIND")]
    bind: Option<IpAddr>,
    /// Address of the admin HTTP port (operator API, dashboard, metrics); loopback unless opened wider here.
    #[arg(long, env = "CSMS_ADMIN_BIND")]
    admin_bind: Option<IpAddr>,
    /// OCPP WebSocket port (stations connect to /ocpp/{identity}); 0 picks a free one.
    #[arg(long, env = "CSMS_OCPP_PORT")]
    ocpp_port: Option<u16>,
    /// OCPP WebSocket port over TLS (wss://, needs --tls-cert/--tls-key); set, the OCPP port is plain ws:// and each station connects on the one its security profile asks for (0/1 ws://, 2/3 wss://); 0 picks a free one.
    #[arg(long, env = "CSMS_OCPP_TLS_PORT")]
    ocpp_tls_port: Option<u16>,
    /// Public HTTP port: OCPI (/ocpi), firmware downloads (/firmware) and station uploads (/upload); 0 picks a free one.
    #[arg(long, env = "CSMS_HTTP_PORT")]
    http_port: Option<u16>,
    /// Admin HTTP port: operator API (/api), dashboard (/) and metrics (/metrics), all behind the API key; 0 picks a free one.
    #[arg(long, env = "CSMS_ADMIN_PORT")]
    admin_port: Option<u16>,
    /// Seconds a client has to send a request's headers (and the longest a kept-alive connection idles).
    #[arg(long, env = "CSMS_HTTP_HEADER_TIMEOUT")]
    http_header_timeout: Option<u64>,
    /// Seconds an operator API request may take (longer than call_timeout).
    #[arg(long, env = "CSMS_HTTP_REQUEST_TIMEOUT")]
    http_request_timeout: Option<u64>,
    /// Seconds an upload or download may go without moving a byte before it is dropped.
    #[arg(long, env = "CSMS_HTTP_IDLE_TIMEOUT")]
    http_idle_timeout: Option<u64>,
    /// Open connections per HTTP port; more are answered 503 and closed.
    #[arg(long, env = "CSMS_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// Largest firmware image or station upload, bytes.
    #[arg(long, env = "CSMS_MAX_FILE_BYTES")]
    max_file_bytes: Option<u64>,
    /// Station uploads received at once; more are answered 503.
    #[arg(long, env = "CSMS_MAX_UPLOADS")]
    max_uploads: Option<usize>,
    /// Firmware downloads served at once; more are answered 503.
    #[arg(long, env = "CSMS_MAX_DOWNLOADS")]
    max_downloads: Option<usize>,
    /// Directory of the embedded SQLite store (default ./data).
    #[arg(long, env = "CSMS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store URL: postgres://... for PostgreSQL; default the SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
    /// Operator API key (Authorization: Bearer KEY), at least 16 characters; without it one is generated and printed at first start, and only its hash is stored.
    #[arg(long, env = "CSMS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// OCPP security profile: 0 (no authentication; for labs), 1 (HTTP Basic auth with each station's password), 2 (TLS + Basic auth; needs --tls-cert/--tls-key) or 3 (TLS with station client certificates whose CN is the identity; also --tls-client-ca).
    #[arg(long, env = "CSMS_SECURITY_PROFILE", value_parser = clap::value_parser!(u8).range(0..=3))]
    security_profile: Option<u8>,
    /// Boot answer for identities not in the registry (profile 0 only lets them connect): reject, pending or accept (registers them).
    #[arg(long, env = "CSMS_UNKNOWN_STATIONS", value_enum)]
    unknown_stations: Option<UnknownStations>,
    /// Heartbeat interval sent in BootNotification answers, seconds.
    #[arg(long, env = "CSMS_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<u32>,
    /// Seconds to wait for a station's answer to a CSMS-initiated call.
    #[arg(long, env = "CSMS_CALL_TIMEOUT")]
    call_timeout: Option<u64>,
    /// IANA time zone of the stations, for tariff restrictions (e.g. Europe/Amsterdam).
    #[arg(long, env = "CSMS_TIME_ZONE")]
    time_zone: Option<String>,
    /// Amount held on a driver's prepaid wallet when a session starts (captured as priced at the end).
    #[arg(long, env = "CSMS_HOLD_AMOUNT")]
    hold_amount: Option<rust_decimal::Decimal>,
    /// OCPI country code of this CPO (ISO 3166 alpha-2).
    #[arg(long, env = "CSMS_OCPI_COUNTRY_CODE")]
    ocpi_country_code: Option<String>,
    /// OCPI party id of this CPO (3 characters).
    #[arg(long, env = "CSMS_OCPI_PARTY_ID")]
    ocpi_party_id: Option<String>,
    /// Public base URL of the HTTP port as partners reach it (default http://127.0.0.1:<http_port>); OCPI is at <public_url>/ocpi.
    #[arg(long, env = "CSMS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Site power limit in W, split evenly over the active sessions with SetChargingProfile whenever a session starts or ends (off when unset).
    #[arg(long, env = "CSMS_SITE_LIMIT_W")]
    site_limit_w: Option<u32>,
    /// TLS certificate chain (PEM) for security profiles 2 and 3.
    #[arg(long, env = "CSMS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for security profiles 2 and 3.
    #[arg(long, env = "CSMS_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign stations' client certificates (profile 3).
    #[arg(long, env = "CSMS_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// TLS library of the OCPP wss:// port: rustls (default; forward-secret suites only) or openssl (adds OCPP's static-RSA suites TLS_RSA_WITH_AES_128/256_GCM, A00.FR.318, and takes an RSA certificate beside the ECDSA one).
    #[arg(long, env = "CSMS_TLS_BACKEND", value_enum)]
    tls_backend: Option<TlsBackend>,
    /// With --tls-backend openssl: a second certificate chain (PEM) of the other key type than --tls-cert (typically RSA beside ECDSA).
    #[arg(long, env = "CSMS_TLS_RSA_CERT")]
    tls_rsa_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-rsa-cert.
    #[arg(long, env = "CSMS_TLS_RSA_KEY")]
    tls_rsa_key: Option<PathBuf>,
    /// Lab only: OCPI partner URLs may use plain http and loopback or private addresses (off: https to public addresses only).
    #[arg(long, env = "CSMS_OCPI_ALLOW_PRIVATE_URLS")]
    ocpi_allow_private_urls: Option<bool>,
    /// First retry delay of a failed outbox entry (OCPI push, billing), milliseconds; doubled per attempt up to 10 minutes.
    #[arg(long, env = "CSMS_OUTBOX_RETRY_BASE_MS")]
    outbox_retry_base_ms: Option<u64>,
    /// Log lines on stderr: text (coloured only on a terminal) or json (one object a line).
    #[arg(long, env = "CSMS_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// The app API's limit per signed-in account, BURST/PER_MINUTE (default 60/300): requests at once, then per minute.
    #[arg(long, env = "CSMS_APP_ACCOUNT_RATE")]
    app_account_rate: Option<Rate>,
    /// The app API's limit per client address (sign-up, sign-in, and any request without a valid sign-in), BURST/PER_MINUTE (default 30/60).
    #[arg(long, env = "CSMS_APP_CLIENT_RATE")]
    app_client_rate: Option<Rate>,
    #[command(flatten)]
    openadr: crate::openadr::VenArgs,
    #[command(flatten)]
    pnc: crate::pnc::PncArgs,
}

/// The same settings, from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bind: Option<IpAddr>,
    admin_bind: Option<IpAddr>,
    ocpp_port: Option<u16>,
    ocpp_tls_port: Option<u16>,
    http_port: Option<u16>,
    admin_port: Option<u16>,
    http_header_timeout: Option<u64>,
    http_request_timeout: Option<u64>,
    http_idle_timeout: Option<u64>,
    http_max_connections: Option<usize>,
    max_file_bytes: Option<u64>,
    max_uploads: Option<usize>,
    max_downloads: Option<usize>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    api_key: Option<String>,
    security_profile: Option<u8>,
    unknown_stations: Option<UnknownStations>,
    heartbeat_interval: Option<u32>,
    call_timeout: Option<u64>,
    time_zone: Option<String>,
    hold_amount: Option<rust_decimal::Decimal>,
    ocpi_country_code: Option<String>,
    ocpi_party_id: Option<String>,
    public_url: Option<String>,
    site_limit_w: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_backend: Option<TlsBackend>,
    tls_rsa_cert: Option<PathBuf>,
    tls_rsa_key: Option<PathBuf>,
    ocpi_allow_private_urls: Option<bool>,
    outbox_retry_base_ms: Option<u64>,
    log_format: Option<LogFormat>,
    app_account_rate: Option<Rate>,
    app_client_rate: Option<Rate>,
}

/// A rate limit: `burst` requests at once, refilled at `per_minute`;
/// spelled `BURST/PER_MINUTE` (`30/60`) in flags, variables and the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests at once.
    pub burst: u32,
    /// Requests a minute after the burst.
    pub per_minute: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("{s:?}: BURST/PER_MINUTE, both positive (e.g. 30/60)");
        let (b, m) = s.split_once('/').ok_or_else(bad)?;
        let (burst, per_minute) = (
            b.trim().parse::<u32>().map_err(|_| bad())?,
            m.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if burst == 0 || per_minute == 0 {
            return Err(bad());
        }
        Ok(Rate { burst, per_minute })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.burst, self.per_minute)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The app API's rate limits (`crate::app_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRates {
    /// Per signed-in account.
    pub account: Rate,
    /// Per client address: sign-up, sign-in, and requests without a
    /// valid sign-in.
    pub client: Rate,
}

impl Default for AppRates {
    fn default() -> Self {
        AppRates {
            account: Rate {
                burst: 60,
                per_minute: 300,
            },
            client: Rate {
                burst: 30,
                per_minute: 60,
            },
        }
    }
}

/// How the log on stderr is written; `text` and `json` on the command
/// line, in `CSMS_LOG_FORMAT` and in the TOML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields).
    Json,
}

/// The TLS library of the OCPP `wss://` port; `rustls` and `openssl` on
/// the command line, in `CSMS_TLS_BACKEND` and in the TOML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsBackend {
    /// rustls: TLS 1.2 and 1.3, forward-secret suites only, one
    /// certificate.
    #[default]
    Rustls,
    /// OpenSSL: also the static-RSA suites OCPP requires of a CSMS
    /// (A00.FR.318), with an ECDSA and an RSA certificate at once
    /// (`evproto_ocpp_server::tls_openssl`).
    Openssl,
}

/// Configuration in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address of the OCPP and public HTTP ports.
    pub bind: IpAddr,
    /// Listen address of the admin HTTP port (loopback by default).
    pub admin_bind: IpAddr,
    /// OCPP port: plain ws://, or TLS when `security_profile` is 2 or 3 and
    /// there is no `ocpp_tls_port`.
    pub ocpp_port: u16,
    /// OCPP port over TLS (wss://) beside the plain `ocpp_port`: each
    /// station connects on its security profile's (0/1 ws://, 2/3 wss://).
    pub ocpp_tls_port: Option<u16>,
    /// Public HTTP port: OCPI, firmware downloads, station uploads.
    pub http_port: u16,
    /// Admin HTTP port: operator API, dashboard, metrics.
    pub admin_port: u16,
    /// Time to send a request's headers; also the keep-alive idle limit.
    pub http_header_timeout: Duration,
    /// Time an operator API request may take.
    pub http_request_timeout: Duration,
    /// Time an upload or download may go without progress.
    pub http_idle_timeout: Duration,
    /// Open connections per HTTP port.
    pub http_max_connections: usize,
    /// Largest firmware image or station upload, bytes.
    pub max_file_bytes: u64,
    /// Station uploads at once.
    pub max_uploads: usize,
    /// Firmware downloads at once.
    pub max_downloads: usize,
    /// Data directory (SQLite file).
    pub data_dir: PathBuf,
    /// Explicit store URL.
    pub database_url: Option<String>,
    /// Cluster mode: NATS, the cluster's name and this node's id.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Explicit API key.
    pub api_key: Option<String>,
    /// 0, 1, 2 or 3.
    pub security_profile: u8,
    /// The boot answer for identities not in the registry.
    pub unknown_stations: UnknownStations,
    /// Seconds.
    pub heartbeat_interval: u32,
    /// CSMS-initiated call timeout.
    pub call_timeout: Duration,
    /// IANA zone for tariff restrictions.
    pub time_zone: String,
    /// Amount held on a prepaid wallet when a session starts.
    pub hold_amount: rust_decimal::Decimal,
    /// OCPI country code.
    pub ocpi_country_code: String,
    /// OCPI party id.
    pub ocpi_party_id: String,
    /// Public base URL of the HTTP port (OCPI at `/ocpi` under it).
    pub public_url: Option<String>,
    /// Site limit, W, shared by the active sessions (smart charging).
    pub site_limit_w: Option<u32>,
    /// TLS certificate chain (profiles 2, 3).
    pub tls_cert: Option<PathBuf>,
    /// TLS key (profiles 2, 3).
    pub tls_key: Option<PathBuf>,
    /// Client CA (profile 3).
    pub tls_client_ca: Option<PathBuf>,
    /// The TLS library of the `wss://` port.
    pub tls_backend: TlsBackend,
    /// OpenSSL only: a second certificate chain and key, of the other key
    /// type than `tls_cert`'s.
    pub tls_rsa: Option<(PathBuf, PathBuf)>,
    /// Lab: OCPI partner URLs may be plain http and on loopback or private
    /// addresses (`evproto_ocpi::credentials::UrlPolicy::lab`); off, the
    /// strict policy.
    pub ocpi_allow_private_urls: bool,
    /// First retry delay of a failed outbox entry, doubled per attempt up to
    /// 10 minutes.
    pub outbox_retry_base: Duration,
    /// What one station may make the CSMS hold (EVSEs, connectors, report rows).
    pub station_limits: crate::ocpp::StationLimits,
    /// How the log on stderr is written.
    pub log_format: LogFormat,
    /// Demand response: the VTN this CSMS is an OpenADR 3 VEN of (flags only).
    pub openadr: Option<crate::openadr::VenConfig>,
    /// How V2X sessions are planned (`crate::v2x`; the defaults, set in code).
    pub v2x: crate::v2x::V2xConfig,
    /// Plug & Charge (flags only): off unless `--pnc`.
    pub pnc: Option<crate::pnc::PncConfig>,
    /// The app API's rate limits.
    pub app_rates: AppRates,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([0, 0, 0, 0]),
            admin_bind: IpAddr::from([127, 0, 0, 1]),
            ocpp_port: 9000,
            ocpp_tls_port: None,
            http_port: 8080,
            admin_port: 8081,
            http_header_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(60),
            http_idle_timeout: Duration::from_secs(30),
            http_max_connections: 512,
            max_file_bytes: 64 * 1024 * 1024,
            max_uploads: 4,
            max_downloads: 32,
            data_dir: PathBuf::from("data"),
            database_url: None,
            cluster: None,
            api_key: None,
            security_profile: 1,
            unknown_stations: UnknownStations::Reject,
            heartbeat_interval: 300,
            call_timeout: Duration::from_secs(30),
            time_zone: "UTC".into(),
            hold_amount: rust_decimal::Decimal::from(30),
            ocpi_country_code: "NL".into(),
            ocpi_party_id: "EVP".into(),
            public_url: None,
            site_limit_w: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_backend: TlsBackend::Rustls,
            tls_rsa: None,
            ocpi_allow_private_urls: false,
            outbox_retry_base: Duration::from_secs(1),
            station_limits: crate::ocpp::StationLimits::default(),
            log_format: LogFormat::Text,
            openadr: None,
            v2x: crate::v2x::V2xConfig::default(),
            pnc: None,
            app_rates: AppRates::default(),
        }
    }
}

/// Hides a URL's password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// Defaults ← file ← environment/flags.
    ///
    /// # Errors
    ///
    /// The file is unreadable or has unknown keys or bad values.
    pub fn load(args: &Args) -> Result<Config, String> {
        let file: File = match &args.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let d = Config::default();
        let c = Config {
            bind: args.bind.or(file.bind).unwrap_or(d.bind),
            admin_bind: args.admin_bind.or(file.admin_bind).unwrap_or(d.admin_bind),
            ocpp_port: args.ocpp_port.or(file.ocpp_port).unwrap_or(d.ocpp_port),
            ocpp_tls_port: args.ocpp_tls_port.or(file.ocpp_tls_port),
            http_port: args.http_port.or(file.http_port).unwrap_or(d.http_port),
            admin_port: args.admin_port.or(file.admin_port).unwrap_or(d.admin_port),
            http_header_timeout: args
                .http_header_timeout
                .or(file.http_header_timeout)
                .map_or(d.http_header_timeout, Duration::from_secs),
            http_request_timeout: args
                .http_request_timeout
                .or(file.http_request_timeout)
                .map_or(d.http_request_timeout, Duration::from_secs),
            http_idle_timeout: args
                .http_idle_timeout
                .or(file.http_idle_timeout)
                .map_or(d.http_idle_timeout, Duration::from_secs),
            http_max_connections: args
                .http_max_connections
                .or(file.http_max_connections)
                .unwrap_or(d.http_max_connections),
            max_file_bytes: args
                .max_file_bytes
                .or(file.max_file_bytes)
                .unwrap_or(d.max_file_bytes),
            max_uploads: args
                .max_uploads
                .or(file.max_uploads)
                .unwrap_or(d.max_uploads),
            max_downloads: args
                .max_downloads
                .or(file.max_downloads)
                .unwrap_or(d.max_downloads),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            database_url: args
                .database_url
                .clone()
                .or(file.database_url)
                .filter(|u| !u.is_empty()),
            cluster: args.cluster.to_config()?,
            api_key: args
                .api_key
                .clone()
                .or(file.api_key)
                .filter(|k| !k.is_empty()),
            security_profile: args
                .security_profile
                .or(file.security_profile)
                .unwrap_or(d.security_profile),
            unknown_stations: args
                .unknown_stations
                .or(file.unknown_stations)
                .unwrap_or(d.unknown_stations),
            heartbeat_interval: args
                .heartbeat_interval
                .or(file.heartbeat_interval)
                .unwrap_or(d.heartbeat_interval),
            call_timeout: Duration::from_secs(
                args.call_timeout.or(file.call_timeout).unwrap_or(30),
            ),
            time_zone: args
                .time_zone
                .clone()
                .or(file.time_zone)
                .unwrap_or(d.time_zone),
            hold_amount: args
                .hold_amount
                .or(file.hold_amount)
                .unwrap_or(d.hold_amount),
            ocpi_country_code: args
                .ocpi_country_code
                .clone()
                .or(file.ocpi_country_code)
                .unwrap_or(d.ocpi_country_code),
            ocpi_party_id: args
                .ocpi_party_id
                .clone()
                .or(file.ocpi_party_id)
                .unwrap_or(d.ocpi_party_id),
            public_url: args.public_url.clone().or(file.public_url),
            site_limit_w: args.site_limit_w.or(file.site_limit_w),
            tls_cert: args.tls_cert.clone().or(file.tls_cert),
            tls_key: args.tls_key.clone().or(file.tls_key),
            tls_client_ca: args.tls_client_ca.clone().or(file.tls_client_ca),
            tls_backend: args
                .tls_backend
                .or(file.tls_backend)
                .unwrap_or(d.tls_backend),
            tls_rsa: match (
                args.tls_rsa_cert.clone().or(file.tls_rsa_cert),
                args.tls_rsa_key.clone().or(file.tls_rsa_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err("tls_rsa_cert and tls_rsa_key go together".into()),
            },
            ocpi_allow_private_urls: args
                .ocpi_allow_private_urls
                .or(file.ocpi_allow_private_urls)
                .unwrap_or(d.ocpi_allow_private_urls),
            outbox_retry_base: args
                .outbox_retry_base_ms
                .or(file.outbox_retry_base_ms)
                .map_or(d.outbox_retry_base, Duration::from_millis),
            station_limits: d.station_limits,
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            openadr: args.openadr.to_config()?,
            v2x: d.v2x.clone(),
            pnc: args.pnc.to_config()?,
            app_rates: AppRates {
                account: args
                    .app_account_rate
                    .or(file.app_account_rate)
                    .unwrap_or(d.app_rates.account),
                client: args
                    .app_client_rate
                    .or(file.app_client_rate)
                    .unwrap_or(d.app_rates.client),
            },
        };
        if c.outbox_retry_base.is_zero() {
            return Err("outbox_retry_base_ms: positive".into());
        }
        if c.security_profile >= 2 && (c.tls_cert.is_none() || c.tls_key.is_none()) {
            return Err("security_profile 2 and 3 need tls_cert and tls_key".into());
        }
        if c.security_profile == 3 && c.tls_client_ca.is_none() {
            return Err("security_profile 3 needs tls_client_ca".into());
        }
        if c.tls_rsa.is_some() && c.tls_backend != TlsBackend::Openssl {
            return Err(
                "tls_rsa_cert: a second certificate needs tls_backend openssl (rustls serves one)"
                    .into(),
            );
        }
        if c.tls_rsa.is_some() && (c.tls_cert.is_none() || c.tls_key.is_none()) {
            return Err("tls_rsa_cert is the second certificate: set tls_cert and tls_key".into());
        }
        if c.ocpp_tls_port.is_some() && (c.tls_cert.is_none() || c.tls_key.is_none()) {
            return Err("ocpp_tls_port needs tls_cert and tls_key".into());
        }
        if c.ocpp_tls_port.is_some_and(|p| p != 0 && p == c.ocpp_port) {
            return Err("ocpp_tls_port: a port of its own, not ocpp_port".into());
        }
        if c.site_limit_w == Some(0) {
            return Err("site_limit_w: positive".into());
        }
        if c.ocpi_country_code.len() != 2
            || c.ocpi_party_id.len() != 3
            || !c
                .ocpi_country_code
                .chars()
                .chain(c.ocpi_party_id.chars())
                .all(|ch| ch.is_ascii_alphanumeric())
        {
            return Err("ocpi_country_code: 2 letters, ocpi_party_id: 3 letters or digits".into());
        }
        if c.hold_amount < rust_decimal::Decimal::ZERO {
            return Err("hold_amount: not negative".into());
        }
        if c.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!("time_zone: {} is not an IANA zone", c.time_zone));
        }
        if c.security_profile > 3 {
            return Err("security_profile: 0, 1, 2 or 3".into());
        }
        if c.api_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err("api_key: at least 16 characters".into());
        }
        if c.call_timeout.is_zero() || c.heartbeat_interval == 0 {
            return Err("call_timeout and heartbeat_interval must be positive".into());
        }
        if c.cluster.is_some() {
            crate::cluster::check_store(c.database_url.as_deref())?;
        }
        c.check_http()?;
        Ok(c)
    }

    /// The HTTP settings are usable: positive limits, the two ports apart,
    /// API requests allowed longer than the station calls they wait for.
    fn check_http(&self) -> Result<(), String> {
        if [
            self.http_header_timeout,
            self.http_request_timeout,
            self.http_idle_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return Err(
                "http_header_timeout, http_request_timeout and http_idle_timeout: positive".into(),
            );
        }
        if self.http_request_timeout <= self.call_timeout {
            return Err(format!(
                "http_request_timeout ({} s) must be longer than call_timeout ({} s)",
                self.http_request_timeout.as_secs(),
                self.call_timeout.as_secs()
            ));
        }
        if self.http_max_connections == 0
            || self.max_uploads == 0
            || self.max_downloads == 0
            || self.max_file_bytes == 0
        {
            return Err(
                "http_max_connections, max_uploads, max_downloads, max_file_bytes: positive".into(),
            );
        }
        if self.http_port != 0 && self.http_port == self.admin_port {
            return Err(format!(
                "admin_port: the operator API needs a port of its own, not http_port {}",
                self.http_port
            ));
        }
        Ok(())
    }

    /// Whether a station under security `profile` can connect here: 0 and 1
    /// need the plain ws:// port, 2 and 3 a TLS one (3 with `tls_client_ca`
    /// too). Why not, when it cannot.
    ///
    /// # Errors
    ///
    /// The reason, for the operator.
    pub fn serves_profile(&self, profile: u8) -> Result<(), String> {
        let two_ports = self.ocpp_tls_port.is_some();
        let plain = two_ports || self.security_profile < 2;
        let tls = two_ports || self.security_profile >= 2;
        match profile {
            0 | 1 if !plain => Err(format!(
                "security_profile {profile} connects over plain ws://, and this CSMS serves OCPP on TLS only (set ocpp_tls_port to serve both)"
            )),
            2 | 3 if !tls => Err(format!(
                "security_profile {profile} connects over TLS (wss://), and this CSMS serves no TLS port (set tls_cert, tls_key and ocpp_tls_port)"
            )),
            3 if self.tls_client_ca.is_none() => Err(
                "security_profile 3 needs the CSMS's tls_client_ca (the CA of the stations' client certificates)".into(),
            ),
            0..=3 => Ok(()),
            _ => Err("security_profile: 0, 1, 2 or 3".into()),
        }
    }

    /// The store URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("csms.db").display()
            ),
        }
    }

    /// The configuration as printed at start (secrets hidden).
    pub fn shown(&self) -> Value {
        let mut shown = json!({
            "bind": self.bind.to_string(), "ocpp_port": self.ocpp_port, "ocpp_tls_port": self.ocpp_tls_port, "http_port": self.http_port,
            "admin_bind": self.admin_bind.to_string(), "admin_port": self.admin_port,
            "http_header_timeout_s": self.http_header_timeout.as_secs(),
            "http_request_timeout_s": self.http_request_timeout.as_secs(),
            "http_idle_timeout_s": self.http_idle_timeout.as_secs(),
            "http_max_connections": self.http_max_connections, "max_file_bytes": self.max_file_bytes,
            "max_uploads": self.max_uploads, "max_downloads": self.max_downloads,
            "data_dir": self.data_dir.display().to_string(), "database_url": redact(&self.database_url()),
            "cluster": self.cluster.as_ref().map(|c| json!({"nats": redact(&c.url), "name": c.name, "node_id": c.node, "lease_s": c.lease.as_secs()})),
            "api_key": if self.api_key.is_some() { "(set)" } else { "(generated or stored as a hash)" },
            "security_profile": self.security_profile, "unknown_stations": self.unknown_stations,
            "heartbeat_interval": self.heartbeat_interval, "call_timeout_s": self.call_timeout.as_secs(),
            "time_zone": self.time_zone, "hold_amount": self.hold_amount.to_string(),
            "ocpi_country_code": self.ocpi_country_code, "ocpi_party_id": self.ocpi_party_id,
            "public_url": self.public_url, "site_limit_w": self.site_limit_w,
            "tls": json!({"backend": self.tls_backend,
                "cert": self.tls_cert.as_ref().map(|p| p.display().to_string()),
                "rsa_cert": self.tls_rsa.as_ref().map(|(c, _)| c.display().to_string()),
                "client_ca": self.tls_client_ca.as_ref().map(|p| p.display().to_string())}),
            "ocpi_allow_private_urls": self.ocpi_allow_private_urls,
            "outbox_retry_base_ms": u64::try_from(self.outbox_retry_base.as_millis()).unwrap_or(u64::MAX),
            "log_format": self.log_format,
            "openadr_vtn": self.openadr.as_ref().map(|o| redact(&o.vtn)),
            "openadr_program": self.openadr.as_ref().map(|o| &o.program),
            "pnc": self.pnc.as_ref().map(|p| json!({"organisation": p.organisation, "extra_mo_roots": p.mo_roots.len(), "certificate_days": p.certificate_lifetime.as_secs() / 86_400, "renew_days": p.renew_before.as_secs() / 86_400, "ocsp_validity_s": p.ocsp_validity.as_secs()})),
        });
        // apart: one more key takes `json!` past its recursion limit
        shown["app_account_rate"] = self.app_rates.account.to_string().into();
        shown["app_client_rate"] = self.app_rates.client.to_string().into();
        shown
    }
}

fn read_file(p: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn precedence_and_validation() {
        let dir = std::env::temp_dir().join(format!("csms-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "ocpp_port = 9100\nhttp_port = 8100\nunknown_stations = \"accept\"\n",
        )
        .unwrap();
        let t = T::parse_from([
            "csms",
            "--config",
            f.to_str().unwrap(),
            "--http-port",
            "8200",
        ]);
        let c = Config::load(&t.a).unwrap();
        assert_eq!(
            (c.ocpp_port, c.http_port, c.unknown_stations),
            (9100, 8200, UnknownStations::Accept)
        );
        assert!(c.database_url().starts_with("sqlite://"));
        std::fs::write(&f, "ocpp_prot = 1\n").unwrap();
        assert!(
            Config::load(&T::parse_from(["csms", "--config", f.to_str().unwrap()]).a)
                .unwrap_err()
                .contains("unknown field")
        );
        std::fs::write(&f, "api_key = \"short\"\n").unwrap();
        assert!(Config::load(&T::parse_from(["csms", "--config", f.to_str().unwrap()]).a).is_err());
        assert!(T::try_parse_from(["csms", "--security-profile", "4"]).is_err());
        // profiles 2 and 3 need their PEM files
        let p3 = T::parse_from([
            "csms",
            "--security-profile",
            "3",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ]);
        assert!(Config::load(&p3.a).unwrap_err().contains("tls_client_ca"));
        let p2 = T::parse_from(["csms", "--security-profile", "2"]);
        assert!(Config::load(&p2.a).unwrap_err().contains("tls_cert"));
        // a second (RSA) certificate is OpenSSL's, with both of its files
        let rsa = |extra: &[&str]| {
            let mut argv = vec!["csms", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
            argv.extend_from_slice(extra);
            Config::load(&T::parse_from(argv).a)
        };
        let e = rsa(&["--tls-rsa-cert", "r.pem", "--tls-rsa-key", "r.key"]).unwrap_err();
        assert!(e.contains("tls_backend openssl"), "{e}");
        let e = rsa(&["--tls-backend", "openssl", "--tls-rsa-cert", "r.pem"]).unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let c = rsa(&[
            "--tls-backend",
            "openssl",
            "--tls-rsa-cert",
            "r.pem",
            "--tls-rsa-key",
            "r.key",
        ])
        .unwrap();
        assert_eq!(c.tls_backend, TlsBackend::Openssl);
        assert_eq!(c.shown()["tls"]["rsa_cert"], "r.pem");
        assert!(T::try_parse_from(["csms", "--tls-backend", "gnutls"]).is_err());
        // a wss:// port beside the ws:// one needs the PEM files and a port of its own
        let wss = T::parse_from(["csms", "--ocpp-tls-port", "9443"]);
        assert!(Config::load(&wss.a).unwrap_err().contains("tls_cert"));
        let both = |port: &str| {
            let t = T::parse_from([
                "csms",
                "--ocpp-tls-port",
                port,
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ]);
            Config::load(&t.a)
        };
        let c = both("9443").unwrap();
        assert_eq!((c.ocpp_port, c.ocpp_tls_port), (9000, Some(9443)));
        assert_eq!(c.shown()["ocpp_tls_port"], 9443);
        assert!(both("9000").unwrap_err().contains("ocpp_tls_port"));
        // which station profiles each layout serves
        assert!((0..=2).all(|p| c.serves_profile(p).is_ok()));
        assert!(c.serves_profile(3).unwrap_err().contains("tls_client_ca"));
        assert!(c.serves_profile(4).is_err());
        let plain_only = Config::load(&T::parse_from(["csms"]).a).unwrap();
        assert!(plain_only.serves_profile(1).is_ok());
        assert!(plain_only.serves_profile(2).unwrap_err().contains("TLS"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_stations_keeps_its_spellings() {
        let flag = |v: &str| T::try_parse_from(["csms", "--unknown-stations", v]);
        let c = Config::load(&flag("pending").unwrap().a).unwrap();
        assert_eq!(c.unknown_stations, UnknownStations::Pending);
        assert_eq!(c.shown()["unknown_stations"], "pending");
        assert_eq!(
            Config::load(&flag("accept").unwrap().a)
                .unwrap()
                .unknown_stations,
            UnknownStations::Accept
        );
        assert!(flag("Accepted").is_err());
        assert_eq!(
            Config::load(&T::parse_from(["csms"]).a)
                .unwrap()
                .unknown_stations,
            UnknownStations::Reject
        );
        let dir = std::env::temp_dir().join(format!("csms-config-us-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        let from_file = |text: &str| {
            std::fs::write(&f, text).unwrap();
            Config::load(&T::parse_from(["csms", "--config", f.to_str().unwrap()]).a)
        };
        assert_eq!(
            from_file("unknown_stations = \"reject\"\n")
                .unwrap()
                .unknown_stations,
            UnknownStations::Reject
        );
        assert!(from_file("unknown_stations = \"maybe\"\n")
            .unwrap_err()
            .contains("unknown_stations"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_admin_port_is_loopback_and_apart_by_default() {
        let c = Config::load(&T::parse_from(["csms"]).a).unwrap();
        assert_eq!(
            (c.admin_bind, c.admin_port, c.http_port),
            (IpAddr::from([127, 0, 0, 1]), 8081, 8080)
        );
        assert_eq!(c.shown()["admin_bind"], "127.0.0.1");
        assert_eq!(c.shown()["admin_port"], 8081);
        let wide = T::parse_from(["csms", "--admin-bind", "0.0.0.0", "--admin-port", "9443"]);
        let c = Config::load(&wide.a).unwrap();
        assert_eq!(
            (c.admin_bind, c.admin_port),
            (IpAddr::from([0, 0, 0, 0]), 9443)
        );
        let same = T::parse_from(["csms", "--http-port", "8080", "--admin-port", "8080"]);
        assert!(Config::load(&same.a).unwrap_err().contains("admin_port"));
        let short = T::parse_from(["csms", "--http-request-timeout", "30"]);
        assert!(Config::load(&short.a).unwrap_err().contains("call_timeout"));
        let zero = T::parse_from(["csms", "--http-header-timeout", "0"]);
        assert!(Config::load(&zero.a).is_err());
        let none = T::parse_from(["csms", "--max-uploads", "0"]);
        assert!(Config::load(&none.a).is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://data/csms.db"), "sqlite://data/csms.db");
    }
}
