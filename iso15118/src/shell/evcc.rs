//! The car's shell: one [`Evcc`] on a connection to the SECC.

use std::future::pending;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Framed;
use super::{now, SessionReport, ShellConfig};
use crate::session::{Effect, EvNotice, EvStatus, Evcc, EvccConfig};
use crate::v2gtp::PayloadType;

/// How far the session has come, for the car to decide when it is full.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Energy received so far (Wh, as the machine counts it).
    pub energy_wh: f64,
    /// Energy given back so far (Wh; ISO 15118-20 BPT).
    pub discharged_wh: f64,
    /// Charge-loop answers received so far.
    pub charge_loops: u32,
}

/// What the EVCC's shell asks the car.
///
/// The shell calls [`Ev::status`] before every input it gives the machine
/// (a message, a timeout): the car's targets, limits and whether it is
/// full (`charging_complete` ends the charge loop and the session).
pub trait Ev: Send {
    /// The car's state at `now`, knowing the session's progress.
    fn status(&mut self, now: Instant, progress: Progress) -> EvStatus;
    /// What the machine tells the car (contactors, present values, meter).
    fn notice(&mut self, now: Instant, notice: &EvNotice) {
        let _ = (now, notice);
    }
}

impl<T: Ev + ?Sized> Ev for &mut T {
    fn status(&mut self, now: Instant, progress: Progress) -> EvStatus {
        (**self).status(now, progress)
    }
    fn notice(&mut self, now: Instant, notice: &EvNotice) {
        (**self).notice(now, notice)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => pending().await,
    }
}

fn progress(evcc: &Evcc) -> Progress {
    Progress {
        energy_wh: evcc.energy_wh(),
        discharged_wh: evcc.discharged_wh(),
        charge_loops: evcc.charge_loops(),
    }
}

/// Runs one EVCC session on a connected stream ([`super::connect`]): the
/// SupportedAppProtocolReq with the configured protocols, then the chosen
/// protocol's machine until SessionStop (when [`Ev::status`] says
/// `charging_complete`) or a failure. Returns the session's report; its
/// [`SessionReport::end`] is `Err` when the connection failed first.
pub async fn run_evcc<S, V>(
    stream: S,
    config: EvccConfig,
    mut ev: V,
    shell: &ShellConfig,
) -> SessionReport
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Ev,
{
    let mut io = Framed::new(stream, shell);
    let start = now();
    let mode = config.energy_mode;
    let mut config = config;
    if config.unix_time == 0 {
        config.unix_time = super::unix_time();
    }
    let mut evcc = Evcc::new(config, start);
    evcc.set_ev(ev.status(start, progress(&evcc)));
    let end = 'session: loop {
        while let Some(effect) = evcc.poll_effect() {
            match effect {
                Effect::Transmit(bytes) => {
                    if let Err(e) = io.write(PayloadType::EXI, &bytes).await {
                        break 'session Err(e);
                    }
                }
                Effect::TransmitAs(payload_type, bytes) => {
                    if let Err(e) = io.write(payload_type, &bytes).await {
                        break 'session Err(e);
                    }
                }
                Effect::SessionEnded { reason } => break 'session Ok(reason),
                Effect::Ev(notice) => ev.notice(now(), &notice),
                _ => {}
            }
        }
        tokio::select! {
            read = io.read() => match read {
                Ok((payload_type, exi)) => {
                    let t = now();
                    evcc.set_ev(ev.status(t, progress(&evcc)));
                    evcc.handle_packet(t, payload_type, &exi);
                }
                Err(e) => break 'session Err(e),
            },
            () = sleep_until(evcc.poll_timeout()) => {
                let t = now();
                evcc.set_ev(ev.status(t, progress(&evcc)));
                evcc.handle_timeout(t);
            }
        }
    };
    let report = SessionReport {
        protocol: evcc.protocol(),
        energy_mode: evcc.protocol().map(|_| mode),
        session_id: evcc.session_id().map(<[u8]>::to_vec),
        energy_wh: evcc.energy_wh(),
        discharged_wh: evcc.discharged_wh(),
        bpt: evcc.is_bpt(),
        charge_loops: evcc.charge_loops(),
        messages_sent: io.sent,
        messages_received: io.received,
        end,
        contract: evcc
            .iso2()
            .and_then(|m| {
                let change = if m.contract_renewed() {
                    super::ContractChange::Renewed
                } else {
                    super::ContractChange::Installed
                };
                Some((m.installed_contract()?.clone(), change))
            })
            .or_else(|| {
                let m = evcc.iso20()?;
                Some((
                    m.installed_contract()?.clone(),
                    super::ContractChange::Installed,
                ))
            }),
        emaid: evcc.contract_emaid().map(str::to_owned),
        vas: evcc.selected_vas().to_vec(),
        service_renegotiations: evcc.iso20().map_or(0, |m| m.service_renegotiations()),
        #[cfg(any(feature = "tls", feature = "tls-openssl"))]
        tls: None,
    };
    if report.end.is_ok() {
        io.close(Duration::from_millis(200)).await;
    }
    report
}
