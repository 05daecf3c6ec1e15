//! Work done once per cluster, without I/O: which node runs each job.
//!
//! Each [`Job`] has a lease: an entry in a key-value bucket whose age
//! limit is the lease time, naming the node that holds it. A node that
//! does not hold a job tries to create the entry (refused while another
//! node's entry lives); the holder writes it again every third of the
//! lease over the revision it wrote last (refused once someone else wrote
//! it or it expired). The store drops an entry one lease after its last
//! write, so a dead holder's jobs are free one lease after its last
//! renewal and the next node to try takes them.
//!
//! A holder counts its lease from the moment it *sent* the write (before
//! the store's clock started the entry's age) and stops running the job
//! two thirds of a lease after its last successful renewal was sent, when
//! it could not renew (the bucket unreachable): by then no other node can
//! have taken it (the entry lives a full lease from its write). Only
//! clock rates matter, not clocks agreeing across machines. A holder whose
//! renewal is refused stops at once.
//!
//! [`Leases::handle`] takes one [`Input`] with the time and returns the
//! [`Decision`]s; the shell (`cluster::jobs`) does them and feeds their
//! outcomes back.

use std::collections::BTreeMap;
use std::time::Duration;

/// A job that runs on one node of the cluster at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// Pending outbox entries: billing and capture of ended sessions left
    /// by a crash or failure, OCPI push retries, card captures and refunds.
    Outbox,
    /// Stations the store says are online but whose node is gone: marked
    /// offline (uptime, `offline` alert).
    Offline,
    /// The OpenADR VEN's poll of the VTN (when configured).
    OpenAdr,
    /// The fleets' monthly invoices (`crate::fleets::monthly`).
    Invoicing,
}

impl Job {
    /// Every job.
    pub const ALL: [Job; 4] = [Job::Outbox, Job::Offline, Job::OpenAdr, Job::Invoicing];

    /// Its name: the lease's key, the metrics' label.
    pub fn name(self) -> &'static str {
        match self {
            Job::Outbox => "outbox",
            Job::Offline => "offline",
            Job::OpenAdr => "openadr",
            Job::Invoicing => "invoicing",
        }
    }

    /// The job of a name.
    pub fn of_name(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    /// Its index in [`Job::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What happened, for [`Leases::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed: take free jobs, renew held ones, give up lapsed ones.
    Tick,
    /// A [`Decision::Take`] or [`Decision::Renew`] was written at
    /// `revision`.
    Written {
        /// The job.
        job: Job,
        /// The entry's new revision.
        revision: u64,
    },
    /// A [`Decision::Take`] was refused: `holder` holds the job (`None`:
    /// the entry could not be read).
    Held {
        /// The job.
        job: Job,
        /// Who holds it.
        holder: Option<String>,
    },
    /// A [`Decision::Renew`] was refused: another node wrote the entry, or
    /// it expired. The job is lost.
    Lost {
        /// The job.
        job: Job,
    },
    /// A [`Decision::Take`] or [`Decision::Renew`] failed: the bucket did
    /// not answer. Tried again at a later tick.
    Failed {
        /// The job.
        job: Job,
    },
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create the job's entry naming this node (refused when there is
    /// one); answer [`Input::Written`], [`Input::Held`] or
    /// [`Input::Failed`].
    Take {
        /// The job.
        job: Job,
    },
    /// Write the job's entry again over `revision`; answer
    /// [`Input::Written`], [`Input::Lost`] or [`Input::Failed`].
    Renew {
        /// The job.
        job: Job,
        /// The revision this node wrote last.
        revision: u64,
    },
    /// Start running the job here.
    Start {
        /// The job.
        job: Job,
    },
    /// Stop running the job here.
    Stop {
        /// The job.
        job: Job,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not held; `next_try`: when to try to take it.
    Free { next_try: Duration },
    /// A take in flight, sent at `sent`.
    Taking { sent: Duration },
    /// Held at `revision`, the last successful write sent at `since`; a
    /// renewal sent at `renewing` is in flight.
    Holding {
        revision: u64,
        since: Duration,
        renewing: Option<Duration>,
    },
}

/// One node's leases.
#[derive(Debug)]
pub struct Leases {
    node: String,
    lease: Duration,
    jobs: BTreeMap<Job, State>,
    /// Who holds each job, as far as this node knows (`None`: unknown).
    holders: BTreeMap<Job, Option<String>>,
    /// Jobs this node took (counted per take).
    taken: u64,
}

impl Leases {
    /// The leases of node `node` on `jobs`, each entry living `lease` after
    /// its last write.
    pub fn new(node: impl Into<String>, lease: Duration, jobs: &[Job]) -> Leases {
        let next_try = Duration::ZERO;
        Leases {
            node: node.into(),
            lease,
            jobs: jobs
                .iter()
                .map(|j| (*j, State::Free { next_try }))
                .collect(),
            holders: jobs.iter().map(|j| (*j, None)).collect(),
            taken: 0,
        }
    }

    /// How often a holder renews, and a free job is tried.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How long a holder runs its job without a successful renewal.
    pub fn valid_for(&self) -> Duration {
        self.lease * 2 / 3
    }

    /// Whether this node holds `job`.
    pub fn holds(&self, job: Job) -> bool {
        matches!(self.jobs.get(&job), Some(State::Holding { .. }))
    }

    /// Who holds `job`, as far as this node knows.
    pub fn holder(&self, job: Job) -> Option<&str> {
        self.holders.get(&job)?.as_deref()
    }

    /// How many times this node took a job.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Applies `input` at `now` (time since the shell started).
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Decision> {
        match input {
            Input::Tick => self.tick(now),
            Input::Written { job, revision } => {
                let Some(state) = self.jobs.get_mut(&job) else {
                    return Vec::new();
                };
                match *state {
                    State::Taking { sent } => {
                        *state = State::Holding {
                            revision,
                            since: sent,
                            renewing: None,
                        };
                        self.taken += 1;
                        self.holders.insert(job, Some(self.node.clone()));
                        vec![Decision::Start { job }]
                    }
                    State::Holding {
                        renewing: Some(sent),
                        ..
                    } => {
                        *state = State::Holding {
                            revision,
                            since: sent,
                            renewing: None,
                        };
                        Vec::new()
                    }
                    // an answer to a write given up on (lapsed meanwhile):
                    // the entry lives, but this node stopped; it expires
                    _ => Vec::new(),
                }
            }
            Input::Held { job, holder } => {
                if let Some(state @ State::Taking { .. }) = self.jobs.get_mut(&job) {
                    *state = State::Free {
                        next_try: now + self.lease / 3,
                    };
                    self.holders.insert(job, holder);
                }
                Vec::new()
            }
            Input::Lost { job } => {
                let next_try = now + self.lease / 3;
                match self.jobs.get_mut(&job) {
                    Some(state @ State::Holding { .. }) => {
                        *state = State::Free { next_try };
                        self.holders.insert(job, None);
                        vec![Decision::Stop { job }]
                    }
                    _ => Vec::new(),
                }
            }
            Input::Failed { job } => {
                match self.jobs.get_mut(&job) {
                    Some(state @ State::Taking { .. }) => {
                        *state = State::Free {
                            next_try: now + Duration::from_secs(1),
                        };
                        self.holders.insert(job, None);
                    }
                    Some(State::Holding { renewing, .. }) => *renewing = None,
                    _ => {}
                }
                Vec::new()
            }
        }
    }

    fn tick(&mut self, now: Duration) -> Vec<Decision> {
        let (renew_every, valid_for) = (self.renew_every(), self.valid_for());
        let mut out = Vec::new();
        for (job, state) in &mut self.jobs {
            let job = *job;
            match state {
                State::Free { next_try } if now >= *next_try => {
                    *state = State::Taking { sent: now };
                    out.push(Decision::Take { job });
                }
                State::Holding { since, .. } if now.saturating_sub(*since) >= valid_for => {
                    *state = State::Free {
                        next_try: now + Duration::from_secs(1),
                    };
                    self.holders.insert(job, None);
                    out.push(Decision::Stop { job });
                }
                State::Holding {
                    revision,
                    since,
                    renewing: renewing @ None,
                } if now.saturating_sub(*since) >= renew_every => {
                    *renewing = Some(now);
                    out.push(Decision::Renew {
                        job,
                        revision: *revision,
                    });
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);
    const J: Job = Job::Outbox;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    fn node(name: &str) -> Leases {
        Leases::new(name, LEASE, &[J])
    }

    fn take() -> Vec<Decision> {
        vec![Decision::Take { job: J }]
    }
    fn start() -> Vec<Decision> {
        vec![Decision::Start { job: J }]
    }
    fn stop() -> Vec<Decision> {
        vec![Decision::Stop { job: J }]
    }
    fn renew(revision: u64) -> Vec<Decision> {
        vec![Decision::Renew { job: J, revision }]
    }
    fn written(revision: u64) -> Input {
        Input::Written { job: J, revision }
    }
    fn held_by(node: &str) -> Input {
        let holder = Some(node.to_owned());
        Input::Held { job: J, holder }
    }

    /// A bucket of one entry with an age limit: what the shell's store
    /// does, on the same virtual clock.
    #[derive(Default)]
    struct Bucket {
        entry: Option<(String, u64, Duration)>,
        revision: u64,
    }

    impl Bucket {
        fn live(&mut self, now: Duration) -> Option<&(String, u64, Duration)> {
            if self.entry.as_ref().is_some_and(|e| now >= e.2 + LEASE) {
                self.entry = None;
            }
            self.entry.as_ref()
        }
        /// Does `d` for node `n` at `now`: the outcome.
        fn apply(&mut self, now: Duration, n: &str, d: &Decision) -> Option<Input> {
            let job = J;
            match d {
                Decision::Take { .. } => Some(match self.live(now) {
                    Some((holder, _, _)) => held_by(&holder.clone()),
                    None => {
                        self.revision += 1;
                        self.entry = Some((n.into(), self.revision, now));
                        written(self.revision)
                    }
                }),
                Decision::Renew { revision, .. } => Some(match self.live(now) {
                    Some((_, r, _)) if r == revision => {
                        self.revision += 1;
                        self.entry = Some((n.into(), self.revision, now));
                        written(self.revision)
                    }
                    _ => Input::Lost { job },
                }),
                Decision::Start { .. } | Decision::Stop { .. } => None,
            }
        }
    }

    #[test]
    fn a_free_job_is_taken_started_and_renewed_every_third_of_the_lease() {
        let mut n = node("n1");
        assert_eq!(n.handle(s(0), Input::Tick), take());
        // in flight: not sent again
        assert!(n.handle(s(1), Input::Tick).is_empty());
        assert_eq!(n.handle(s(1), written(4)), start());
        assert!(n.holds(J));
        assert_eq!((n.holder(J), n.taken()), (Some("n1"), 1));
        // the lease counts from the take's sending (0 s)
        assert!(n.handle(s(9), Input::Tick).is_empty());
        assert_eq!(n.handle(s(10), Input::Tick), renew(4));
        assert!(n.handle(s(11), Input::Tick).is_empty());
        assert!(n.handle(s(12), written(9)).is_empty());
        assert!(n.handle(s(19), Input::Tick).is_empty());
        assert_eq!(n.handle(s(20), Input::Tick), renew(9));
    }

    #[test]
    fn a_job_held_elsewhere_is_tried_again_a_third_of_a_lease_later() {
        let mut n = node("n2");
        assert_eq!(n.handle(s(0), Input::Tick), take());
        assert!(n.handle(s(0), held_by("n1")).is_empty());
        assert!(!n.holds(J));
        assert_eq!(n.holder(J), Some("n1"));
        assert!(n.handle(s(9), Input::Tick).is_empty());
        assert_eq!(n.handle(s(10), Input::Tick), take());
    }

    #[test]
    fn a_refused_renewal_stops_the_job_at_once() {
        let mut n = node("n1");
        n.handle(s(0), Input::Tick);
        n.handle(s(0), written(1));
        assert_eq!(n.handle(s(10), Input::Tick), renew(1));
        assert_eq!(n.handle(s(10), Input::Lost { job: J }), stop());
        assert!(!n.holds(J));
        // a second refusal changes nothing
        assert!(n.handle(s(10), Input::Lost { job: J }).is_empty());
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_two_thirds_of_a_lease_after_its_last_renewal() {
        let mut n = node("n1");
        n.handle(s(0), Input::Tick);
        n.handle(s(0), written(1));
        assert_eq!(n.handle(s(10), Input::Tick), renew(1));
        assert!(n.handle(s(11), Input::Failed { job: J }).is_empty());
        assert_eq!(n.handle(s(12), Input::Tick), renew(1));
        n.handle(s(13), Input::Failed { job: J });
        assert!(n.holds(J));
        assert_eq!(n.handle(s(20), Input::Tick), stop());
        assert!(!n.holds(J));
        // a late answer to a write given up on does not restart it
        assert!(n.handle(s(21), written(2)).is_empty());
        assert!(!n.holds(J));
        // tried again afterwards
        assert_eq!(n.handle(s(21), Input::Tick), take());
    }

    #[test]
    fn a_failed_take_is_tried_again_a_second_later() {
        let mut n = node("n1");
        n.handle(s(0), Input::Tick);
        assert!(n.handle(s(0), Input::Failed { job: J }).is_empty());
        assert_eq!(n.holder(J), None);
        assert_eq!(n.handle(s(1), Input::Tick), take());
    }

    /// Two nodes on one bucket, one second ticks; at 50 s node 1 dies
    /// (`cut` false: no more ticks) or is cut off from the bucket (`cut`:
    /// it ticks on, its writes fail). Returns when node 2 took over and
    /// node 1's last write; asserts that exactly one node runs the job at
    /// any time before, and never both.
    fn run_two(cut: bool) -> (Duration, Duration) {
        let mut bucket = Bucket::default();
        let mut nodes = [node("n1"), node("n2")];
        let mut running = [false, false];
        let mut last_write_of_n1 = None;
        let mut takeover = None;
        for t in 0..200u64 {
            let now = s(t);
            if t == 50 {
                last_write_of_n1 = bucket.entry.clone().map(|e| e.2);
            }
            for (i, n) in nodes.iter_mut().enumerate() {
                let gone = i == 0 && t >= 50;
                if gone && !cut {
                    running[0] = false;
                    continue;
                }
                let name = n.node.clone();
                let mut pending = n.handle(now, Input::Tick);
                while let Some(d) = pending.pop() {
                    match &d {
                        Decision::Start { .. } => running[i] = true,
                        Decision::Stop { .. } => running[i] = false,
                        _ => {}
                    }
                    let outcome = match &d {
                        Decision::Take { job } | Decision::Renew { job, .. } if gone => {
                            Some(Input::Failed { job: *job })
                        }
                        _ => bucket.apply(now, &name, &d),
                    };
                    if let Some(outcome) = outcome {
                        pending.extend(n.handle(now, outcome));
                    }
                }
            }
            assert!(!(running[0] && running[1]), "both run at {t} s");
            if t < 50 {
                assert!(running[0] && !running[1], "n1 runs alone at {t} s");
            }
            if t > 50 && running[1] && takeover.is_none() {
                takeover = Some(now);
            }
        }
        assert_eq!(nodes[0].taken(), 1);
        assert_eq!(nodes[1].holder(J), Some("n2"));
        (
            takeover.expect("n2 took over"),
            last_write_of_n1.expect("n1 wrote"),
        )
    }

    #[test]
    fn a_dead_holders_job_is_taken_over_within_a_lease_and_a_third() {
        let (taken, last) = run_two(false);
        assert!(taken >= last + LEASE, "{taken:?} {last:?}");
        assert!(taken <= last + LEASE + LEASE / 3, "{taken:?} {last:?}");
    }

    #[test]
    fn a_holder_cut_off_stops_before_another_node_takes_its_job() {
        // run_two asserts that both never run
        let (taken, last) = run_two(true);
        assert!(taken >= last + LEASE, "{taken:?} {last:?}");
    }

    #[test]
    fn jobs_have_names_and_come_back_from_them() {
        for j in Job::ALL {
            assert_eq!(Job::of_name(j.name()), Some(j));
            assert_eq!(Job::ALL[j.index()], j);
        }
        assert_eq!(Job::of_name("nope"), None);
    }
}
