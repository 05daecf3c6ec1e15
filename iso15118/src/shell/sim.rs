//! A simple charger and car for the shells: enough physics for a session
//! to run end to end (the `evproto v2g evse|ev` commands and the tests).

use std::time::{Duration, Instant};

use super::evcc::{Ev, Progress};
use super::secc::{Evse, EvseAnswer};
use crate::session::{
    Authorization, ContractProvisioning, ContractStatus, EvNotice, EvStatus, EvseRequest,
    EvseStatus, Isolation,
};

/// A simulated EVSE: authorizes every EV (after
/// [`SimEvse::authorization_delay`]), offers the default schedule, passes
/// the isolation test after [`SimEvse::cable_check_time`], and its power
/// module reaches each target at once (clamped to the limits). While the
/// contactors are closed its meter counts `present voltage × current`
/// (DC) or `nominal voltage × ac_current × phases` (AC, when no DC
/// target was asked) over the time passed.
#[derive(Debug, Clone)]
pub struct SimEvse {
    /// Limits and present values (the meter starts at 0 Wh).
    pub status: EvseStatus,
    /// How long the authorization takes.
    pub authorization_delay: Duration,
    /// The decision.
    pub authorization: Authorization,
    /// How long the isolation test takes.
    pub cable_check_time: Duration,
    /// AC: current per phase (A).
    pub ac_current: f64,
    /// AC: phases.
    pub ac_phases: u8,
    /// Plug & Charge: the verdict on every contract.
    pub contract_status: ContractStatus,
    /// Plug & Charge: the provisioning service that answers
    /// CertificateInstallation and CertificateUpdate (its contract, `None`:
    /// `FAILED_NoCertificateAvailable`).
    /// Its ephemeral ECDH key and IV are derived from
    /// [`SimEvse::provisioning_seed`] and a counter: a lab simulator's
    /// keys, no secret.
    pub provisioning: Option<ContractProvisioning>,
    /// Plug & Charge, ISO 15118-20: the provisioning service of -20's
    /// CertificateInstallation (a secp521r1 contract and CPS key; `None`:
    /// `WARNING_NoCertificateAvailable`).
    pub provisioning_iso20: Option<ContractProvisioning>,
    /// Seed of the provisioning's ephemeral keys and IVs.
    pub provisioning_seed: [u8; 32],
    /// Ask the EV to renegotiate this long after the power first went on,
    /// once: until the SECC asks the schedules again as a renegotiation
    /// (-2) or the power goes off after it (-20's service renegotiation).
    pub renegotiate_after: Option<Duration>,
    renegotiate_at: Option<Instant>,
    renegotiated: bool,
    installs: u32,
    dc: bool,
    power_on: bool,
    cable_check_done_at: Option<Instant>,
    meter_wh: f64,
    last: Option<Instant>,
}

impl Default for SimEvse {
    fn default() -> Self {
        Self {
            status: EvseStatus {
                meter_wh: Some(0),
                ..EvseStatus::default()
            },
            authorization_delay: Duration::ZERO,
            authorization: Authorization::Accepted,
            cable_check_time: Duration::from_millis(100),
            ac_current: 16.0,
            ac_phases: 3,
            contract_status: ContractStatus::Accepted,
            provisioning: None,
            provisioning_iso20: None,
            provisioning_seed: [0x5e; 32],
            renegotiate_after: None,
            renegotiate_at: None,
            renegotiated: false,
            installs: 0,
            dc: false,
            power_on: false,
            cable_check_done_at: None,
            meter_wh: 0.0,
            last: None,
        }
    }
}

impl SimEvse {
    /// The ephemeral ECDH key and IV of the next contract delivery (`what`
    /// and a counter under [`SimEvse::provisioning_seed`]).
    fn fresh(&mut self, what: &str) -> (Vec<u8>, [u8; 16]) {
        self.installs += 1;
        let label = format!("{what} {}", self.installs);
        let eph = crate::pki::demo::derive_key(&self.provisioning_seed, &label).to_bytes();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&crate::pki::sha256(&eph)[..16]);
        (eph, iv)
    }

    /// Energy the meter counted (Wh).
    pub fn meter_wh(&self) -> f64 {
        self.meter_wh
    }

    fn power(&self) -> f64 {
        if !self.power_on {
            0.0
        } else if self.dc {
            self.status.present_voltage * self.status.present_current
        } else {
            self.status.nominal_voltage * self.ac_current * f64::from(self.ac_phases)
        }
    }
}

impl Evse for SimEvse {
    fn status(&mut self, now: Instant) -> EvseStatus {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            // the meter counts what flows to the car
            self.meter_wh += self.power().max(0.0) * dt / 3600.0;
        }
        self.last = Some(now);
        self.status.meter_wh = Some(self.meter_wh as u64);
        if self.cable_check_done_at.is_some_and(|t| t <= now) {
            self.cable_check_done_at = None;
            self.status.isolation = Isolation::Valid;
        }
        self.status.clone()
    }

    fn request(&mut self, now: Instant, request: &EvseRequest) -> EvseAnswer {
        // bring the meter up to `now` before anything changes the power
        let _ = self.status(now);
        match request {
            EvseRequest::Authorize { .. } => {
                let (delay, decision) = (self.authorization_delay, self.authorization);
                EvseAnswer::Authorization(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    decision
                }))
            }
            EvseRequest::Schedules { renegotiation, .. } => {
                self.renegotiated |= *renegotiation;
                EvseAnswer::schedules(vec![])
            }
            EvseRequest::AuthorizeContract { .. } => {
                EvseAnswer::ContractStatus(Box::pin(std::future::ready(self.contract_status)))
            }
            EvseRequest::InstallCertificate {
                oem_provisioning_cert,
                ..
            } => {
                let (eph, iv) = self.fresh("install");
                let answer = self
                    .provisioning
                    .as_ref()
                    .and_then(|p| p.install(oem_provisioning_cert, &eph, iv).ok());
                EvseAnswer::CertificateInstallation(Box::pin(std::future::ready(answer)))
            }
            EvseRequest::InstallCertificateIso20 {
                oem_provisioning_cert,
                ..
            } => {
                self.installs += 1;
                let label = format!("install-iso20 {}", self.installs);
                let eph =
                    crate::pki::demo::derive_key_p521(&self.provisioning_seed, &label).to_bytes();
                let mut iv = [0u8; 12];
                iv.copy_from_slice(&crate::pki::sha256(&eph)[..12]);
                let answer = self
                    .provisioning_iso20
                    .as_ref()
                    .and_then(|p| p.install_iso20(oem_provisioning_cert, &eph, iv).ok());
                EvseAnswer::Iso20CertificateInstallation(Box::pin(std::future::ready(answer)))
            }
            EvseRequest::UpdateCertificate { certificate, .. } => {
                let (eph, iv) = self.fresh("update");
                let answer = self
                    .provisioning
                    .as_ref()
                    .and_then(|p| p.update(certificate, &eph, iv).ok());
                EvseAnswer::CertificateUpdate(Box::pin(std::future::ready(answer)))
            }
            // the simulated charger has no network to route a car into
            EvseRequest::ValueAddedServices { .. } => EvseAnswer::Done,
            EvseRequest::StartCableCheck => {
                self.status.isolation = Isolation::Invalid;
                self.cable_check_done_at = Some(now + self.cable_check_time);
                EvseAnswer::Done
            }
            EvseRequest::Target { voltage, current } => {
                self.dc = true;
                self.status.present_voltage = voltage.clamp(0.0, self.status.max_voltage);
                // negative: the car gives back (ISO 15118-20 BPT), within
                // the SECC's discharge limit it already applied
                self.status.present_current =
                    current.clamp(-self.status.max_current, self.status.max_current);
                EvseAnswer::Done
            }
            EvseRequest::Power(on) => {
                self.power_on = *on;
                if *on && self.renegotiate_at.is_none() {
                    self.renegotiate_at = self.renegotiate_after.map(|d| now + d);
                }
                // -20: the EV stops to renegotiate (-2 asks the schedules again)
                if !*on && self.renegotiate_at.is_some_and(|t| now >= t) {
                    self.renegotiated = true;
                }
                if !on {
                    self.status.present_voltage = 0.0;
                    self.status.present_current = 0.0;
                } else if !self.dc {
                    self.status.present_voltage = self.status.nominal_voltage;
                    self.status.present_current = self.ac_current;
                }
                EvseAnswer::Done
            }
        }
    }

    fn wants_renegotiation(&mut self, now: Instant) -> bool {
        !self.renegotiated && self.renegotiate_at.is_some_and(|t| now >= t)
    }
}

/// A simulated car that wants [`SimEv::energy_wh`]: its state of charge
/// grows with the energy received, and it says `charging_complete` when
/// it has received what it wanted (or its battery is full).
#[derive(Debug, Clone)]
pub struct SimEv {
    /// Limits and targets (see [`EvStatus`]); `soc` is the state at plug-in.
    pub status: EvStatus,
    /// Energy to charge (Wh).
    pub energy_wh: f64,
    /// Notices received (for tests and logs).
    pub notices: Vec<EvNotice>,
}

impl SimEv {
    /// A car wanting `energy_wh`, otherwise [`EvStatus::default`].
    pub fn new(energy_wh: f64) -> Self {
        Self {
            status: EvStatus {
                energy_request_wh: energy_wh,
                ..EvStatus::default()
            },
            energy_wh,
            notices: Vec::new(),
        }
    }

    /// The same car with these limits and targets (`energy_request_wh`
    /// is set to the wanted energy).
    pub fn with_status(mut self, status: EvStatus) -> Self {
        self.status = EvStatus {
            energy_request_wh: self.energy_wh,
            ..status
        };
        self
    }
}

impl Ev for SimEv {
    fn status(&mut self, _now: Instant, progress: Progress) -> EvStatus {
        let mut s = self.status.clone();
        let capacity = s.battery_capacity_wh.max(1.0);
        let soc = f64::from(s.soc) + progress.energy_wh * 100.0 / capacity;
        s.soc = soc.clamp(0.0, 100.0) as u8;
        s.charging_complete = progress.energy_wh >= self.energy_wh || s.soc >= 100;
        s
    }

    fn notice(&mut self, _now: Instant, notice: &EvNotice) {
        if self.notices.len() < 10_000 {
            self.notices.push(notice.clone());
        }
    }
}
