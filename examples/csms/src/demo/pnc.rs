//! The demo's Plug & Charge step: a car with no contract plugs into a
//! 2.0.1 station (`PNC0`); over ISO 15118-2 (the `iso15118` session
//! machines in memory, the simulator's [`evproto_sim::iso15118`]) it asks
//! for a contract, which the station fetches from the CSMS
//! (`Get15118EVCertificate`: the CSMS's built-in contract provider signs
//! one under its MO root); the car installs it, then authorizes with it
//! (`Authorize` with the contract chain, checked by the CSMS against its
//! trusted MO roots and its OCSP responder) and charges. One step reports
//! it; its detail has the `emaid`, the `protocol`, the charge `loops` and
//! the `energy_wh`.
//!
//! Then the demo's eMSP (the roaming step's) gives the CSMS the contract's
//! token (OCPI 2.3.0, type `EMAID`), the operator sets the site's limit
//! (smart charging on), and the car plugs in again: it is authorized by
//! its certificate, the station starts the transaction, tells the CSMS the
//! car's needs (`NotifyEVChargingNeeds`), gets the `TxProfile` the CSMS
//! computes from the site's limit and those needs, and offers it to the car
//! as its SA schedule; the car charges under it. Then the operator lowers
//! the site's limit: the CSMS sends the transaction a new `TxProfile`, the
//! station's SECC asks the car to renegotiate (`EVSENotification`
//! `ReNegotiation`) and offers the new schedule, and the car follows it. The
//! transaction carries the energy the ISO 15118 loop metered, and the CSMS
//! prices it and sends the CDR to the eMSP (a second step: the `emaid`,
//! `site_limit_w` and `lowered_limit_w`, the first PMax of each schedule
//! offered, `offered_pmax_w`, the `renegotiations`, the `schedule_pmax_w`
//! the car chose last, the power it `drawn_w` last, `energy_wh`, and the
//! `cdr` as the eMSP received it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use evproto_csms_core::limits::{InstalledProfile, Purpose, RateUnit, TxRef};
use evproto_iso15118::pki::demo::DemoPki;
use evproto_iso15118::pki::{Cert, TrustStore};
use evproto_iso15118::session::{
    ContractStatus, EvPnc, EvStatus, EvccConfig, Provisioning, ScheduleTuple, SeccConfig, SeccPnc,
};
use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::Ctx;
use evproto_ocpp_types::v201;
use evproto_sim::iso15118::{run_session, Backend, Needs, Plan};
use evproto_sim::profiles::{Criteria, Profiles};
use serde_json::json;

use super::{api, Steps, PASSWORD};

const STATION: &str = "PNC0";
/// The card the station's own reader would accept (EIM; not used by a
/// Plug & Charge car).
const CARD: &str = "PNC-CARD";
/// The second step's name.
const BILLED: &str = "Plug & Charge: plugged in again, charged under the CSMS's ISO 15118 schedule, priced, the CDR sent to the contract's eMSP";
/// The site's limit the CSMS shares when the car plugs in again, W: the
/// schedule it offers the car.
const SITE_LIMIT_W: u32 = 7_400;
/// The site's limit once the car charges, W: the schedule renegotiated.
const LOWERED_LIMIT_W: u32 = 3_700;

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default()
}

/// An `Authorize` of `token` (of `kind`), with a contract chain when given
/// (`None`: a value too long for the message).
fn authorize(
    token: &str,
    kind: v201::IdTokenEnumType,
    chain_pem: Option<&str>,
) -> Option<v201::AuthorizeRequest> {
    Some(v201::AuthorizeRequest {
        custom_data: None,
        id_token: v201::IdTokenType {
            custom_data: None,
            additional_info: None,
            id_token: token.parse().ok()?,
            r#type: kind,
        },
        certificate: match chain_pem {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        },
        iso15118certificate_hash_data: None,
    })
}

/// What the demo station holds: the charging profiles its CSMS installed
/// (`SetChargingProfile`, `ClearChargingProfile`), which it reports
/// (`GetCompositeSchedule`) and offers the car as its SA schedule.
type Held = Arc<Mutex<Profiles>>;

fn held(h: &Held) -> std::sync::MutexGuard<'_, Profiles> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// The demo station's own EVSE (its only one).
const EVSE: u32 = 1;
/// The demo station's rating, W (a time no profile limits is offered at it).
const EVSE_MAX_W: f64 = 50_000.0;
/// How long the station waits for the CSMS's `TxProfile` after the car's
/// needs before it offers what it holds.
const PROFILE_WAIT: Duration = Duration::from_secs(10);

/// K01: a profile for the station's EVSE (or the whole station) is kept.
async fn set_profile(
    ctx: Ctx<Held>,
    req: v201::SetChargingProfileRequest,
) -> Result<v201::SetChargingProfileResponse, CallError> {
    let ok = InstalledProfile::try_from(&req)
        .ok()
        .filter(|p| p.evse_id <= EVSE)
        .is_some_and(|p| held(&ctx.state).set(p));
    Ok(v201::SetChargingProfileResponse {
        custom_data: None,
        status: if ok {
            v201::ChargingProfileStatusEnumType::Accepted
        } else {
            v201::ChargingProfileStatusEnumType::Rejected
        },
        status_info: None,
    })
}

/// K10: the profiles matching the request go.
async fn clear_profile(
    ctx: Ctx<Held>,
    req: v201::ClearChargingProfileRequest,
) -> Result<v201::ClearChargingProfileResponse, CallError> {
    use v201::ChargingProfilePurposeEnumType as P;
    let c = req.charging_profile_criteria.as_ref();
    let n = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
    let purpose = match c.and_then(|c| c.charging_profile_purpose) {
        None => None,
        Some(P::ChargingStationExternalConstraints) => Some(Purpose::ExternalConstraints),
        Some(P::ChargingStationMaxProfile) => Some(Purpose::StationMax),
        Some(P::TxDefaultProfile) => Some(Purpose::TxDefault),
        Some(P::TxProfile) => Some(Purpose::Tx),
        // a purpose this station never holds: nothing matches
        Some(_) => Some(Purpose::LocalGeneration),
    };
    let criteria = Criteria {
        id: req.charging_profile_id,
        evse: n(c.and_then(|c| c.evse_id)),
        purpose,
        stack_level: n(c.and_then(|c| c.stack_level)),
    };
    let cleared = held(&ctx.state).clear(criteria);
    Ok(v201::ClearChargingProfileResponse {
        custom_data: None,
        status: if cleared {
            v201::ClearChargingProfileStatusEnumType::Accepted
        } else {
            v201::ClearChargingProfileStatusEnumType::Unknown
        },
        status_info: None,
    })
}

/// K08: the composite of the profiles held for the EVSE, in W (a time no
/// profile limits at the EVSE's rating); `Rejected` for another EVSE or
/// in A.
async fn composite(
    ctx: Ctx<Held>,
    req: v201::GetCompositeScheduleRequest,
) -> Result<v201::GetCompositeScheduleResponse, CallError> {
    let rejected = v201::GetCompositeScheduleResponse {
        custom_data: None,
        status: v201::GenericStatusEnumType::Rejected,
        status_info: None,
        schedule: None,
    };
    let in_watts = req
        .charging_rate_unit
        .is_none_or(|u| u == v201::ChargingRateUnitEnumType::W);
    let (Ok(evse @ 0..=EVSE), Ok(duration), true) = (
        u32::try_from(req.evse_id),
        u32::try_from(req.duration),
        in_watts,
    ) else {
        return Ok(rejected);
    };
    let now = chrono::Utc::now();
    let Ok(c) = held(&ctx.state).composite(evse, None, now, duration, RateUnit::W) else {
        return Ok(rejected);
    };
    let max = rust_decimal::Decimal::from(EVSE_MAX_W as i64);
    Ok(v201::GetCompositeScheduleResponse {
        custom_data: None,
        status: v201::GenericStatusEnumType::Accepted,
        status_info: None,
        schedule: Some(v201::CompositeScheduleType {
            custom_data: None,
            charging_schedule_period: c
                .periods
                .iter()
                .map(|p| v201::ChargingSchedulePeriodType {
                    custom_data: None,
                    start_period: i32::try_from(p.start_s).unwrap_or(i32::MAX),
                    limit: p.limit.unwrap_or(max),
                    number_phases: p.number_phases.map(i32::from),
                    phase_to_use: None,
                })
                .collect(),
            evse_id: req.evse_id,
            duration: req.duration,
            schedule_start: now,
            charging_rate_unit: v201::ChargingRateUnitEnumType::W,
        }),
    })
}

/// The transaction the demo station runs for a car authorized by its
/// contract: its id, and when it started.
const TX_ID: &str = "PNC-DEMO-1";

/// The station between the car's SECC and the CSMS: its typed 2.0.1 calls,
/// the profiles it holds, and (when `transacts`) the transaction it starts
/// once the car's contract is accepted.
struct Station<'a> {
    client: &'a Client,
    held: Held,
    /// The car's limits, for the `NotifyEVChargingNeeds` it sends.
    car: EvStatus,
    /// Starts a transaction when the car's contract is accepted, and asks
    /// the CSMS for a schedule with the car's needs.
    transacts: bool,
    /// The transaction started (`TransactionEvent` `Started` accepted), and when.
    started: Option<chrono::DateTime<chrono::Utc>>,
    /// The schedule offered the car came with the CSMS's `TxProfile` for
    /// the transaction.
    tx_profile: bool,
    /// The operator's API (admin port, key): once the car charges, the
    /// operator lowers the site's limit to [`LOWERED_LIMIT_W`].
    operator: Option<(u16, String)>,
    /// The site's limit was lowered.
    lowered: bool,
    /// The first PMax (W) of each schedule offered the car, in order.
    offered: Vec<f64>,
}

impl Station<'_> {
    /// The schedule the station offers the car: the composite of what it
    /// holds for its EVSE and the transaction, a day from now (none when
    /// no profile limits it).
    fn offered(&self) -> Vec<ScheduleTuple> {
        let tx = self.started.map(|started_at| TxRef {
            id: TX_ID.into(),
            started_at,
        });
        held(&self.held).sa_schedule(EVSE, tx, chrono::Utc::now(), EVSE_MAX_W)
    }

    /// The limit the station holds for the transaction now, W.
    fn limit_w(&self) -> Option<f64> {
        let now = chrono::Utc::now();
        let tx = self.started.map(|started_at| TxRef {
            id: TX_ID.into(),
            started_at,
        });
        held(&self.held).limit_w(EVSE, tx, now)
    }

    /// Whether the CSMS's `TxProfile` for the transaction is held.
    fn has_tx_profile(&self) -> bool {
        self.started.is_some() && held(&self.held).has_tx_profile(EVSE, TX_ID)
    }

    /// K15: `NotifyEVChargingNeeds` with what the car asked for; whether
    /// the CSMS will send a schedule (`Accepted`).
    async fn notify_needs(&self, needs: &Needs) -> bool {
        let now = chrono::Utc::now();
        let req = v201::NotifyEVChargingNeedsRequest {
            custom_data: None,
            max_schedule_tuples: needs.max_entries.map(i32::from),
            charging_needs: v201::ChargingNeedsType {
                custom_data: None,
                ac_charging_parameters: None,
                dc_charging_parameters: Some(v201::DCChargingParametersType {
                    custom_data: None,
                    ev_max_current: self.car.max_current as i32,
                    ev_max_voltage: self.car.max_voltage as i32,
                    energy_amount: needs.energy_wh.map(|e| e as i32),
                    ev_max_power: Some(self.car.max_power as i32),
                    state_of_charge: Some(i32::from(self.car.soc)),
                    ev_energy_capacity: Some(self.car.battery_capacity_wh as i32),
                    full_soc: None,
                    bulk_soc: None,
                }),
                requested_energy_transfer: v201::EnergyTransferModeEnumType::DC,
                departure_time: needs
                    .departure_s
                    .map(|s| now + chrono::Duration::seconds(i64::from(s))),
            },
            evse_id: EVSE as i32,
        };
        self.client
            .call::<v201::action::NotifyEVChargingNeeds>(&req)
            .await
            .is_ok_and(|a| a.status == v201::NotifyEVChargingNeedsStatusEnumType::Accepted)
    }

    /// `Get15118EVCertificate` with `action` and the car's EXI request: the
    /// CSMS's EXI answer when `Accepted`.
    async fn ev_certificate(
        &self,
        action: v201::CertificateActionEnumType,
        exi: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = v201::Get15118EVCertificateRequest {
            custom_data: None,
            iso15118schema_version: "urn:iso:15118:2:2013:MsgDef".parse().ok()?,
            action,
            exi_request: b64.encode(exi).parse().ok()?,
        };
        let a = self
            .client
            .call::<v201::action::Get15118EVCertificate>(&req)
            .await
            .ok()?;
        if a.status != v201::Iso15118EVCertificateStatusEnumType::Accepted {
            return None;
        }
        b64.decode(a.exi_response.as_str()).ok()
    }
}

impl Backend for Station<'_> {
    async fn authorize_card(&mut self) -> bool {
        let Some(req) = authorize(CARD, v201::IdTokenEnumType::ISO14443, None) else {
            return false;
        };
        self.client
            .call::<v201::action::Authorize>(&req)
            .await
            .is_ok_and(|a| a.id_token_info.status == v201::AuthorizationStatusEnumType::Accepted)
    }

    async fn authorize_contract(&mut self, emaid: &str, chain_pem: String) -> ContractStatus {
        let Some(req) = authorize(emaid, v201::IdTokenEnumType::EMAID, Some(&chain_pem)) else {
            return ContractStatus::Rejected;
        };
        let status = match self.client.call::<v201::action::Authorize>(&req).await {
            Ok(a)
                if a.certificate_status
                    == Some(v201::AuthorizeCertificateStatusEnumType::CertificateRevoked) =>
            {
                ContractStatus::Revoked
            }
            Ok(a)
                if a.id_token_info.status == v201::AuthorizationStatusEnumType::Accepted
                    && a.certificate_status
                        == Some(v201::AuthorizeCertificateStatusEnumType::Accepted) =>
            {
                ContractStatus::Accepted
            }
            _ => ContractStatus::Rejected,
        };
        if status != ContractStatus::Accepted || !self.transacts {
            return status;
        }
        // E02: authorized, the transaction starts (the meter at 0)
        let at = chrono::Utc::now();
        let Some(req) = tx_event(v201::TransactionEventEnumType::Started, 0, emaid, 0.0, at) else {
            return ContractStatus::Rejected;
        };
        match self
            .client
            .call::<v201::action::TransactionEvent>(&req)
            .await
        {
            Ok(a)
                if a.id_token_info.as_ref().map(|i| i.status)
                    == Some(v201::AuthorizationStatusEnumType::Accepted) =>
            {
                self.started = Some(at);
                status
            }
            _ => ContractStatus::Rejected,
        }
    }

    async fn install_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(v201::CertificateActionEnumType::Install, exi)
            .await
    }

    async fn update_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(v201::CertificateActionEnumType::Update, exi)
            .await
    }

    /// K15: in a transaction, the car's needs go to the CSMS, which
    /// answers with a `TxProfile` computed from the site's limit and them;
    /// the station offers the composite of what it holds.
    async fn schedules(&mut self, needs: &Needs) -> Vec<ScheduleTuple> {
        // a renegotiation offers what the CSMS sent since (K15 after the
        // station's schedule changed)
        if self.transacts
            && self.started.is_some()
            && !needs.renegotiation
            && self.notify_needs(needs).await
        {
            let until = tokio::time::Instant::now() + PROFILE_WAIT;
            while !self.has_tx_profile() && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.tx_profile = self.has_tx_profile();
        }
        let offered = self.offered();
        if let Some(&(_, pmax)) = offered.first().and_then(|t| t.entries.first()) {
            self.offered.push(pmax);
        }
        offered
    }

    /// Once the car charges, the operator lowers the site's limit; the
    /// CSMS recomputes the shares and sends the transaction a new
    /// `TxProfile`; the station, holding it, has the SECC ask the car to
    /// renegotiate.
    async fn schedule_changed(&mut self, _loops: u32) -> bool {
        let Some((admin, key)) = self.operator.clone().filter(|_| !self.lowered) else {
            return false;
        };
        if !self.tx_profile {
            return false;
        }
        self.lowered = true;
        let limits = json!({ "limit_w": LOWERED_LIMIT_W });
        if !matches!(
            api(admin, &key, "PUT", "/api/site/limits", Some(&limits)).await,
            Ok((200, _))
        ) {
            return false;
        }
        let lowered = f64::from(LOWERED_LIMIT_W);
        let until = tokio::time::Instant::now() + PROFILE_WAIT;
        while tokio::time::Instant::now() < until {
            if self.limit_w().is_some_and(|w| w <= lowered) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// The step: the CSMS (started with Plug & Charge) on `admin` and
/// `ocpp_port`; `emsp`, the demo's eMSP, owns the contract the car gets.
pub(super) async fn story(
    admin: u16,
    key: &str,
    ocpp_port: u16,
    emsp: Option<&super::Emsp>,
    steps: &mut Steps,
) -> Result<(), String> {
    let (s, _) = api(
        admin,
        key,
        "PUT",
        &format!("/api/stations/{STATION}"),
        Some(&json!({"password": PASSWORD})),
    )
    .await?;
    if s != 201 {
        steps.record(
            "Plug & Charge: a contract installed, then charging by it",
            false,
            json!({"station_registered": s}),
        );
        return Ok(());
    }
    // what the CSMS trusts: its V2G root (the car's SECC chain) and its MO roots
    let (_, overview) = api(admin, key, "GET", "/api/pnc", None).await?;
    let pems = |pem: Option<&str>| -> Vec<Cert> {
        pem.and_then(|p| Cert::from_pem_chain(p.as_bytes()).ok())
            .unwrap_or_default()
    };
    let v2g_roots = TrustStore::new(pems(overview["v2g_root"].as_str()));
    let mo_roots = TrustStore::new(
        overview["trusted_mo_roots"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| pems(p.as_str()))
            .collect(),
    );
    // the car's maker: its provisioning certificate and key
    let t = unix_now();
    let maker = DemoPki::generate(b"demo car maker", "DEOEMC000000001", t - 86_400, t + 86_400)
        .map_err(|e| format!("the car maker's PKI: {e}"))?;
    let provisioning = Provisioning::new(
        maker.oem_provisioning.cert.der().to_vec(),
        maker.oem_provisioning.key_bytes(),
    );
    let profiles = Held::default();
    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
            STATION,
            ProtocolVersion::V201,
        )
        .with_password(PASSWORD),
        evproto_ocpp_rpc::Router::station_v201()
            .on::<v201::action::SetChargingProfile>(set_profile)
            .on::<v201::action::ClearChargingProfile>(clear_profile)
            .on::<v201::action::GetCompositeSchedule>(composite)
            .with_state(profiles.clone()),
        r#"{"reason":"PowerUp","chargingStation":{"vendorName":"evproto","model":"demo-pnc"}}"#,
        MemoryStore::default(),
    );
    station
        .wait_ready(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let secc = || {
        SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 8])
            .with_unix_time(unix_now())
            .with_pnc(Some(SeccPnc::new(mo_roots.clone(), [0x5a; 16])))
    };
    let evcc = |pnc: EvPnc| {
        EvccConfig::iso2_dc(vec![0x02, 0, 0, 0, 0, 3])
            .with_unix_time(unix_now())
            .with_loop_interval(Duration::from_millis(20))
            .with_pnc(Some(pnc))
    };
    let car = evcc(EvPnc::new(None, None, v2g_roots.clone())).ev;
    let backend = |transacts: bool| Station {
        client: &station,
        held: profiles.clone(),
        car: car.clone(),
        transacts,
        started: None,
        tx_profile: false,
        operator: transacts.then(|| (admin, key.to_owned())),
        lowered: false,
        offered: Vec::new(),
    };
    let plan = Plan {
        loops: 5,
        limit: Duration::from_secs(30),
    };
    let first = EvPnc::new(None, Some(provisioning.clone()), v2g_roots.clone());
    let outcome = run_session(secc(), evcc(first), &plan, &mut backend(false)).await;
    let installed = outcome.installed.clone();
    let emaid = installed.as_ref().map(|c| c.emaid.clone());
    let ok =
        outcome.finished() && emaid.is_some() && outcome.emaid == emaid && outcome.energy_wh > 0.0;
    steps.record(
        "Plug & Charge: a contract installed, then charging by it",
        ok,
        json!({"station": STATION, "emaid": outcome.emaid, "installed": emaid,
            "protocol": outcome.protocol.map(|p| format!("{p:?}")), "loops": outcome.loops,
            "energy_wh": outcome.energy_wh}),
    );
    if let (Some(contract), Some(emsp)) = (installed, emsp) {
        // the eMSP that owns the contract gives the CSMS its token (OCPI
        // 2.3.0, type EMAID); the car plugs in again
        let emaid = contract.emaid.clone();
        let token = json!({"country_code": "DE", "party_id": "EMS", "uid": emaid, "type": "EMAID",
            "contract_id": emaid, "issuer": "Demo eMSP", "valid": true, "whitelist": "ALLOWED",
            "last_updated": crate::store::now()});
        match emsp.cpo.put("tokens", &["DE", "EMS", &emaid], &token).await {
            Ok(_) => {
                // the site's limit: the CSMS shares it among the sessions
                // (smart charging) and sends the transaction its TxProfile
                let (s, _) = api(
                    admin,
                    key,
                    "PUT",
                    "/api/site/limits",
                    Some(&json!({ "limit_w": SITE_LIMIT_W })),
                )
                .await?;
                if s != 200 {
                    steps.record(BILLED, false, json!({"site_limits": s}));
                } else {
                    let again = EvPnc::new(Some(contract), Some(provisioning), v2g_roots);
                    let mut station_side = backend(true);
                    let outcome = run_session(secc(), evcc(again), &plan, &mut station_side).await;
                    billed(&station, emsp, &station_side, &outcome, steps).await?;
                }
            }
            Err(e) => {
                steps.record(
                    BILLED,
                    false,
                    json!({"error": format!("the eMSP's token not pushed: {e}")}),
                );
            }
        }
    }
    station.shutdown().await;
    Ok(())
}

/// A 2.0.1 `TransactionEvent` of the demo's transaction: `Started` with
/// the eMAID and the meter at 0, or `Ended` with the meter at `wh`.
fn tx_event(
    event: v201::TransactionEventEnumType,
    seq_no: i32,
    emaid: &str,
    wh: f64,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<v201::TransactionEventRequest> {
    use v201::TransactionEventEnumType as E;
    let (trigger, context, state, reason) = match event {
        E::Started => (
            v201::TriggerReasonEnumType::Authorized,
            v201::ReadingContextEnumType::TransactionBegin,
            Some(v201::ChargingStateEnumType::Charging),
            None,
        ),
        _ => (
            v201::TriggerReasonEnumType::EVCommunicationLost,
            v201::ReadingContextEnumType::TransactionEnd,
            None,
            Some(v201::ReasonEnumType::EVDisconnected),
        ),
    };
    Some(v201::TransactionEventRequest {
        custom_data: None,
        event_type: event,
        meter_value: Some(vec![v201::MeterValueType {
            custom_data: None,
            sampled_value: vec![v201::SampledValueType {
                custom_data: None,
                value: rust_decimal::Decimal::from_f64_retain(wh)?.round_dp(3),
                context: Some(context),
                measurand: Some(v201::MeasurandEnumType::EnergyActiveImportRegister),
                phase: None,
                location: None,
                signed_meter_value: None,
                unit_of_measure: None,
            }],
            timestamp: at,
        }]),
        timestamp: at,
        trigger_reason: trigger,
        seq_no,
        offline: None,
        number_of_phases_used: None,
        cable_max_current: None,
        reservation_id: None,
        transaction_info: v201::TransactionType {
            custom_data: None,
            transaction_id: "PNC-DEMO-1".parse().ok()?,
            charging_state: state,
            time_spent_charging: None,
            stopped_reason: reason,
            remote_start_id: None,
        },
        evse: Some(v201::EVSEType {
            custom_data: None,
            id: 1,
            connector_id: Some(1),
        }),
        id_token: Some(v201::IdTokenType {
            custom_data: None,
            additional_info: None,
            id_token: emaid.parse().ok()?,
            r#type: v201::IdTokenEnumType::EMAID,
        }),
    })
}

/// The second step: the car plugged in again and was authorized by its
/// certificate, the eMSP confirming the token; the station's transaction
/// (`started` when the contract was accepted), named by the eMAID, ran
/// under the schedule the CSMS computed from the site's limit and the
/// car's needs, and carries the energy the ISO 15118 loop metered; the
/// CSMS prices it and sends the CDR to the eMSP.
async fn billed(
    station: &Client,
    emsp: &super::Emsp,
    side: &Station<'_>,
    outcome: &evproto_sim::iso15118::Outcome,
    steps: &mut Steps,
) -> Result<(), String> {
    let (started, tx_profile) = (side.started, side.tx_profile);
    use evproto_ocpi::server::Store as _;
    let (Some(emaid), Some(started_at)) = (outcome.emaid.clone(), started) else {
        steps.record(BILLED, false, json!({"error": "the car was not authorized by its contract, or its transaction was refused",
            "car": format!("{:?}", outcome.evcc_end)}));
        return Ok(());
    };
    if !outcome.finished() {
        steps.record(
            BILLED,
            false,
            json!({"error": "the session did not finish", "car": format!("{:?}", outcome.evcc_end),
                "charger": format!("{:?}", outcome.secc_end)}),
        );
        return Ok(());
    }
    let ended_at = chrono::Utc::now().max(started_at + chrono::Duration::seconds(1));
    let ended = tx_event(
        v201::TransactionEventEnumType::Ended,
        1,
        &emaid,
        outcome.energy_wh,
        ended_at,
    );
    let Some(req) = ended else {
        steps.record(
            BILLED,
            false,
            json!({"error": "a TransactionEvent out of bounds"}),
        );
        return Ok(());
    };
    if let Err(e) = station.call::<v201::action::TransactionEvent>(&req).await {
        steps.record(
            BILLED,
            false,
            json!({"error": format!("the transaction's end not taken: {e}")}),
        );
        return Ok(());
    }
    let page = evproto_ocpi::pagination::Page {
        offset: 0,
        limit: 100,
        date_from: None,
        date_to: None,
    };
    let mut cdr = None;
    for _ in 0..100 {
        let cdrs = emsp
            .store
            .list_objects("cdrs", &["NL/EVP/".into()], &page)
            .await
            .map_err(|e| e.to_string())?
            .0;
        cdr = cdrs
            .into_iter()
            .find(|c| c["cdr_token"]["uid"] == emaid.as_str());
        if cdr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = cdr.as_ref().is_some_and(|c| {
        c["cdr_token"]["type"] == "EMAID"
            && c["total_cost"]["before_taxes"]
                .as_f64()
                .is_some_and(|p| p > 0.0)
    });
    // the car chose the CSMS's schedule (the site's limit), renegotiated
    // it when the limit was lowered, and drew no more than the last
    let (limit, lowered) = (f64::from(SITE_LIMIT_W), f64::from(LOWERED_LIMIT_W));
    let scheduled = tx_profile
        && side
            .offered
            .first()
            .is_some_and(|&p| p > lowered && p <= limit)
        && outcome.renegotiations == 1
        && side.offered.len() == 2
        && outcome.pmax_w.is_some_and(|p| p > 0.0 && p <= lowered)
        && outcome
            .power_w
            .is_some_and(|p| p > 0.0 && p <= lowered + 1.0);
    steps.record(
        BILLED,
        ok && scheduled,
        json!({"emaid": emaid, "energy_wh": outcome.energy_wh, "loops": outcome.loops,
            "site_limit_w": SITE_LIMIT_W, "tx_profile": tx_profile, "offered_pmax_w": side.offered,
            "lowered_limit_w": LOWERED_LIMIT_W, "renegotiations": outcome.renegotiations, "schedule_pmax_w": outcome.pmax_w, "drawn_w": outcome.power_w,
            "cdr": cdr.map(|c| json!({"id": c["id"], "cdr_token": c["cdr_token"], "total_energy": c["total_energy"],
                "total_cost": c["total_cost"]}))}),
    );
    Ok(())
}
