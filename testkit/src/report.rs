//! Checks and reports: what every function of the kit returns.
//!
//! A [`Check`] is one row: a measured deviation against a tolerance (statistical checks), a
//! yes/no outcome written as deviation 0 or 1 against tolerance 0 (exact checks), or a skipped
//! row with its reason (a check that does not apply, e.g. a Gumbel identity for Gaussian
//! noise). A [`Report`] is a list of rows with a table for people
//! ([`Display`](std::fmt::Display)) and [`Report::assert_pass`] for tests.

use std::fmt;

/// Whether a [`Check`] passed, failed or was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The deviation is finite and within the tolerance.
    Pass,
    /// The deviation exceeds the tolerance (or is NaN).
    Fail,
    /// The check does not apply; neither a pass nor a failure.
    Skip,
}

impl Status {
    /// `"pass"`, `"FAIL"` or `"skip"` (the table's wording).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check: one row of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The measured deviation from the exact value (for the worst entry or instance); for an
    /// exact check 0 (held) or 1 (violated).
    pub deviation: f64,
    /// The allowed deviation for that entry (0 for exact checks).
    pub tolerance: f64,
    /// Samples (noise draws) or instances used.
    pub samples: usize,
    /// Which entry or instance is reported and the values compared; on failure it names the
    /// instance (shape, potentials or their seed) so that it can be reproduced.
    pub detail: String,
    /// `Some(reason)` when the check was skipped.
    pub skipped: Option<String>,
}

impl Check {
    /// A statistical check: `deviation` measured against `tolerance`.
    pub fn measured(
        name: impl Into<String>,
        deviation: f64,
        tolerance: f64,
        samples: usize,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            deviation,
            tolerance,
            samples,
            detail: detail.into(),
            skipped: None,
        }
    }

    /// An exact (yes/no) check over `instances` instances: deviation 0 when `held`, else 1,
    /// tolerance 0.
    pub fn exact(
        name: impl Into<String>,
        held: bool,
        instances: usize,
        detail: impl Into<String>,
    ) -> Check {
        Check::measured(name, if held { 0.0 } else { 1.0 }, 0.0, instances, detail)
    }

    /// A check that does not apply, with the reason (counted neither as pass nor as failure).
    pub fn skipped(name: impl Into<String>, reason: impl Into<String>) -> Check {
        let reason = reason.into();
        Check {
            name: name.into(),
            deviation: f64::NAN,
            tolerance: f64::NAN,
            samples: 0,
            detail: reason.clone(),
            skipped: Some(reason),
        }
    }

    /// Pass, fail or skip.
    pub fn status(&self) -> Status {
        if self.skipped.is_some() {
            Status::Skip
        } else if self.deviation.is_finite()
            && self.tolerance.is_finite()
            && self.tolerance >= 0.0
            && self.deviation <= self.tolerance
        {
            // Never for a NaN or infinite deviation or tolerance, nor a negative tolerance
            // (dlm verify once printed NaN rows marked ok).
            Status::Pass
        } else {
            Status::Fail
        }
    }

    /// Whether the check ran and its deviation is within the tolerance (false when skipped).
    pub fn pass(&self) -> bool {
        self.status() == Status::Pass
    }

    /// Whether the check ran and failed (false when skipped).
    pub fn failed(&self) -> bool {
        self.status() == Status::Fail
    }

    /// Whether the check was skipped.
    pub fn is_skipped(&self) -> bool {
        self.skipped.is_some()
    }

    /// The row for the entry with the largest `deviation / tolerance` among
    /// `(deviation, tolerance, detail)` entries: 0/0 (an exactly known entry, e.g. a
    /// probability of 0) counts as 0 and x/0 as infinite, so that NaN or an exact entry can
    /// never hide a failing one. No entries give a failing row.
    pub fn worst(name: &str, samples: usize, entries: &[(f64, f64, String)]) -> Check {
        let ratio = |dev: f64, tol: f64| -> f64 {
            if dev.is_nan() || tol.is_nan() {
                f64::INFINITY
            } else if dev == 0.0 {
                0.0
            } else if tol > 0.0 {
                dev / tol
            } else {
                f64::INFINITY
            }
        };
        let (dev, tol, detail) = entries
            .iter()
            .max_by(|a, b| ratio(a.0, a.1).total_cmp(&ratio(b.0, b.1)))
            .cloned()
            .unwrap_or((f64::NAN, 0.0, "no entries".into()));
        Check::measured(name, dev, tol, samples, detail)
    }
}

/// The rows of one run of the kit (or of any set of checks).
///
/// ```
/// use dlm_testkit::{Check, Report};
/// let mut r = Report::new();
/// r.push(Check::exact("feasible", true, 10, "10 instances"));
/// r.push(Check::measured("mean", 0.01, 0.05, 1000, "mean 0.01 vs 0"));
/// r.push(Check::skipped("Gumbel identities", "gaussian noise is not Gumbel-family"));
/// assert!(r.passed());
/// assert_eq!((r.num_passed(), r.num_failed(), r.num_skipped()), (2, 0, 1));
/// r.assert_pass();
/// println!("{r}");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The rows, in the order they were run.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Report {
        Report::default()
    }

    /// Adds a row.
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// Appends the rows of another report.
    pub fn extend(&mut self, other: Report) {
        self.checks.extend(other.checks);
    }

    /// True when no row failed (skipped rows do not count; an empty report passes).
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(Check::failed)
    }

    /// The failed rows.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.failed()).collect()
    }

    /// The row named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Rows that passed.
    pub fn num_passed(&self) -> usize {
        self.checks.iter().filter(|c| c.pass()).count()
    }

    /// Rows that failed.
    pub fn num_failed(&self) -> usize {
        self.checks.iter().filter(|c| c.failed()).count()
    }

    /// Rows that were skipped.
    pub fn num_skipped(&self) -> usize {
        self.checks.iter().filter(|c| c.is_skipped()).count()
    }

    /// Panics with the table of the failed rows (and the summary line) if any row failed.
    #[track_caller]
    pub fn assert_pass(&self) {
        if !self.passed() {
            let failed = Report {
                checks: self.failures().into_iter().cloned().collect(),
            };
            panic!(
                "{} of {} checks failed:\n{failed:#}",
                self.num_failed(),
                self.checks.len()
            );
        }
    }
}

fn cell(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.3e}")
    }
}

/// A table: check, deviation, tolerance, status; below each failed or skipped row its detail
/// (the alternate form `{:#}` prints the detail of every row); then a summary line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 72);
        writeln!(
            f,
            "{:<width$} {:>10} {:>10} {:>6}",
            "check", "deviation", "tolerance", "status"
        )?;
        for c in &self.checks {
            let status = c.status();
            writeln!(
                f,
                "{:<width$} {:>10} {:>10} {:>6}",
                c.name,
                cell(c.deviation),
                cell(c.tolerance),
                status.as_str()
            )?;
            if f.alternate() || status != Status::Pass {
                for line in c.detail.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.num_passed(),
            self.num_failed(),
            self.num_skipped()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exactly_known_entry_cannot_hide_a_failing_one() {
        // Entry 0: deviation 0 with tolerance 0 (a probability of exactly 0); entry 1 fails.
        let c = Check::worst(
            "t",
            10,
            &[
                (0.0, 0.0, "exact".into()),
                (1.0, 0.5, "bad".into()),
                (0.1, 0.5, "ok".into()),
            ],
        );
        assert_eq!(c.detail, "bad");
        assert!(!c.pass());
        let c = Check::worst(
            "t",
            10,
            &[(0.0, 0.0, "exact".into()), (0.1, 0.5, "ok".into())],
        );
        assert!(c.pass(), "{c:?}");
    }

    #[test]
    fn skipped_rows_are_neither_passes_nor_failures() {
        let mut r = Report::new();
        r.push(Check::skipped("s", "does not apply"));
        assert!(r.passed());
        assert_eq!((r.num_passed(), r.num_failed(), r.num_skipped()), (0, 0, 1));
        r.push(Check::exact("e", false, 3, "instance 2 broke"));
        r.push(Check::measured("nan", f64::NAN, 1.0, 3, "NaN never passes"));
        assert!(!r.passed());
        assert_eq!(r.failures().len(), 2);
        let table = r.to_string();
        assert!(table.contains("instance 2 broke") && table.contains("skip"));
        assert!(table.ends_with("0 passed, 2 failed, 1 skipped"), "{table}");
        let msg = std::panic::catch_unwind(|| r.assert_pass()).unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("2 of 3 checks failed") && msg.contains("instance 2 broke"));
        assert!(!msg.contains("does not apply"), "only failures: {msg}");
    }
}
