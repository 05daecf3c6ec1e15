//! Id-token authorization: what the CSMS answers to `Authorize`, to a
//! transaction's start (1.6 `StartTransaction`, 2.x `TransactionEvent` with
//! an `idToken`) and to a stop by another token, and how a station's local
//! authorization list is kept in step.
//!
//! # Rules
//!
//! 1. A token the CSMS does not know is `Unknown` (1.6 has no such value:
//!    `Invalid`).
//! 2. A token whose own status is not `Accepted` has that status; one whose
//!    expiry has passed is `Expired`.
//! 3. **Groups** (1.6 `parentIdTag`, 2.x `groupIdToken`): the answer names
//!    the token's group; a group that is itself blocked, expired or invalid
//!    gives its members that status.
//! 4. **Master pass** (2.x `MasterPassGroupId`): a token of the master-pass
//!    group is accepted to authorize and to stop any transaction, never to
//!    start one (`Invalid` at a start).
//! 5. **Concurrent transactions**: a token already in a transaction gets
//!    `ConcurrentTx` at another start (and, in 1.6, at `Authorize`) unless its
//!    record allows concurrent use.
//! 6. **Stopping**: a token may stop a transaction when it is the same token
//!    (compared by [`IdToken::key`]), of the same group, or a master pass
//!    ([`may_stop`]); the token that ends a transaction is answered with
//!    [`Purpose::Stop`], which judges neither rule 4 nor rule 5.
//! 7. **Authorization cache**: the answer's expiry (1.6 `expiryDate`, 2.x
//!    `cacheExpiryDateTime`) is the token's own expiry, or earlier when
//!    [`Policy::cache_lifetime`] says how long a station may trust its cache.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use evproto_csms_core::authorization::{authorize, Policy, Purpose, Record, Status};
//! use evproto_csms_core::token::IdToken;
//!
//! let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
//! let card = Record { group: Some(IdToken::id_tag("FLEET-7")), ..Record::accepted() };
//! let fleet = Record { status: Status::Blocked, ..Record::accepted() };
//!
//! let d = authorize(Some(&card), Some(&fleet), 0, Purpose::Start, now, &Policy::default());
//! assert_eq!(d.status, Status::Blocked); // the whole fleet is blocked
//! let tag_info = d.to_v16();
//! assert_eq!(tag_info.parent_id_tag.as_deref(), Some("FLEET-7"));
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use evproto_ocpp_types::{v16, v201, v21, BoundedString};

use crate::token::IdToken;

/// An authorization status, version-independent (2.1's values; 1.6 maps
/// the ones it lacks to `Invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// May charge.
    Accepted,
    /// Blocked by its issuer or the operator.
    Blocked,
    /// Already in a transaction.
    ConcurrentTx,
    /// Past its expiry.
    Expired,
    /// Known, not valid (also: a master pass at a start).
    Invalid,
    /// Out of credit.
    NoCredit,
    /// Not allowed at this type of EVSE.
    NotAllowedTypeEvse,
    /// Not allowed at this location.
    NotAtThisLocation,
    /// Not allowed at this time.
    NotAtThisTime,
    /// Not known to the CSMS.
    Unknown,
}

/// What the CSMS holds about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its own status.
    pub status: Status,
    /// When it stops being valid.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its group (1.6 `parentIdTag`, 2.x `groupIdToken`).
    pub group: Option<IdToken>,
    /// It may be in more than one transaction at once (fleet cards shared
    /// by several cars, for instance).
    pub allow_concurrent: bool,
}

impl Record {
    /// An accepted token without expiry, group or concurrent use.
    pub fn accepted() -> Record {
        Record {
            status: Status::Accepted,
            expires_at: None,
            group: None,
            allow_concurrent: false,
        }
    }
}

/// The CSMS's authorization settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// The master-pass group (2.x `AuthCtrlr.MasterPassGroupId`).
    pub master_pass_group: Option<IdToken>,
    /// How long a station may keep an answer in its authorization cache.
    pub cache_lifetime: Option<Duration>,
}

/// Why the token is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// 2.x `Authorize` (no transaction yet; concurrent use is judged at the start).
    Authorize,
    /// 1.6 `Authorize`: the station starts right after it, so concurrent use is judged here.
    Authorize16,
    /// A transaction starts with it.
    Start,
    /// A transaction ends with it (1.6 `StopTransaction`'s `idTag`, 2.x a
    /// `TransactionEvent` `Ended` or `StopAuthorized`): neither concurrent
    /// use nor the master-pass rule applies, the transaction is ending.
    Stop,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The status.
    pub status: Status,
    /// The group to tell the station (so it can let a group member stop).
    pub group: Option<IdToken>,
    /// Until when the station may trust the answer.
    pub expires_at: Option<DateTime<Utc>>,
}

fn is_master(group: Option<&IdToken>, policy: &Policy) -> bool {
    match (group, &policy.master_pass_group) {
        (Some(g), Some(m)) => g.key() == m.key(),
        _ => false,
    }
}

/// The answer for a token: `record` is the token's (`None`: unknown),
/// `group_record` its group's when it has one, `active_transactions` how
/// many transactions it is in now. See the [module docs](self) for the rules.
pub fn authorize(
    record: Option<&Record>,
    group_record: Option<&Record>,
    active_transactions: usize,
    purpose: Purpose,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Decision {
    let Some(r) = record else {
        return Decision {
            status: Status::Unknown,
            group: None,
            expires_at: None,
        };
    };
    let judged = |rec: &Record| {
        if rec.status != Status::Accepted {
            rec.status
        } else if rec.expires_at.is_some_and(|e| e <= now) {
            Status::Expired
        } else {
            Status::Accepted
        }
    };
    let mut status = judged(r);
    if status == Status::Accepted {
        if let Some(g) = group_record {
            let gs = judged(g);
            if gs != Status::Accepted {
                status = gs;
            }
        }
    }
    let master = is_master(r.group.as_ref(), policy);
    if status == Status::Accepted {
        let judges_concurrency = matches!(purpose, Purpose::Start | Purpose::Authorize16);
        if master && purpose == Purpose::Start {
            status = Status::Invalid;
        } else if judges_concurrency && active_transactions > 0 && !r.allow_concurrent && !master {
            status = Status::ConcurrentTx;
        }
    }
    let cache_until = policy.cache_lifetime.map(|l| now + l);
    let expires_at = match (r.expires_at, cache_until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Decision {
        status,
        group: r.group.clone(),
        expires_at: (status == Status::Accepted).then_some(expires_at).flatten(),
    }
}

/// Whether `stopper` (with its group) may stop a transaction started by
/// `owner` (with its group).
pub fn may_stop(
    stopper: &IdToken,
    stopper_group: Option<&IdToken>,
    owner: &IdToken,
    owner_group: Option<&IdToken>,
    policy: &Policy,
) -> bool {
    stopper.key() == owner.key()
        || matches!((stopper_group, owner_group), (Some(a), Some(b)) if a.key() == b.key())
        || is_master(stopper_group, policy)
}

impl Decision {
    /// The 1.6 `IdTagInfo` (statuses 1.6 lacks become `Invalid`; a group id
    /// longer than 1.6's 20 characters is left out).
    pub fn to_v16(&self) -> v16::IdTagInfo {
        use v16::AuthorizationStatus as A;
        v16::IdTagInfo {
            expiry_date: self.expires_at,
            parent_id_tag: self
                .group
                .as_ref()
                .and_then(|g| BoundedString::new(g.id.clone()).ok()),
            status: match self.status {
                Status::Accepted => A::Accepted,
                Status::Blocked => A::Blocked,
                Status::ConcurrentTx => A::ConcurrentTx,
                Status::Expired => A::Expired,
                _ => A::Invalid,
            },
        }
    }

    fn wire_status(&self) -> &'static str {
        match self.status {
            Status::Accepted => "Accepted",
            Status::Blocked => "Blocked",
            Status::ConcurrentTx => "ConcurrentTx",
            Status::Expired => "Expired",
            Status::Invalid => "Invalid",
            Status::NoCredit => "NoCredit",
            Status::NotAllowedTypeEvse => "NotAllowedTypeEVSE",
            Status::NotAtThisLocation => "NotAtThisLocation",
            Status::NotAtThisTime => "NotAtThisTime",
            Status::Unknown => "Unknown",
        }
    }

    /// The 2.0.1 `IdTokenInfoType` (a group id longer than 2.0.1's 36
    /// characters, or of a kind 2.0.1 lacks, is left out).
    pub fn to_v201(&self) -> v201::IdTokenInfoType {
        v201::IdTokenInfoType {
            custom_data: None,
            status: self
                .wire_status()
                .parse()
                .unwrap_or(v201::AuthorizationStatusEnumType::Invalid),
            cache_expiry_date_time: self.expires_at,
            charging_priority: None,
            language1: None,
            evse_id: None,
            group_id_token: self.group.as_ref().and_then(|g| {
                Some(v201::IdTokenType {
                    custom_data: None,
                    additional_info: None,
                    id_token: BoundedString::new(g.id.clone()).ok()?,
                    r#type: g.kind.as_wire().unwrap_or("Central").parse().ok()?,
                })
            }),
            language2: None,
            personal_message: None,
        }
    }

    /// The 2.1 `IdTokenInfoType`.
    pub fn to_v21(&self) -> v21::IdTokenInfoType {
        v21::IdTokenInfoType {
            status: self
                .wire_status()
                .parse()
                .unwrap_or(v21::AuthorizationStatusEnumType::Invalid),
            cache_expiry_date_time: self.expires_at,
            charging_priority: None,
            group_id_token: self.group.as_ref().and_then(|g| {
                Some(v21::IdTokenType {
                    additional_info: None,
                    id_token: BoundedString::new(g.id.clone()).ok()?,
                    r#type: BoundedString::new(g.kind.as_wire().unwrap_or("Central")).ok()?,
                    custom_data: None,
                })
            }),
            language1: None,
            language2: None,
            evse_id: None,
            personal_message: None,
            custom_data: None,
        }
    }
}

/// One update of a station's local authorization list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListUpdate {
    /// Replace the whole list (`updateType` Full).
    Full {
        /// The version the station will have.
        version: i32,
        /// Every entry.
        entries: BTreeMap<String, Decision>,
    },
    /// Change some entries (`updateType` Differential): `None` removes one.
    Differential {
        /// The version the station will have.
        version: i32,
        /// The changed and removed entries.
        changes: BTreeMap<String, Option<Decision>>,
    },
}

impl ListUpdate {
    /// The version the station will have once it accepts the update.
    pub fn version(&self) -> i32 {
        match self {
            ListUpdate::Full { version, .. } | ListUpdate::Differential { version, .. } => *version,
        }
    }
}

/// What the CSMS knows of one station's local authorization list: the
/// version and entries the station last accepted.
///
/// Send [`LocalList::next_update`]; on `Accepted` call
/// [`LocalList::accepted`]; on `VersionMismatch`, `Failed`, or a
/// `GetLocalListVersion` answer other than [`LocalList::version`], call
/// [`LocalList::forget`] so the next update is a full one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalList {
    /// The entries the station has, when the CSMS knows them.
    known: Option<BTreeMap<String, Decision>>,
    /// The highest version the station accepted or reported (0: none).
    version: i32,
}

impl LocalList {
    /// The version the station has, as far as the CSMS knows (`None`: none yet).
    pub fn version(&self) -> Option<i32> {
        (self.version > 0).then_some(self.version)
    }

    /// The update that brings the station to `desired` (keyed by
    /// [`IdToken::key`]), `None` when it has it already. Differential when the
    /// station's entries are known and the changes are fewer than the
    /// entries, else Full; versions only grow.
    pub fn next_update(&self, desired: &BTreeMap<String, Decision>) -> Option<ListUpdate> {
        let version = self.version.saturating_add(1);
        let Some(held) = &self.known else {
            return Some(ListUpdate::Full {
                version,
                entries: desired.clone(),
            });
        };
        let mut changes: BTreeMap<String, Option<Decision>> = BTreeMap::new();
        for (k, d) in desired {
            if held.get(k) != Some(d) {
                changes.insert(k.clone(), Some(d.clone()));
            }
        }
        for k in held.keys() {
            if !desired.contains_key(k) {
                changes.insert(k.clone(), None);
            }
        }
        if changes.is_empty() {
            None
        } else if changes.len() < desired.len() {
            Some(ListUpdate::Differential { version, changes })
        } else {
            Some(ListUpdate::Full {
                version,
                entries: desired.clone(),
            })
        }
    }

    /// The station accepted `update`.
    pub fn accepted(&mut self, update: &ListUpdate) {
        self.version = self.version.max(update.version());
        match update {
            ListUpdate::Full { entries, .. } => self.known = Some(entries.clone()),
            ListUpdate::Differential { changes, .. } => {
                let Some(held) = &mut self.known else {
                    return; // the base was forgotten meanwhile: the next update is full
                };
                for (k, c) in changes {
                    match c {
                        Some(d) => held.insert(k.clone(), d.clone()),
                        None => held.remove(k),
                    };
                }
            }
        }
    }

    /// The station's list is not what the CSMS thinks (`VersionMismatch`,
    /// `Failed`, or `GetLocalListVersion` reporting another version): the
    /// next update is full, with a version above any seen.
    pub fn forget(&mut self, reported_version: Option<i32>) {
        self.version = self.version.max(reported_version.unwrap_or(0));
        self.known = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKind;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
    }

    #[test]
    fn unknown_blocked_expired() {
        let p = Policy::default();
        let d = authorize(None, None, 0, Purpose::Authorize, now(), &p);
        assert_eq!(d.status, Status::Unknown);
        assert_eq!(d.to_v16().status, v16::AuthorizationStatus::Invalid);
        assert_eq!(
            d.to_v201().status,
            v201::AuthorizationStatusEnumType::Unknown
        );
        let blocked = Record {
            status: Status::Blocked,
            ..Record::accepted()
        };
        assert_eq!(
            authorize(Some(&blocked), None, 0, Purpose::Start, now(), &p).status,
            Status::Blocked
        );
        let expired = Record {
            expires_at: Some(now()),
            ..Record::accepted()
        };
        let d = authorize(Some(&expired), None, 0, Purpose::Start, now(), &p);
        assert_eq!(d.status, Status::Expired);
        assert_eq!(d.expires_at, None);
    }

    #[test]
    fn groups_pass_their_status_to_members_and_are_named() {
        let p = Policy::default();
        let card = Record {
            group: Some(IdToken::new("FLEET", TokenKind::Central)),
            ..Record::accepted()
        };
        let group_ok = Record::accepted();
        let d = authorize(Some(&card), Some(&group_ok), 0, Purpose::Start, now(), &p);
        assert_eq!(d.status, Status::Accepted);
        let info = d.to_v201();
        assert_eq!(info.group_id_token.unwrap().id_token.as_str(), "FLEET");
        let group_expired = Record {
            expires_at: Some(now() - Duration::days(1)),
            ..Record::accepted()
        };
        assert_eq!(
            authorize(
                Some(&card),
                Some(&group_expired),
                0,
                Purpose::Start,
                now(),
                &p
            )
            .status,
            Status::Expired
        );
    }

    #[test]
    fn concurrent_use_is_judged_at_the_start_and_at_16_authorize() {
        let p = Policy::default();
        let r = Record::accepted();
        let at = |purpose| authorize(Some(&r), None, 1, purpose, now(), &p).status;
        assert_eq!(at(Purpose::Start), Status::ConcurrentTx);
        assert_eq!(at(Purpose::Authorize16), Status::ConcurrentTx);
        assert_eq!(at(Purpose::Authorize), Status::Accepted);
        let fleet = Record {
            allow_concurrent: true,
            ..Record::accepted()
        };
        assert_eq!(
            authorize(Some(&fleet), None, 3, Purpose::Start, now(), &p).status,
            Status::Accepted
        );
    }

    /// The master-pass group, a policy naming it and a token of it.
    fn master_pass() -> (IdToken, Policy, Record) {
        let master_group = IdToken::new("MASTER", TokenKind::Central);
        let p = Policy {
            master_pass_group: Some(master_group.clone()),
            cache_lifetime: None,
        };
        let master = Record {
            group: Some(master_group.clone()),
            ..Record::accepted()
        };
        (master_group, p, master)
    }

    #[test]
    fn master_pass_stops_anything_and_starts_nothing() {
        let (master_group, p, master) = master_pass();
        assert_eq!(
            authorize(Some(&master), None, 0, Purpose::Authorize, now(), &p).status,
            Status::Accepted
        );
        assert_eq!(
            authorize(Some(&master), None, 0, Purpose::Start, now(), &p).status,
            Status::Invalid
        );
        let owner = IdToken::id_tag("driver");
        let other = IdToken::id_tag("someone");
        assert!(may_stop(&other, Some(&master_group), &owner, None, &p));
        assert!(!may_stop(&other, None, &owner, None, &p));
        assert!(may_stop(&IdToken::id_tag("DRIVER"), None, &owner, None, &p));
        let fleet = IdToken::id_tag("FLEET");
        assert!(may_stop(&other, Some(&fleet), &owner, Some(&fleet), &p));
    }

    #[test]
    fn a_stop_judges_neither_concurrent_use_nor_the_master_pass() {
        let (master_group, p, master) = master_pass();
        let d = authorize(Some(&master), None, 0, Purpose::Stop, now(), &p);
        assert_eq!(d.status, Status::Accepted);
        assert_eq!(d.group, Some(master_group));
        let busy = authorize(Some(&Record::accepted()), None, 2, Purpose::Stop, now(), &p);
        assert_eq!(busy.status, Status::Accepted);
        let blocked = Record {
            status: Status::Blocked,
            ..Record::accepted()
        };
        assert_eq!(
            authorize(Some(&blocked), None, 0, Purpose::Stop, now(), &p).status,
            Status::Blocked
        );
    }

    #[test]
    fn cache_expiry_is_the_earlier_of_token_and_cache_lifetime() {
        let p = Policy {
            master_pass_group: None,
            cache_lifetime: Some(Duration::hours(1)),
        };
        let r = Record {
            expires_at: Some(now() + Duration::hours(3)),
            ..Record::accepted()
        };
        let d = authorize(Some(&r), None, 0, Purpose::Start, now(), &p);
        assert_eq!(d.expires_at, Some(now() + Duration::hours(1)));
        assert_eq!(d.to_v16().expiry_date, Some(now() + Duration::hours(1)));
        assert_eq!(
            d.to_v21().cache_expiry_date_time,
            Some(now() + Duration::hours(1))
        );
    }

    fn list(keys: &[&str]) -> BTreeMap<String, Decision> {
        keys.iter()
            .map(|k| {
                (
                    k.to_string(),
                    Decision {
                        status: Status::Accepted,
                        group: None,
                        expires_at: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn local_list_full_then_differential_then_full_after_a_mismatch() {
        let mut l = LocalList::default();
        let first = l.next_update(&list(&["A", "B", "C"])).unwrap();
        assert!(matches!(first, ListUpdate::Full { version: 1, .. }));
        l.accepted(&first);
        assert_eq!(l.next_update(&list(&["A", "B", "C"])), None);
        let diff = l.next_update(&list(&["A", "B", "D"])).unwrap();
        let ListUpdate::Differential { version, changes } = &diff else {
            panic!("{diff:?}")
        };
        assert_eq!(*version, 2);
        assert_eq!(changes.get("C"), Some(&None));
        assert!(changes.get("D").unwrap().is_some());
        l.accepted(&diff);
        assert_eq!(l.next_update(&list(&["A", "B", "D"])), None);
        // the station reports version 7: resend everything, above 7
        l.forget(Some(7));
        let again = l.next_update(&list(&["A", "B", "D"])).unwrap();
        assert!(
            matches!(again, ListUpdate::Full { version: 8, .. }),
            "{again:?}"
        );
    }
}
