//! ISO 15118 in the simulator: per session, the station's SECC and the
//! car's EVCC from `evproto-iso15118`'s sans-IO machines, in memory, on
//! the real clock. The car negotiates its protocol (DIN, -2, -20),
//! authorizes by EIM (the station asks its CSMS about its card) or Plug &
//! Charge over -2 or -20 (the station sends the car's contract chain with
//! `Authorize`, after installing a contract through
//! `Get15118EVCertificate` when the car has none, or, -2 only, renewing
//! one that ends soon with its `Update` action), and charges under the schedule the station has, its energy
//! counted from the charge loop.
//!
//! What the station asks its CSMS is a [`Backend`]: the simulator's OCPP
//! station, or a test's scripted one.

use std::future::Future;
use std::time::{Duration, Instant};

use evproto_iso15118::messages::iso2 as m;
use evproto_iso15118::messages::iso20 as cm;
use evproto_iso15118::session::{
    Authorization, CertificateInstallation, CertificateUpdate, ContractStatus, Effect, EndReason,
    EvNotice, Evcc, EvccConfig, EvseRequest, Iso20CertificateInstallation, Isolation, Protocol,
    ScheduleTuple, Secc, SeccConfig, StopKind,
};

/// What the station asks its CSMS during a session.
pub trait Backend {
    /// EIM: the station's `Authorize` of its card; whether it is accepted.
    fn authorize_card(&mut self) -> impl Future<Output = bool>;
    /// Plug & Charge: `Authorize` with the contract `chain_pem` (leaf
    /// first) of `emaid`: the CSMS's verdict.
    fn authorize_contract(
        &mut self,
        emaid: &str,
        chain_pem: String,
    ) -> impl Future<Output = ContractStatus>;
    /// Plug & Charge: `Get15118EVCertificate` with the car's request (EXI):
    /// the CSMS's EXI answer, `None` when it has none.
    fn install_certificate(&mut self, exi: Vec<u8>) -> impl Future<Output = Option<Vec<u8>>>;
    /// Plug & Charge: `Get15118EVCertificate` with action `Update` and the
    /// car's CertificateUpdateReq (EXI): the CSMS's EXI answer, `None` when
    /// it has none.
    fn update_certificate(&mut self, exi: Vec<u8>) -> impl Future<Output = Option<Vec<u8>>>;
    /// Plug & Charge over ISO 15118-20: `Get15118EVCertificate` with the
    /// -20 schema and the car's CertificateInstallationReq (EXI): the
    /// CSMS's EXI answer (a -20 CertificateInstallationRes), `None` when it
    /// has none (the default: a backend without -20 contracts).
    fn install_certificate_iso20(&mut self, exi: Vec<u8>) -> impl Future<Output = Option<Vec<u8>>> {
        let _ = exi;
        async { None }
    }
    /// The schedules to offer the car, which told its `needs` (empty: one
    /// of the EVSE's maximum power). A 2.x station sends its CSMS
    /// `NotifyEVChargingNeeds` here and offers the profile it gets back.
    fn schedules(&mut self, needs: &Needs) -> impl Future<Output = Vec<ScheduleTuple>> {
        let _ = needs;
        async { Vec::new() }
    }
    /// After charge loop `loops` (1, 2, ...): whether the schedule the
    /// station holds changed since it was offered (a new `TxProfile` from
    /// the CSMS), so that the SECC asks the car to renegotiate (ISO
    /// 15118-2: `EVSENotification=ReNegotiation`, then a new
    /// [`Backend::schedules`] with [`Needs::renegotiation`]).
    fn schedule_changed(&mut self, loops: u32) -> impl Future<Output = bool> {
        let _ = loops;
        async { false }
    }
}

/// What the car asked for in ChargeParameterDiscovery, as the SECC tells
/// its station ([`EvseRequest::Schedules`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Needs {
    /// The most schedule tuples the car takes (DIN: not said).
    pub max_entries: Option<u16>,
    /// The car's departure, seconds from now.
    pub departure_s: Option<u32>,
    /// The energy the car asks for, Wh.
    pub energy_wh: Option<f64>,
    /// A renegotiation, not the first discovery.
    pub renegotiation: bool,
}

/// How a session goes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The car stops after this many charge loops.
    pub loops: u32,
    /// The session is abandoned after this long.
    pub limit: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            loops: 3,
            limit: Duration::from_secs(60),
        }
    }
}

/// How a session went.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The protocol negotiated.
    pub protocol: Option<Protocol>,
    /// Why the SECC ended (`None`: it had not when the limit came).
    pub secc_end: Option<EndReason>,
    /// Why the EVCC ended.
    pub evcc_end: Option<EndReason>,
    /// Charge loops done.
    pub loops: u32,
    /// Energy delivered, Wh (the EVSE's meter).
    pub energy_wh: f64,
    /// The eMAID the car authorized with (Plug & Charge).
    pub emaid: Option<String>,
    /// The contract the car installed (or renewed) in this session, if it did.
    pub installed: Option<evproto_iso15118::session::Contract>,
    /// `installed` renewed the car's contract (CertificateUpdate).
    pub renewed: bool,
    /// The first PMax (W) of the SA schedule the car chose (the last, after
    /// a renegotiation).
    pub pmax_w: Option<f64>,
    /// The power the EVSE delivered in the last charge loop that drew any,
    /// W (what the car asked for within its schedule and the EVSE's limits).
    pub power_w: Option<f64>,
    /// Renegotiations the SECC asked for (the station's schedule changed).
    pub renegotiations: u32,
    /// The body names of the car's requests (-20: the message names), in
    /// order, runs collapsed.
    pub requests: Vec<(String, usize)>,
}

impl Outcome {
    /// Both sides finished normally.
    pub fn finished(&self) -> bool {
        self.secc_end == Some(EndReason::Finished) && self.evcc_end == Some(EndReason::Finished)
    }

    /// Counts a request of the car's (a run of one name is one entry).
    fn request(&mut self, name: String) {
        match self.requests.last_mut() {
            Some((n, c)) if *n == name => *c += 1,
            _ => self.requests.push((name, 1)),
        }
    }
}

/// A DER certificate as PEM.
pub fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A CertificateInstallationRes message (EXI, as `Get15118EVCertificate`
/// returns it) as the SECC takes it.
pub fn installation_of(exi: &[u8]) -> Option<CertificateInstallation> {
    let m::Message::V2gMessage(msg) = m::Message::decode(exi).ok()? else {
        return None;
    };
    Some(CertificateInstallation {
        response: msg.body.certificate_installation_res?,
        signature: msg.header.signature?,
    })
}

/// A CertificateUpdateRes message (EXI, as `Get15118EVCertificate`
/// returns it) as the SECC takes it.
pub fn update_of(exi: &[u8]) -> Option<CertificateUpdate> {
    let m::Message::V2gMessage(msg) = m::Message::decode(exi).ok()? else {
        return None;
    };
    Some(CertificateUpdate {
        response: msg.body.certificate_update_res?,
        signature: msg.header.signature?,
    })
}

/// An ISO 15118-20 CertificateInstallationRes message (EXI, as
/// `Get15118EVCertificate` with the -20 schema returns it) as the SECC
/// takes it.
pub fn iso20_installation_of(exi: &[u8]) -> Option<Iso20CertificateInstallation> {
    match cm::Message::decode(exi).ok()? {
        cm::Message::CertificateInstallationRes(r) => {
            Iso20CertificateInstallation::from_response(&r)
        }
        _ => None,
    }
}

/// The body name of a -2 request (or `?`).
fn body_name(exi: &[u8]) -> String {
    if let Ok(m) = evproto_iso15118::app_protocol::decode(exi) {
        return m.name().to_string();
    }
    match m::Message::decode(exi) {
        Ok(m::Message::V2gMessage(v)) => serde_json::to_value(&v.body)
            .ok()
            .and_then(|j| {
                j.as_object()?
                    .iter()
                    .find(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
            })
            .unwrap_or_else(|| "?".into()),
        _ => "?".into(),
    }
}

/// The EVSE around the SECC: it follows the car's targets at once, its
/// isolation test passes at once, its meter counts what flows.
struct Plant {
    evse: evproto_iso15118::session::EvseStatus,
    power_on: bool,
    dc: bool,
    energy_wh: f64,
}

impl Plant {
    /// Power now, W.
    fn power_w(&self) -> f64 {
        if !self.power_on {
            0.0
        } else if self.dc {
            self.evse.present_voltage * self.evse.present_current
        } else {
            230.0 * 16.0 * 3.0
        }
    }
}

/// Runs one session: the SECC of `secc` and the car of `evcc` until both
/// end (the car stops after `plan.loops` charge loops) or `plan.limit`.
pub async fn run_session<B: Backend>(
    secc: SeccConfig,
    evcc: EvccConfig,
    plan: &Plan,
    backend: &mut B,
) -> Outcome {
    let start = Instant::now();
    let dc = evcc.energy_mode.is_dc();
    let mut plant = Plant {
        evse: secc.evse.clone(),
        power_on: false,
        dc,
        energy_wh: 0.0,
    };
    plant.evse.meter_wh = Some(0);
    let mut secc = Secc::new(secc, start);
    secc.set_evse(plant.evse.clone());
    let mut evcc = Evcc::new(evcc, start);
    let mut out = Outcome::default();
    let mut stop_asked = false;
    let mut seen_loops = 0;
    let mut last = start;
    loop {
        let mut progress = true;
        while progress {
            progress = false;
            let now = Instant::now();
            // the meter counts what flowed since last time
            let dt = now.saturating_duration_since(last).as_secs_f64();
            last = now;
            plant.energy_wh += plant.power_w() * dt / 3600.0;
            if plant.evse.meter_wh != Some(plant.energy_wh as u64) {
                plant.evse.meter_wh = Some(plant.energy_wh as u64);
                secc.set_evse(plant.evse.clone());
            }
            while let Some(e) = evcc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        out.request(body_name(&b));
                        secc.handle_message(now, &b);
                    }
                    Effect::TransmitAs(pt, b) => {
                        out.request(
                            evproto_iso15118::session::iso20::Wire::decode(pt, &b)
                                .map_or("?", |w| w.name())
                                .to_owned(),
                        );
                        secc.handle_packet(now, pt, &b);
                    }
                    Effect::SessionEnded { reason } => out.evcc_end = Some(reason),
                    Effect::Ev(EvNotice::Meter { .. }) | Effect::Ev(_) => {}
                    _ => {}
                }
            }
            let mut requests = Vec::new();
            while let Some(e) = secc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => evcc.handle_message(now, &b),
                    Effect::TransmitAs(pt, b) => evcc.handle_packet(now, pt, &b),
                    Effect::SessionEnded { reason } => out.secc_end = Some(reason),
                    Effect::Evse(r) => requests.push(r),
                    _ => {}
                }
            }
            for r in requests {
                evse_request(r, &mut secc, &mut plant, backend, &mut out).await;
            }
            let drawn = plant.power_w();
            if drawn > 0.0 {
                out.power_w = Some(drawn);
            }
            // a new charge loop: has the station's schedule changed?
            let loops = evcc.charge_loops();
            if loops > seen_loops {
                seen_loops = loops;
                if !stop_asked && backend.schedule_changed(loops).await {
                    secc.request_renegotiation();
                    out.renegotiations += 1;
                    progress = true;
                }
            }
            if !stop_asked && evcc.charge_loops() >= plan.loops {
                evcc.request_stop(StopKind::Terminate);
                stop_asked = true;
                progress = true;
            }
        }
        let ended = out.secc_end.is_some() && out.evcc_end.is_some();
        if ended || start.elapsed() >= plan.limit {
            break;
        }
        let next = [secc.poll_timeout(), evcc.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| start + plan.limit)
            .min(start + plan.limit);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let now = Instant::now();
        secc.handle_timeout(now);
        evcc.handle_timeout(now);
    }
    out.protocol = evcc.protocol();
    out.loops = evcc.charge_loops();
    out.energy_wh = plant.energy_wh;
    out.installed = evcc
        .iso2()
        .and_then(|e| e.installed_contract().cloned())
        .or_else(|| evcc.iso20().and_then(|e| e.installed_contract().cloned()));
    out.renewed = evcc.iso2().is_some_and(|e| e.contract_renewed());
    out.pmax_w = evcc.schedule_pmax();
    out
}

/// Serves one request of the SECC to its EVSE and the station's CSMS.
async fn evse_request<B: Backend>(
    r: EvseRequest,
    secc: &mut Secc,
    plant: &mut Plant,
    backend: &mut B,
    out: &mut Outcome,
) {
    match r {
        EvseRequest::Authorize { .. } => {
            let ok = backend.authorize_card().await;
            let decision = if ok {
                Authorization::Accepted
            } else {
                Authorization::Rejected
            };
            secc.handle_authorization(Instant::now(), decision);
        }
        EvseRequest::Schedules {
            max_entries,
            departure_time,
            energy_request_wh,
            renegotiation,
        } => {
            let needs = Needs {
                max_entries,
                departure_s: departure_time,
                energy_wh: energy_request_wh,
                renegotiation,
            };
            let s = backend.schedules(&needs).await;
            secc.handle_schedules(Instant::now(), s);
        }
        EvseRequest::StartCableCheck => {
            plant.evse.isolation = Isolation::Valid;
            secc.set_evse(plant.evse.clone());
        }
        EvseRequest::Target { voltage, current } => {
            plant.evse.present_voltage = voltage.min(plant.evse.max_voltage);
            plant.evse.present_current = current.min(plant.evse.max_current);
            secc.set_evse(plant.evse.clone());
        }
        EvseRequest::Power(on) => {
            plant.power_on = on;
            if !plant.dc {
                plant.evse.present_voltage = if on { 230.0 } else { 0.0 };
                plant.evse.present_current = if on { 16.0 } else { 0.0 };
            } else if !on {
                plant.evse.present_voltage = 0.0;
                plant.evse.present_current = 0.0;
            }
            secc.set_evse(plant.evse.clone());
        }
        EvseRequest::AuthorizeContract {
            emaid,
            certificate,
            sub_cas,
        } => {
            let mut chain = pem(&certificate);
            for s in &sub_cas {
                chain.push_str(&pem(s));
            }
            let status = backend.authorize_contract(&emaid, chain).await;
            out.emaid = Some(emaid);
            secc.handle_contract_status(Instant::now(), status);
        }
        EvseRequest::InstallCertificate { exi, .. } => {
            let answer = backend.install_certificate(exi).await;
            let installation = answer.as_deref().and_then(installation_of);
            secc.handle_certificate_installation(Instant::now(), installation);
        }
        EvseRequest::InstallCertificateIso20 { exi, .. } => {
            let answer = backend.install_certificate_iso20(exi).await;
            let installation = answer.as_deref().and_then(iso20_installation_of);
            secc.handle_iso20_certificate_installation(Instant::now(), installation);
        }
        EvseRequest::UpdateCertificate { exi, .. } => {
            let answer = backend.update_certificate(exi).await;
            let update = answer.as_deref().and_then(update_of);
            secc.handle_certificate_update(Instant::now(), update);
        }
        _ => {}
    }
}

/// ISO 15118 cars at the simulator's stations (`evproto simulate
/// --iso15118`): at each plug-in the station's SECC and the car's EVCC
/// hold a session (DC) before the transaction starts. A share of the cars
/// authorizes by Plug & Charge over ISO 15118-2: with the contract it has,
/// or after installing one through the CSMS (`Get15118EVCertificate`) when
/// it has none, and the transaction then starts with its eMAID; the others
/// by EIM (the station's `Authorize` of the driver's card), speaking DIN
/// 70121, ISO 15118-2 or -20 (a third each). The SECC offers the schedule
/// of the profiles the station holds, the car follows it in its charge
/// loop, and the transaction's meter follows what the car drew there. A
/// 1.6 station carries the Plug & Charge messages inside the OCA
/// application note's `DataTransfer`.
#[derive(Debug, Clone)]
pub struct Iso15118Sim {
    /// Share of the cars that use Plug & Charge (0 to 1; the others EIM).
    pub pnc_share: f64,
    /// The CSMS's roots, DER: its V2G root (the car checks the contract
    /// installation the CSMS signs) and its MO roots (the charger checks
    /// the car's contract chain); see `GET /api/pnc` of the reference CSMS.
    pub roots: Vec<Vec<u8>>,
    /// A car renews its contract (CertificateUpdate) when it ends within
    /// this long; `None`: never.
    pub renew_within: Option<Duration>,
}

/// What every station of a run shares: the roots and the cars' maker.
#[derive(Debug)]
pub(crate) struct Iso15118Setup {
    pub(crate) sim: Iso15118Sim,
    trust: evproto_iso15118::pki::TrustStore,
    provisioning: evproto_iso15118::session::Provisioning,
    /// The car maker's ISO 15118-20 provisioning certificate (secp521r1).
    provisioning_iso20: evproto_iso15118::session::Provisioning,
}

impl Iso15118Setup {
    /// The setup of `sim`: the trust store of its roots, and a car maker
    /// (its OEM provisioning certificate) seeded by `seed`.
    pub(crate) fn new(sim: Iso15118Sim, seed: u64) -> Result<Iso15118Setup, String> {
        let roots = sim
            .roots
            .iter()
            .map(|d| evproto_iso15118::pki::Cert::from_der(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ISO 15118 roots: {e}"))?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let maker = evproto_iso15118::pki::demo::DemoPki::generate(
            format!("evproto-sim car maker {seed}").as_bytes(),
            "DEOEMC000000001",
            now.saturating_sub(86_400),
            now + 86_400 * 3650,
        )
        .map_err(|e| format!("the simulator's car maker: {e}"))?;
        let maker_iso20 = evproto_iso15118::pki::demo::DemoProvisioning::generate(
            format!("evproto-sim car maker {seed}").as_bytes(),
            now.saturating_sub(86_400),
            now + 86_400 * 3650,
        )
        .map_err(|e| format!("the simulator's car maker (-20): {e}"))?;
        let provisioning = |p: &evproto_iso15118::pki::demo::Issued| {
            evproto_iso15118::session::Provisioning::new(p.cert.der().to_vec(), p.key_bytes())
        };
        Ok(Iso15118Setup {
            sim,
            trust: evproto_iso15118::pki::TrustStore::new(roots),
            provisioning: provisioning(&maker.oem_provisioning),
            provisioning_iso20: provisioning(&maker_iso20.oem_provisioning),
        })
    }

    /// The SECC's and the car's configuration for one session: a Plug &
    /// Charge car with `contract` (or none yet), or an EIM one, asking for
    /// `target_current` (A, at 400 V) in its charge loop. The station's
    /// SECC speaks ISO 15118-20, -2 and DIN 70121 (DC); an EIM car is of
    /// `generation` 0 (DIN only), 1 (-2, then DIN) or 2 (-20, -2, DIN),
    /// and the SECC takes the first it offers. A Plug & Charge car speaks
    /// -20 when its contract is -20's (secp521r1) or, having none, when it
    /// is of generation 2 (it installs one with its -20 provisioning
    /// certificate), else -2.
    pub(crate) fn session(
        &self,
        pnc: bool,
        contract: Option<evproto_iso15118::session::Contract>,
        challenge: [u8; 16],
        target_current: f64,
        generation: u8,
    ) -> (SeccConfig, EvccConfig) {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let secc = SeccConfig::new(vec![0x5a, 0x45, 0x56, 0x53, 0x49, 0x4d])
            .with_protocols(vec![Protocol::Iso20Dc, Protocol::Iso2, Protocol::Din])
            .with_unix_time(now)
            .with_pnc(Some(evproto_iso15118::session::SeccPnc::new(
                self.trust.clone(),
                challenge,
            )));
        let iso20_pnc = pnc
            && match &contract {
                Some(c) => is_iso20_contract(c),
                None => generation >= 2,
            };
        let protocols = match (pnc, generation) {
            (true, _) if iso20_pnc => vec![Protocol::Iso20Dc],
            (false, 0) => vec![Protocol::Din],
            (false, 2..) => vec![Protocol::Iso20Dc, Protocol::Iso2, Protocol::Din],
            _ => vec![Protocol::Iso2, Protocol::Din],
        };
        let evcc = EvccConfig::iso2_dc(vec![0x02, 0, 0, 0x15, 0x11, 0x80])
            .with_protocols(protocols)
            .with_unix_time(now)
            .with_loop_interval(Duration::from_millis(20));
        let ev = evproto_iso15118::session::EvStatus {
            target_current,
            ..evcc.ev.clone()
        };
        let evcc = evcc.with_ev(ev);
        let evcc = if pnc {
            evcc.with_pnc(Some(
                evproto_iso15118::session::EvPnc::new(
                    contract,
                    Some(if iso20_pnc {
                        self.provisioning_iso20.clone()
                    } else {
                        self.provisioning.clone()
                    }),
                    self.trust.clone(),
                )
                .with_renewal(self.sim.renew_within.map(|d| d.as_secs())),
            ))
        } else {
            evcc
        };
        (secc, evcc)
    }
}

/// A contract of ISO 15118-20 (its key on secp521r1).
fn is_iso20_contract(c: &evproto_iso15118::session::Contract) -> bool {
    use evproto_iso15118::pki::{Cert, VerifyingKey};
    matches!(
        Cert::from_der(&c.certificate).and_then(|c| c.public_key()),
        Ok(VerifyingKey::P521(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cars of a run without Plug & Charge.
    fn eim_only() -> Iso15118Setup {
        let sim = Iso15118Sim {
            pnc_share: 0.0,
            roots: Vec::new(),
            renew_within: None,
        };
        Iso15118Setup::new(sim, 7).unwrap()
    }

    /// A station whose CSMS accepts every card and holds a 7.4 kW profile
    /// (3.7 kW once `lower_at` charge loops are done).
    struct Scripted {
        asked: Vec<Needs>,
        lower_at: Option<u32>,
    }

    impl Backend for Scripted {
        async fn authorize_card(&mut self) -> bool {
            true
        }
        async fn authorize_contract(&mut self, _: &str, _: String) -> ContractStatus {
            ContractStatus::Rejected
        }
        async fn install_certificate(&mut self, _: Vec<u8>) -> Option<Vec<u8>> {
            None
        }
        async fn update_certificate(&mut self, _: Vec<u8>) -> Option<Vec<u8>> {
            None
        }
        async fn schedules(&mut self, needs: &Needs) -> Vec<ScheduleTuple> {
            self.asked.push(*needs);
            let w = if needs.renegotiation {
                3_700.0
            } else {
                7_400.0
            };
            vec![ScheduleTuple {
                id: 2,
                entries: vec![(0, w)],
                duration: 86_400,
            }]
        }
        async fn schedule_changed(&mut self, loops: u32) -> bool {
            self.lower_at == Some(loops)
        }
    }

    /// The station's schedule changes after the second charge loop: the
    /// SECC asks the -2 car to renegotiate, the car is offered the new
    /// schedule and follows it.
    #[tokio::test]
    async fn a_changed_schedule_is_renegotiated() {
        let setup = eim_only();
        let (secc, evcc) = setup.session(false, None, [1; 16], 100.0, 1);
        let mut backend = Scripted {
            asked: Vec::new(),
            lower_at: Some(2),
        };
        let plan = Plan {
            loops: 6,
            limit: Duration::from_secs(20),
        };
        let out = run_session(secc, evcc, &plan, &mut backend).await;
        assert!(out.finished(), "{out:?}");
        assert_eq!(out.renegotiations, 1);
        let renegotiated: Vec<bool> = backend.asked.iter().map(|n| n.renegotiation).collect();
        assert_eq!(renegotiated, [false, true]);
        assert_eq!(out.pmax_w, Some(3_700.0));
        let drawn = out.power_w.unwrap();
        assert!(drawn > 0.0 && drawn <= 3_700.0 + 1e-6, "{drawn}");
    }

    /// Each generation of EIM car negotiates its protocol with the
    /// station's SECC (DIN, -2, -20), is offered the station's schedule,
    /// chooses it and draws no more than it (100 A at 400 V would be
    /// 40 kW); the station is told the car's needs.
    #[tokio::test]
    async fn every_generation_negotiates_its_protocol_and_follows_the_schedule() {
        let setup = eim_only();
        for (generation, protocol) in [
            (0, Protocol::Din),
            (1, Protocol::Iso2),
            (2, Protocol::Iso20Dc),
        ] {
            let (secc, evcc) = setup.session(false, None, [1; 16], 100.0, generation);
            let mut backend = Scripted {
                asked: Vec::new(),
                lower_at: None,
            };
            let plan = Plan {
                loops: 3,
                limit: Duration::from_secs(20),
            };
            let out = run_session(secc, evcc, &plan, &mut backend).await;
            assert!(out.finished(), "{generation}: {out:?}");
            assert_eq!(out.protocol, Some(protocol));
            assert_eq!(out.pmax_w, Some(7_400.0), "{generation}: {out:?}");
            let drawn = out.power_w.unwrap();
            assert!(
                drawn > 0.0 && drawn <= 7_400.0 + 1e-6,
                "{generation}: {drawn}"
            );
            assert!(out.energy_wh > 0.0);
            assert_eq!(backend.asked.len(), 1, "{generation}");
        }
    }
}
