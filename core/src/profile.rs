//! The cost model of training (`dlm train --profile`): wall-clock time per phase of a step,
//! and the solver floor.
//!
//! Profiling is off unless [`set_enabled`] turns it on; every timer first asks [`enabled`]
//! (one relaxed atomic load, once per call of the code it times), so that with profiling off
//! no clock is read and nothing is recorded.
//!
//! # What the numbers mean
//! Phases are timed where they happen, per phase and not per element:
//! * A **serial** phase (the `mu` forward pass, the optimizer step, ...) adds its wall-clock
//!   time ([`add_wall`]).
//! * A **parallel region** (the estimator's per-(example, draw) loop, the noiseless solves)
//!   adds its wall-clock time once ([`add_region`]); the work inside it is timed per worker
//!   task and summed into **thread-seconds** per phase ([`add_thread`]: noise draws, plain
//!   solves, ...). A phase's share of the epoch is its thread-seconds divided by the pool's
//!   thread count, and what the region's wall time leaves over is `parallel_idle`: workers
//!   waiting for work (load imbalance, fork/join and thread wake-ups).
//!
//! So the phases of [`Report`] add up to the epoch: serial phases plus `threads`-normalised
//! parallel phases plus idle plus the untimed remainder. The **solver floor** is the time the
//! epoch's solves would take alone on all threads: the thread-seconds of every solve (plain,
//! loss-augmented, noiseless) divided by the thread count, i.e. number of solves x measured
//! mean time per solve / threads, measured in the same run on the run's own potentials.
//!
//! The accumulators are process-wide: one training run at a time per process.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A phase of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Drawing the perturbations and forming the perturbed potentials.
    Noise,
    /// Solving the perturbed problems `argmax <theta + sigma gamma, phi>`.
    PlainSolves,
    /// Solving the loss-augmented problems (and any other solve an estimator makes besides
    /// the plain ones, e.g. SPO+'s `2 theta - c` problem).
    AugmentedSolves,
    /// The noiseless predictions `argmax <theta, phi>` of the monitored loss.
    NoiselessSolves,
    /// The `mu` network's forward pass.
    MuForward,
    /// The task's map from the network's output to potentials and back (k-NN: the distance
    /// matrix and its gradient).
    PotentialMap,
    /// The `mu` network's backward pass and optimizer step.
    MuBackward,
    /// The `sigma` network: forward, backward and optimizer step.
    SigmaNet,
    /// The estimator's own work besides draws and solves: checks, linear forms, augmented
    /// potentials, loss values, the zero-direction escape, the reduction.
    Bookkeeping,
    /// Workers of a parallel region without work (imbalance, fork/join, wake-ups).
    ParallelIdle,
    /// Evaluation run inside training.
    Evaluation,
}

/// Every phase, in report order.
pub const PHASES: [Phase; 11] = [
    Phase::Noise,
    Phase::PlainSolves,
    Phase::AugmentedSolves,
    Phase::NoiselessSolves,
    Phase::MuForward,
    Phase::PotentialMap,
    Phase::MuBackward,
    Phase::SigmaNet,
    Phase::Bookkeeping,
    Phase::ParallelIdle,
    Phase::Evaluation,
];

const N: usize = PHASES.len();

impl Phase {
    /// The name in reports (`snake_case`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Noise => "noise",
            Phase::PlainSolves => "plain_solves",
            Phase::AugmentedSolves => "augmented_solves",
            Phase::NoiselessSolves => "noiseless_solves",
            Phase::MuForward => "mu_forward",
            Phase::PotentialMap => "potential_map",
            Phase::MuBackward => "mu_backward",
            Phase::SigmaNet => "sigma_net",
            Phase::Bookkeeping => "estimator_bookkeeping",
            Phase::ParallelIdle => "parallel_idle",
            Phase::Evaluation => "evaluation",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the phase is a solve (counts towards the solver floor).
    pub fn is_solve(self) -> bool {
        matches!(
            self,
            Phase::PlainSolves | Phase::AugmentedSolves | Phase::NoiselessSolves
        )
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
/// Wall-clock nanoseconds of serial phases.
static WALL: [AtomicU64; N] = [ZERO; N];
/// Thread-nanoseconds of work inside parallel regions.
static THREAD: [AtomicU64; N] = [ZERO; N];
/// Wall-clock nanoseconds of parallel regions.
static REGION: AtomicU64 = AtomicU64::new(0);
/// Solves counted.
static SOLVES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static PAIR_MARK: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether profiling is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns profiling on or off (it starts off).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Zeroes every accumulator.
pub fn reset() {
    for a in WALL.iter().chain(THREAD.iter()) {
        a.store(0, Ordering::Relaxed);
    }
    REGION.store(0, Ordering::Relaxed);
    SOLVES.store(0, Ordering::Relaxed);
}

/// The current time when profiling is on, else `None` (no clock read).
#[inline]
pub fn now() -> Option<Instant> {
    if enabled() {
        Some(Instant::now())
    } else {
        None
    }
}

/// Nanoseconds since `start` (0 for `None`).
#[inline]
pub fn nanos_since(start: Option<Instant>) -> u64 {
    start.map_or(0, |s| s.elapsed().as_nanos() as u64)
}

/// Adds the wall time since `start` (from [`now`]) to the serial phase `phase`; returns the
/// current time (for the next phase), `None` when `start` is `None`.
#[inline]
pub fn add_wall(phase: Phase, start: Option<Instant>) -> Option<Instant> {
    let s = start?;
    let t = Instant::now();
    WALL[phase.index()].fetch_add((t - s).as_nanos() as u64, Ordering::Relaxed);
    Some(t)
}

/// Adds `nanos` wall-clock nanoseconds to the serial phase `phase`.
#[inline]
pub fn add_wall_nanos(phase: Phase, nanos: u64) {
    WALL[phase.index()].fetch_add(nanos, Ordering::Relaxed);
}

/// Adds `nanos` thread-nanoseconds of work inside a parallel region to `phase`.
#[inline]
pub fn add_thread(phase: Phase, nanos: u64) {
    THREAD[phase.index()].fetch_add(nanos, Ordering::Relaxed);
}

/// Adds the wall time since `start` as a parallel region (whose work went to
/// [`add_thread`]).
#[inline]
pub fn add_region(start: Option<Instant>) {
    if let Some(s) = start {
        REGION.fetch_add(s.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Adds `nanos` wall-clock nanoseconds of a parallel region.
#[inline]
pub fn add_region_nanos(nanos: u64) {
    REGION.fetch_add(nanos, Ordering::Relaxed);
}

/// Counts `n` solves.
#[inline]
pub fn count_solves(n: u64) {
    SOLVES.fetch_add(n, Ordering::Relaxed);
}

/// Everything recorded so far (serial and region wall time), in nanoseconds: what a caller
/// subtracts to find the part of a block that nothing inside it accounted for.
pub fn accounted_nanos() -> u64 {
    WALL.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>() + REGION.load(Ordering::Relaxed)
}

/// Called by a structure's paired solve between its plain and its loss-augmented solve, so
/// that a profile can split the pair's time (only when profiling is on: one atomic load
/// otherwise).
#[inline]
pub fn pair_mark() {
    if enabled() {
        PAIR_MARK.with(|m| m.set(Some(Instant::now())));
    }
}

/// Takes the mark [`pair_mark`] left on this thread, if any.
#[inline]
pub fn take_pair_mark() -> Option<Instant> {
    PAIR_MARK.with(|m| m.take())
}

/// The nanoseconds of a paired solve from `start` to `end`, split at `mark` (a structure's
/// [`pair_mark`], or the caller's clock between two separate solves) into the plain and the
/// augmented solve; without a mark the two share the time evenly.
pub fn split_pair(start: Instant, mark: Option<Instant>, end: Instant) -> (u64, u64) {
    let ns = |a: Instant, b: Instant| b.saturating_duration_since(a).as_nanos() as u64;
    let total = ns(start, end);
    match mark {
        Some(m) if m >= start && m <= end => (ns(start, m), ns(m, end)),
        _ => (total / 2, total - total / 2),
    }
}

/// What the accumulators hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    wall: [u64; N],
    thread: [u64; N],
    region: u64,
    solves: u64,
}

/// Reads the accumulators.
pub fn snapshot() -> Snapshot {
    let read = |a: &[AtomicU64; N]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
    Snapshot {
        wall: read(&WALL),
        thread: read(&THREAD),
        region: REGION.load(Ordering::Relaxed),
        solves: SOLVES.load(Ordering::Relaxed),
    }
}

/// The per-epoch cost model of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Seconds per epoch of each phase, in [`PHASES`] order, then `("remainder", ...)`: the
    /// epoch's time that no phase accounts for (data, targets, the task's metric, the trainer,
    /// checkpoints).
    pub phases: Vec<(&'static str, f64)>,
    /// Wall-clock seconds per epoch.
    pub epoch_seconds: f64,
    /// The solves' thread-seconds per epoch divided by the thread count.
    pub solver_floor_seconds: f64,
    /// `epoch_seconds / solver_floor_seconds` (infinite when nothing was solved).
    pub floor_ratio: f64,
    /// Solves per epoch.
    pub solves_per_epoch: f64,
    /// Mean seconds per solve (thread-seconds of the solves / solves).
    pub seconds_per_solve: f64,
    /// The worker threads.
    pub threads: usize,
    /// Epochs measured.
    pub epochs: u64,
}

impl Snapshot {
    /// The cost model of `epochs` epochs that took `seconds` of wall time on `threads`
    /// threads.
    pub fn report(&self, epochs: u64, seconds: f64, threads: usize) -> Report {
        let e = epochs.max(1) as f64;
        let t = threads.max(1) as f64;
        let per = |ns: u64| ns as f64 * 1e-9 / e;
        let mut phases = Vec::with_capacity(N + 1);
        let thread_total: u64 = self.thread.iter().sum();
        let mut sum = 0.0;
        for p in PHASES {
            let i = p.index();
            let v = if p == Phase::ParallelIdle {
                (per(self.region) - per(thread_total) / t).max(0.0) + per(self.wall[i])
            } else {
                per(self.wall[i]) + per(self.thread[i]) / t
            };
            sum += v;
            phases.push((p.name(), v));
        }
        let epoch_seconds = seconds / e;
        phases.push(("remainder", (epoch_seconds - sum).max(0.0)));
        let solve_ns: u64 = PHASES
            .iter()
            .filter(|p| p.is_solve())
            .map(|p| self.thread[p.index()] + self.wall[p.index()])
            .sum();
        let solver_floor_seconds = per(solve_ns) / t;
        Report {
            phases,
            epoch_seconds,
            solver_floor_seconds,
            floor_ratio: epoch_seconds / solver_floor_seconds,
            solves_per_epoch: self.solves as f64 / e,
            seconds_per_solve: if self.solves == 0 {
                0.0
            } else {
                solve_ns as f64 * 1e-9 / self.solves as f64
            },
            threads,
            epochs,
        }
    }
}

impl Report {
    /// A table for humans: one line per phase (ms per epoch and share), then the epoch, the
    /// floor and their ratio.
    pub fn table(&self) -> String {
        let mut s = format!(
            "profile: {} epochs on {} threads (parallel phases: thread-seconds / threads)\n",
            self.epochs, self.threads
        );
        for (name, v) in &self.phases {
            s.push_str(&format!(
                "  {name:<22} {:>10.4} ms/epoch {:>6.1} %\n",
                v * 1e3,
                100.0 * v / self.epoch_seconds.max(f64::MIN_POSITIVE)
            ));
        }
        s.push_str(&format!(
            "  {:<22} {:>10.4} ms/epoch\n  {:<22} {:>10.4} ms/epoch ({:.1} solves x {:.2} us / {} threads)\n  {:<22} {:>10.2}\n",
            "epoch",
            self.epoch_seconds * 1e3,
            "solver floor",
            self.solver_floor_seconds * 1e3,
            self.solves_per_epoch,
            self.seconds_per_solve * 1e6,
            self.threads,
            "epoch / floor",
            self.floor_ratio
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_splits_regions_by_thread_share_and_keeps_the_sum() {
        let mut s = Snapshot {
            wall: [0; N],
            thread: [0; N],
            region: 0,
            solves: 4,
        };
        // 2 epochs of 10 ms: a 4 ms serial forward, a 5 ms region on 2 threads with 6 ms of
        // plain solves and 2 ms of noise (thread-seconds).
        s.wall[Phase::MuForward.index()] = 8_000_000;
        s.region = 10_000_000;
        s.thread[Phase::PlainSolves.index()] = 12_000_000;
        s.thread[Phase::Noise.index()] = 4_000_000;
        let r = s.report(2, 0.020, 2);
        let get = |n: &str| r.phases.iter().find(|(k, _)| *k == n).unwrap().1;
        assert!((get("mu_forward") - 0.004).abs() < 1e-12);
        assert!((get("plain_solves") - 0.003).abs() < 1e-12);
        assert!((get("noise") - 0.001).abs() < 1e-12);
        assert!((get("parallel_idle") - 0.001).abs() < 1e-12);
        assert!((get("remainder") - 0.001).abs() < 1e-12);
        let total: f64 = r.phases.iter().map(|(_, v)| v).sum();
        assert!((total - r.epoch_seconds).abs() < 1e-12);
        assert!((r.solver_floor_seconds - 0.003).abs() < 1e-12);
        assert!((r.floor_ratio - 10.0 / 3.0).abs() < 1e-9);
        assert!((r.seconds_per_solve - 0.003).abs() < 1e-12);
        assert!(r.table().contains("epoch / floor"));
    }
}
