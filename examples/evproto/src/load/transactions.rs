//! The `transactions` mix of `evproto load`: each station loops through
//! charging sessions, every message of which a CSMS has to store.
//!
//! One session is Authorize → start → [`METER_VALUES`] meter values → stop:
//! in 1.6 `Authorize`, `StartTransaction`, `MeterValues` with the
//! `transactionId` the CSMS gave, `StopTransaction`; in 2.0.1 and 2.1
//! `Authorize` and `TransactionEvent` `Started`, [`METER_VALUES`] × `Updated`
//! with a `meterValue`, `Ended`, `seqNo` counting up from 0 and a fresh
//! `transactionId` per session. The answers to Authorize and to the start are
//! decoded (typed, validated) so the report can say how many were refused.
//! A refusal does not end the session (the load stays the same whatever the
//! CSMS decides); a CALLERROR or an invalid answer to Authorize or to the
//! start begins a new session.

use std::collections::BTreeMap;
use std::sync::Arc;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21};

/// Meter values sent in each session, between the start and the stop.
pub(super) const METER_VALUES: u32 = 5;

/// Energy added between two meter values, Wh.
const WH_PER_SAMPLE: u64 = 500;

/// The status key used when a 2.x start answer carries no `idTokenInfo`.
pub(super) const NO_STATUS: &str = "(none)";

/// Where a station is in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Authorize,
    Start,
    Meter(u32),
    Stop,
}

/// What the stations counted; summed over all stations for the report.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Sessions whose stop was answered.
    pub(super) sessions_completed: u64,
    /// Authorize answers by `idTagInfo`/`idTokenInfo` status.
    pub(super) authorize_status: BTreeMap<&'static str, u64>,
    /// Start answers (1.6 StartTransaction, 2.x TransactionEvent Started)
    /// by status; [`NO_STATUS`] when a 2.x answer has no `idTokenInfo`.
    pub(super) start_status: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Adds another station's tally.
    pub(super) fn merge(&mut self, other: Tally) {
        self.sessions_completed += other.sessions_completed;
        for (k, n) in other.authorize_status {
            *self.authorize_status.entry(k).or_default() += n;
        }
        for (k, n) in other.start_status {
            *self.start_status.entry(k).or_default() += n;
        }
    }

    /// Answers that carried a status other than `Accepted` (refusals).
    pub(super) fn refused(map: &BTreeMap<&'static str, u64>) -> u64 {
        map.iter()
            .filter(|(k, _)| **k != "Accepted" && **k != NO_STATUS)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One station's session loop: yields the next message, takes its answer.
#[derive(Debug)]
pub(super) struct Sessions {
    v: ProtocolVersion,
    /// The id tag / id token as a JSON string literal (quoted, escaped).
    tag: Arc<str>,
    /// `{run}-{station}-`: 2.x transaction ids are this plus the session number.
    tx_prefix: String,
    session: u64,
    step: Step,
    /// 1.6: the CSMS's transaction id; 2.x: ours.
    tx_id: Option<String>,
    meter_wh: u64,
}

impl Sessions {
    /// The loop of station `station`; `run` tells this run's 2.x
    /// transaction ids from an earlier run's against the same CSMS.
    pub(super) fn new(v: ProtocolVersion, tag: Arc<str>, run: u64, station: usize) -> Self {
        Sessions {
            v,
            tag,
            tx_prefix: format!("{run:x}-{station}-"),
            session: 0,
            step: Step::Authorize,
            tx_id: None,
            meter_wh: 0,
        }
    }

    /// The id tag as a JSON string literal, after checking that the
    /// version's Authorize and start requests accept it.
    ///
    /// # Errors
    ///
    /// Too long, or otherwise refused by a schema: the reason.
    pub(super) fn tag_literal(v: ProtocolVersion, id_tag: &str) -> Result<Arc<str>, String> {
        let tag: Arc<str> = Arc::from(serde_json::Value::from(id_tag).to_string());
        let mut probe = Sessions::new(v, tag.clone(), 0, 0);
        for _ in 0..2 {
            let (action, payload) = probe.next_message("2024-01-01T00:00:00Z");
            check_request(v, action, &payload).map_err(|e| format!("{action}: {e}"))?;
            probe.advance();
        }
        Ok(tag)
    }

    /// The next message of the session: (action, payload), stamped `now`.
    pub(super) fn next_message(&mut self, now: &str) -> (&'static str, String) {
        let tag = &*self.tag;
        let v16 = self.v == ProtocolVersion::V16;
        let wh = self.meter_wh;
        match (self.step, v16) {
            (Step::Authorize, true) => ("Authorize", format!(r#"{{"idTag":{tag}}}"#)),
            (Step::Authorize, false) => (
                "Authorize",
                format!(r#"{{"idToken":{{"idToken":{tag},"type":"ISO14443"}}}}"#),
            ),
            (Step::Start, true) => (
                "StartTransaction",
                format!(
                    r#"{{"connectorId":1,"idTag":{tag},"meterStart":{wh},"timestamp":"{now}"}}"#
                ),
            ),
            (Step::Start, false) => {
                let tx = format!("{}{}", self.tx_prefix, self.session);
                let payload = format!(
                    r#"{{"eventType":"Started","timestamp":"{now}","triggerReason":"Authorized","seqNo":0,"transactionInfo":{{"transactionId":"{tx}","chargingState":"Charging"}},"idToken":{{"idToken":{tag},"type":"ISO14443"}},"evse":{{"id":1,"connectorId":1}},"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":{wh},"context":"Transaction.Begin","measurand":"Energy.Active.Import.Register"}}]}}]}}"#
                );
                self.tx_id = Some(tx);
                ("TransactionEvent", payload)
            }
            (Step::Meter(_), true) => {
                let tx = self.tx_id.as_deref().unwrap_or("0");
                (
                    "MeterValues",
                    format!(
                        r#"{{"connectorId":1,"transactionId":{tx},"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":"{wh}","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unit":"Wh"}},{{"value":"7200","context":"Sample.Periodic","measurand":"Power.Active.Import","unit":"W"}}]}}]}}"#
                    ),
                )
            }
            (Step::Meter(k), false) => {
                let tx = self.tx_id.as_deref().unwrap_or_default();
                (
                    "TransactionEvent",
                    format!(
                        r#"{{"eventType":"Updated","timestamp":"{now}","triggerReason":"MeterValuePeriodic","seqNo":{k},"transactionInfo":{{"transactionId":"{tx}","chargingState":"Charging"}},"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":{wh},"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register"}},{{"value":7200,"context":"Sample.Periodic","measurand":"Power.Active.Import"}}]}}]}}"#
                    ),
                )
            }
            (Step::Stop, true) => {
                let tx = self.tx_id.as_deref().unwrap_or("0");
                (
                    "StopTransaction",
                    format!(
                        r#"{{"transactionId":{tx},"idTag":{tag},"meterStop":{wh},"timestamp":"{now}","reason":"Local"}}"#
                    ),
                )
            }
            (Step::Stop, false) => {
                let tx = self.tx_id.as_deref().unwrap_or_default();
                let seq = METER_VALUES + 1;
                (
                    "TransactionEvent",
                    format!(
                        r#"{{"eventType":"Ended","timestamp":"{now}","triggerReason":"StopAuthorized","seqNo":{seq},"transactionInfo":{{"transactionId":"{tx}","chargingState":"EVConnected","stoppedReason":"Local"}},"idToken":{{"idToken":{tag},"type":"ISO14443"}},"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":{wh},"context":"Transaction.End","measurand":"Energy.Active.Import.Register"}}]}}]}}"#
                    ),
                )
            }
        }
    }

    /// The answer to the message [`Sessions::next_message`] gave last.
    ///
    /// # Errors
    ///
    /// The answer to Authorize or to the start is not that action's valid
    /// response (the session then starts over, like after a CALLERROR).
    pub(super) fn answered(&mut self, payload: &str, tally: &mut Tally) -> Result<(), String> {
        let decoded = match self.step {
            Step::Authorize => authorize_status(self.v, payload).map(|s| {
                *tally.authorize_status.entry(s).or_default() += 1;
            }),
            Step::Start => start_answer(self.v, payload).map(|(status, tx)| {
                *tally
                    .start_status
                    .entry(status.unwrap_or(NO_STATUS))
                    .or_default() += 1;
                if let Some(tx) = tx {
                    self.tx_id = Some(tx.to_string());
                }
            }),
            Step::Meter(_) => Ok(()),
            Step::Stop => {
                tally.sessions_completed += 1;
                Ok(())
            }
        };
        match decoded {
            Ok(()) => {
                self.advance();
                Ok(())
            }
            Err(e) => {
                self.failed();
                Err(e)
            }
        }
    }

    /// The last message got no answer (CALLERROR, timeout): without an
    /// authorization or a transaction the session starts over; inside one it
    /// goes on.
    pub(super) fn failed(&mut self) {
        match self.step {
            Step::Authorize | Step::Start => self.new_session(),
            Step::Meter(_) | Step::Stop => self.advance(),
        }
    }

    fn advance(&mut self) {
        self.step = match self.step {
            Step::Authorize => Step::Start,
            Step::Start => Step::Meter(1),
            Step::Meter(k) if k < METER_VALUES => {
                self.meter_wh += WH_PER_SAMPLE;
                Step::Meter(k + 1)
            }
            Step::Meter(_) => {
                self.meter_wh += WH_PER_SAMPLE;
                Step::Stop
            }
            Step::Stop => {
                self.new_session();
                return;
            }
        };
    }

    fn new_session(&mut self) {
        self.session += 1;
        self.tx_id = None;
        self.step = Step::Authorize;
    }
}

fn bad(e: impl std::fmt::Display) -> String {
    format!("invalid answer ({e})")
}

fn authorize_status(v: ProtocolVersion, payload: &str) -> Result<&'static str, String> {
    use evproto_ocpp_types::from_str;
    Ok(match v {
        ProtocolVersion::V16 => from_str::<v16::AuthorizeResponse>(payload)
            .map_err(bad)?
            .id_tag_info
            .status
            .as_str(),
        ProtocolVersion::V201 => from_str::<v201::AuthorizeResponse>(payload)
            .map_err(bad)?
            .id_token_info
            .status
            .as_str(),
        _ => from_str::<v21::AuthorizeResponse>(payload)
            .map_err(bad)?
            .id_token_info
            .status
            .as_str(),
    })
}

/// The start answer's status (`None`: a 2.x answer without `idTokenInfo`)
/// and, in 1.6, the transaction id the CSMS gave.
fn start_answer(
    v: ProtocolVersion,
    payload: &str,
) -> Result<(Option<&'static str>, Option<i32>), String> {
    use evproto_ocpp_types::from_str;
    Ok(match v {
        ProtocolVersion::V16 => {
            let r = from_str::<v16::StartTransactionResponse>(payload).map_err(bad)?;
            (Some(r.id_tag_info.status.as_str()), Some(r.transaction_id))
        }
        ProtocolVersion::V201 => {
            let r = from_str::<v201::TransactionEventResponse>(payload).map_err(bad)?;
            (r.id_token_info.map(|i| i.status.as_str()), None)
        }
        _ => {
            let r = from_str::<v21::TransactionEventResponse>(payload).map_err(bad)?;
            (r.id_token_info.map(|i| i.status.as_str()), None)
        }
    })
}

/// Decodes a request of this mix as its version's typed message (schema
/// rules included).
fn check_request(v: ProtocolVersion, action: &str, payload: &str) -> Result<(), String> {
    use evproto_ocpp_types::from_str;
    let r = match (v, action) {
        (ProtocolVersion::V16, "Authorize") => from_str::<v16::AuthorizeRequest>(payload).map(drop),
        (ProtocolVersion::V16, "StartTransaction") => {
            from_str::<v16::StartTransactionRequest>(payload).map(drop)
        }
        (ProtocolVersion::V16, "MeterValues") => {
            from_str::<v16::MeterValuesRequest>(payload).map(drop)
        }
        (ProtocolVersion::V16, "StopTransaction") => {
            from_str::<v16::StopTransactionRequest>(payload).map(drop)
        }
        (ProtocolVersion::V201, "Authorize") => {
            from_str::<v201::AuthorizeRequest>(payload).map(drop)
        }
        (ProtocolVersion::V201, "TransactionEvent") => {
            from_str::<v201::TransactionEventRequest>(payload).map(drop)
        }
        (_, "Authorize") => from_str::<v21::AuthorizeRequest>(payload).map(drop),
        (_, "TransactionEvent") => from_str::<v21::TransactionEventRequest>(payload).map(drop),
        _ => return Err(format!("not a message of this mix: {action}")),
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-05-01T10:15:00Z";
    const VERSIONS: [ProtocolVersion; 3] = [
        ProtocolVersion::V16,
        ProtocolVersion::V201,
        ProtocolVersion::V21,
    ];

    fn accepted_answer(v: ProtocolVersion, action: &str, tx: i32) -> String {
        match (v, action) {
            (ProtocolVersion::V16, "StartTransaction") => {
                format!(r#"{{"transactionId":{tx},"idTagInfo":{{"status":"Accepted"}}}}"#)
            }
            (ProtocolVersion::V16, "Authorize") => r#"{"idTagInfo":{"status":"Accepted"}}"#.into(),
            (_, "Authorize" | "TransactionEvent") => {
                r#"{"idTokenInfo":{"status":"Accepted"}}"#.into()
            }
            _ => "{}".into(),
        }
    }

    #[test]
    fn every_message_of_two_sessions_is_a_valid_request_in_every_version() {
        for v in VERSIONS {
            let tag = Sessions::tag_literal(v, "LOADTAG").unwrap();
            let mut s = Sessions::new(v, tag, 0x1234, 7);
            let mut tally = Tally::default();
            let mut seen = Vec::new();
            for n in 0..2 * (3 + METER_VALUES) {
                let (action, payload) = s.next_message(NOW);
                check_request(v, action, &payload)
                    .unwrap_or_else(|e| panic!("{v:?} {payload}: {e}"));
                let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
                seen.push((action, json));
                s.answered(&accepted_answer(v, action, 40 + n as i32), &mut tally)
                    .unwrap();
            }
            assert_eq!(tally.sessions_completed, 2, "{v:?}");
            assert_eq!(tally.start_status.get("Accepted"), Some(&2), "{v:?}");
            assert_eq!(tally.authorize_status.get("Accepted"), Some(&2), "{v:?}");
            let actions: Vec<&str> = seen.iter().map(|(a, _)| *a).collect();
            if v == ProtocolVersion::V16 {
                assert_eq!(
                    actions[..8],
                    [
                        "Authorize",
                        "StartTransaction",
                        "MeterValues",
                        "MeterValues",
                        "MeterValues",
                        "MeterValues",
                        "MeterValues",
                        "StopTransaction"
                    ]
                );
                // meter values and the stop carry the transaction id the CSMS gave
                assert_eq!(seen[2].1["transactionId"], 41);
                assert_eq!(seen[7].1["transactionId"], 41);
                assert_eq!(seen[15].1["transactionId"], 49);
                assert_eq!(seen[0].1["idTag"], "LOADTAG");
                // the register only goes up
                assert_eq!(seen[1].1["meterStart"], 0);
                assert_eq!(seen[7].1["meterStop"], 2500);
                assert_eq!(seen[9].1["meterStart"], 2500);
            } else {
                assert!(actions[1..8].iter().all(|a| *a == "TransactionEvent"));
                let events: Vec<(&str, i64, &str)> = seen[1..8]
                    .iter()
                    .map(|(_, j)| {
                        (
                            j["eventType"].as_str().unwrap(),
                            j["seqNo"].as_i64().unwrap(),
                            j["transactionInfo"]["transactionId"].as_str().unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(events[0], ("Started", 0, "1234-7-0"));
                for (k, e) in events[1..6].iter().enumerate() {
                    assert_eq!(*e, ("Updated", k as i64 + 1, "1234-7-0"));
                    assert!(seen[2 + k].1["meterValue"][0]["sampledValue"].is_array());
                }
                assert_eq!(events[6], ("Ended", 6, "1234-7-0"));
                // a fresh transaction id for the next session, seqNo from 0 again
                assert_eq!(seen[9].1["transactionInfo"]["transactionId"], "1234-7-1");
                assert_eq!(seen[9].1["seqNo"], 0);
                assert_eq!(seen[0].1["idToken"]["idToken"], "LOADTAG");
            }
        }
    }

    #[test]
    fn refused_starts_are_counted_and_bad_answers_restart_the_session() {
        let tag = Sessions::tag_literal(ProtocolVersion::V201, "T").unwrap();
        let mut s = Sessions::new(ProtocolVersion::V201, tag, 1, 0);
        let mut tally = Tally::default();
        s.next_message(NOW);
        s.answered(r#"{"idTokenInfo":{"status":"Invalid"}}"#, &mut tally)
            .unwrap();
        let (_, started) = s.next_message(NOW);
        assert!(started.contains(r#""eventType":"Started""#));
        s.answered(r#"{"idTokenInfo":{"status":"Blocked"}}"#, &mut tally)
            .unwrap();
        assert_eq!(Tally::refused(&tally.authorize_status), 1);
        assert_eq!(Tally::refused(&tally.start_status), 1);
        // an answer without idTokenInfo is counted apart, not as a refusal
        let mut other = Sessions::new(ProtocolVersion::V201, Arc::from("\"T\""), 1, 1);
        other.next_message(NOW);
        other
            .answered(r#"{"idTokenInfo":{"status":"Accepted"}}"#, &mut tally)
            .unwrap();
        other.next_message(NOW);
        other.answered("{}", &mut tally).unwrap();
        assert_eq!(tally.start_status.get(NO_STATUS), Some(&1));
        assert_eq!(Tally::refused(&tally.start_status), 1);
        // a start answer that is not a valid response: error, new session
        let mut third = Sessions::new(ProtocolVersion::V16, Arc::from("\"T\""), 1, 2);
        third.next_message(NOW);
        third
            .answered(r#"{"idTagInfo":{"status":"Accepted"}}"#, &mut tally)
            .unwrap();
        third.next_message(NOW);
        assert!(third
            .answered(r#"{"idTagInfo":{"status":"Accepted"}}"#, &mut tally)
            .is_err());
        assert_eq!(third.next_message(NOW).0, "Authorize");
        let mut merged = Tally::default();
        merged.merge(tally);
        assert_eq!(Tally::refused(&merged.start_status), 1);
        assert_eq!(merged.sessions_completed, 0);
    }

    #[test]
    fn an_id_tag_the_schema_refuses_is_refused_up_front() {
        // 1.6 idTag: at most 20 characters; 2.0.1 idToken: at most 36
        assert!(Sessions::tag_literal(ProtocolVersion::V16, &"x".repeat(21)).is_err());
        assert!(Sessions::tag_literal(ProtocolVersion::V16, &"x".repeat(20)).is_ok());
        assert!(Sessions::tag_literal(ProtocolVersion::V201, &"x".repeat(37)).is_err());
        // quotes are escaped, not spliced into the JSON
        assert_eq!(
            &*Sessions::tag_literal(ProtocolVersion::V201, "a\"b").unwrap(),
            r#""a\"b""#
        );
    }
}
