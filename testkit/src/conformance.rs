//! Conformance of a [`StructuredArgmax`] to its contract, against brute force.
//!
//! [`check_structure`] runs every check below on a handful of small shapes (see
//! [`KitOptions::shapes`]) and returns one [`Check`] row per property, each naming the first
//! failing instance (shape, potentials, kind and case number):
//!
//! | row | property |
//! |---|---|
//! | `shapes` | `check_shape` accepts some small shape (or every given shape) |
//! | `enumerate` | the listed solutions are distinct, in range, without repeated indices |
//! | `optimal (KIND)` | the score of `argmax` equals the brute-force optimum over the listed solutions, for continuous, tied, all-equal and large-magnitude potentials |
//! | `feasible` | the returned active set is one of the listed solutions, in range, no index twice |
//! | `phi consistent` | for every solution `y`, `argmax(2 phi(y) - 1)` returns `y` (its unique optimum) |
//! | `raising theta keeps the solution optimal` | adding `0.5` to `theta` on the returned set keeps it optimal |
//! | `deterministic` | equal inputs give equal outputs, twice in a row and after other solves |
//! | `argmax_pair` | both results are optimal and do not depend on earlier calls |
//! | `non-finite refused` | NaN, +inf and -inf potentials are an error (not a panic, not a result) |
//! | `wrong shape refused` | a shape `check_shape` refuses is an error in `argmax` |
//!
//! Without `enumerate` the ground truth is the set of solutions the structure itself returned
//! for many random potentials ("discovered by probing"); the rows say so. A panic anywhere is
//! caught and reported as a failure of the row.

use crate::options::KitOptions;
use crate::plan::{plan, Plan, ShapeCase};
use crate::report::{Check, Report};
use crate::util::{
    guarded, instance, random_theta, score_of, score_tol, solve, sorted, Failure, Kind,
};
use dlm_core::error::Result;
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::ArrayD;

/// Tally of one row: instances checked, failures, the first failure's detail.
pub(crate) struct Row {
    name: String,
    n: usize,
    fails: usize,
    first: Option<String>,
}

impl Row {
    pub(crate) fn new(name: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            n: 0,
            fails: 0,
            first: None,
        }
    }

    pub(crate) fn ok(&mut self) {
        self.n += 1;
    }

    pub(crate) fn fail(&mut self, detail: impl FnOnce() -> String) {
        self.n += 1;
        self.fails += 1;
        if self.first.is_none() {
            self.first = Some(detail());
        }
    }

    pub(crate) fn record(&mut self, held: bool, detail: impl FnOnce() -> String) {
        if held {
            self.ok()
        } else {
            self.fail(detail)
        }
    }

    /// The row, with `what` describing the instances on a pass.
    pub(crate) fn check(self, what: &str) -> Check {
        match self.first {
            None if self.n == 0 => Check::skipped(self.name, format!("no instances: {what}")),
            None => Check::exact(
                self.name,
                true,
                self.n,
                format!("{} instances; {what}", self.n),
            ),
            Some(first) => Check::exact(
                self.name,
                false,
                self.n,
                format!(
                    "{} of {} instances failed; first: {first}",
                    self.fails, self.n
                ),
            ),
        }
    }
}

/// One instance of the conformance checks.
struct Instance {
    seed: u64,
    kind: Kind,
    index: usize,
    theta: ArrayD<f64>,
    first: std::result::Result<Vec<usize>, Failure>,
}

impl Instance {
    fn label(&self) -> String {
        format!(
            "{} ({} case {}, seed {})",
            instance(&self.theta),
            self.kind.as_str(),
            self.index,
            self.seed
        )
    }
}

/// An `argmax_pair` call that passed, to repeat after other solves.
struct PairCase {
    inst: usize,
    theta: ArrayD<f64>,
    aug: ArrayD<f64>,
    a: Vec<usize>,
    b: Vec<usize>,
}

/// A named call that must refuse its input.
type Call<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);

fn in_range_distinct(active: &[usize], m: usize) -> std::result::Result<(), String> {
    if let Some(&i) = active.iter().find(|&&i| i >= m) {
        return Err(format!("index {i} is outside the {m} entries"));
    }
    let s = sorted(active);
    if let Some(w) = s.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("index {} appears twice", w[0]));
    }
    Ok(())
}

fn opt_row(kind: Kind) -> usize {
    match kind {
        Kind::Continuous => 0,
        Kind::Ties | Kind::EqualRows => 1,
        Kind::AllEqual => 2,
        Kind::Large => 3,
    }
}

/// Runs the conformance checks on `s` (see the [module docs](self)).
///
/// Errors only for invalid `opts`; everything the structure does wrong is a failing row.
///
/// ```
/// use dlm_core::{DlmError, Result, StructuredArgmax};
/// use dlm_core::structure::checked_slice;
/// use dlm_testkit::{conformance, KitOptions};
/// use ndarray::ArrayViewD;
///
/// /// The best of [C] classes, ties to the lowest index.
/// struct Best;
/// impl StructuredArgmax for Best {
///     fn name(&self) -> &str { "best" }
///     fn check_shape(&self, shape: &[usize]) -> Result<()> {
///         match shape {
///             [c] if *c >= 1 => Ok(()),
///             _ => Err(DlmError::shape("best", "[C]", shape)),
///         }
///     }
///     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
///         let t = checked_slice(self, &theta)?;
///         let best = (0..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b });
///         out.clear();
///         out.push(best);
///         Ok(())
///     }
///     fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
///         Ok(Some((0..shape[0]).map(|c| vec![c]).collect()))
///     }
/// }
/// conformance::check_structure(&Best, &KitOptions::default())?.assert_pass();
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub fn check_structure(s: &dyn StructuredArgmax, opts: &KitOptions) -> Result<Report> {
    opts.validate()?;
    let plan = plan(s, opts);
    Ok(check_planned(s, &plan, opts))
}

pub(crate) fn check_planned(s: &dyn StructuredArgmax, plan: &Plan, opts: &KitOptions) -> Report {
    let mut report = Report::new();
    let shapes_ok = !plan.cases.is_empty() && plan.problems.is_empty();
    report.push(Check::exact(
        "shapes",
        shapes_ok,
        plan.cases.len(),
        if plan.cases.is_empty() {
            format!(
                "no usable shape: check_shape refuses every probed shape, or argmax gives no \
                 solution on those it accepts (give KitOptions::shapes). {}",
                plan.problems.join("; ")
            )
        } else if !plan.problems.is_empty() {
            plan.problems.join("; ")
        } else {
            format!("checked on {}", plan.describe())
        },
    ));
    if plan.cases.iter().any(|c| c.solutions.enumerated) || !plan.enumerate_problems.is_empty() {
        let ok = plan.enumerate_problems.is_empty();
        report.push(Check::exact(
            "enumerate: distinct, in-range solutions",
            ok,
            plan.cases.len(),
            if ok {
                plan.describe()
            } else {
                plan.enumerate_problems.join("; ")
            },
        ));
    } else {
        report.push(Check::skipped(
            "enumerate: distinct, in-range solutions",
            "enumerate returns None for every shape: optimality is checked against the solutions \
             discovered by probing",
        ));
    }
    if plan.cases.is_empty() {
        return report;
    }
    let all_enumerated = plan.cases.iter().all(|c| c.solutions.enumerated);
    let truth = if all_enumerated {
        "against the enumerated solutions".to_string()
    } else {
        "against solutions discovered by probing where enumerate returns None".to_string()
    };

    let mut rows_opt = [
        Row::new("optimal vs brute force (continuous theta)"),
        Row::new("optimal vs brute force (tied theta)"),
        Row::new("optimal vs brute force (all-equal theta)"),
        Row::new("optimal vs brute force (large-magnitude theta)"),
    ];
    let mut feasible = Row::new("feasible: a listed solution, in range, no index twice");
    let mut phi = Row::new("phi consistent: argmax(2 phi(y) - 1) = y for each solution y");
    let mut raise = Row::new("raising theta on the solution keeps it optimal");
    let mut determ = Row::new("deterministic: same input, same output (also after other solves)");
    let mut pair = Row::new("argmax_pair: both optimal, independent of earlier calls");
    let mut nonfinite = Row::new("non-finite potentials (NaN, +inf, -inf) refused with an error");

    let mut instances: Vec<Instance> = Vec::new();
    let mut pairs: Vec<PairCase> = Vec::new();
    for (case, sc) in plan.cases.iter().enumerate() {
        let ShapeCase { shape, solutions } = sc;
        let m: usize = shape.iter().product();
        let mut rng = rng_for(opts.seed, Stream::Other, &[0xC0F, case as u64]);
        let kinds: Vec<(Kind, usize)> = vec![
            (Kind::Continuous, opts.cases),
            (Kind::Ties, opts.cases.div_ceil(2)),
            (Kind::EqualRows, 1),
            (Kind::AllEqual, 1),
            (Kind::Large, opts.cases.div_ceil(4)),
        ];
        for (kind, count) in kinds {
            for index in 0..count {
                let theta = random_theta(shape, &mut rng, kind);
                let first = solve(s, &theta);
                let inst = Instance {
                    seed: opts.seed,
                    kind,
                    index,
                    theta,
                    first,
                };
                let t = inst.theta.as_slice().expect("fresh array");
                let tol = score_tol(t);
                let row = &mut rows_opt[opt_row(kind)];
                match &inst.first {
                    Err(f) => {
                        row.fail(|| format!("{}: argmax failed on valid input: {f}", inst.label()));
                        feasible.fail(|| format!("{}: {f}", inst.label()));
                        determ.fail(|| format!("{}: {f}", inst.label()));
                    }
                    Ok(y) => {
                        // Twice in a row.
                        match solve(s, &inst.theta) {
                            Ok(again) if &again == y => {}
                            Ok(again) => determ.fail(|| {
                                format!("{}: {y:?} then {again:?} on the same input", inst.label())
                            }),
                            Err(f) => determ.fail(|| format!("{}: second call: {f}", inst.label())),
                        }
                        match in_range_distinct(y, m) {
                            Err(why) => {
                                feasible.fail(|| format!("{}: {y:?}: {why}", inst.label()));
                                row.fail(|| format!("{}: {y:?}: {why}", inst.label()));
                            }
                            Ok(()) => {
                                let listed = !solutions.enumerated || solutions.contains(y);
                                feasible.record(listed, || {
                                    format!(
                                        "{}: {y:?} is not among the {}",
                                        inst.label(),
                                        solutions.source()
                                    )
                                });
                                let got = score_of(t, y);
                                let (best, at) = solutions.best(t);
                                row.record(got >= best - tol, || {
                                    format!(
                                        "{}: returned {y:?} with score {got} but {at:?} scores \
                                         {best} (brute force over the {})",
                                        inst.label(),
                                        solutions.source()
                                    )
                                });
                                if kind == Kind::Continuous {
                                    // Raise theta on the returned set.
                                    let mut up = inst.theta.clone();
                                    for &i in y {
                                        up.as_slice_mut().expect("fresh")[i] += 0.5;
                                    }
                                    let u = up.as_slice().expect("fresh");
                                    let want = score_of(u, y);
                                    match solve(s, &up) {
                                        Ok(y2) if in_range_distinct(&y2, m).is_ok() => {
                                            let got2 = score_of(u, &y2);
                                            raise.record(got2 >= want - score_tol(u), || {
                                                format!(
                                                    "{}: after adding 0.5 on {y:?} argmax \
                                                     returned {y2:?} scoring {got2} < {want}",
                                                    inst.label()
                                                )
                                            });
                                        }
                                        Ok(y2) => raise.fail(|| {
                                            format!("{}: raised: returned {y2:?}", inst.label())
                                        }),
                                        Err(f) => {
                                            raise.fail(|| format!("{}: raised: {f}", inst.label()))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                if kind == Kind::Continuous && index < 6 {
                    let eps = [-1.0, 0.3, 2.0][index % 3];
                    let mut aug = inst.theta.clone();
                    aug.mapv_inplace(|v| v + eps * (2.0 * open01(&mut rng) - 1.0));
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    match guarded(|| s.argmax_pair(inst.theta.view(), aug.view(), &mut a, &mut b)) {
                        Err(f) => pair.fail(|| format!("{}: argmax_pair: {f}", inst.label())),
                        Ok(()) => {
                            let ta = aug.as_slice().expect("fresh");
                            let check =
                                |y: &[usize], th: &[f64]| -> std::result::Result<(), String> {
                                    in_range_distinct(y, m)?;
                                    if solutions.enumerated && !solutions.contains(y) {
                                        return Err(format!("{y:?} is not a listed solution"));
                                    }
                                    let (best, at) = solutions.best(th);
                                    let got = score_of(th, y);
                                    if got < best - score_tol(th) {
                                        return Err(format!(
                                            "{y:?} scores {got} but {at:?} scores {best}"
                                        ));
                                    }
                                    Ok(())
                                };
                            match check(&a, t).and_then(|_| check(&b, ta)) {
                                Ok(()) => {
                                    pair.ok();
                                    pairs.push(PairCase {
                                        inst: instances.len(),
                                        theta: inst.theta.clone(),
                                        aug,
                                        a,
                                        b,
                                    });
                                }
                                Err(why) => pair.fail(|| {
                                    format!(
                                        "{}, augmented by eps {eps} * uniform(-1, 1) noise: {why}",
                                        inst.label()
                                    )
                                }),
                            }
                        }
                    }
                }
                instances.push(inst);
            }
        }

        // phi consistency over (a sample of) the solutions.
        let list = &solutions.list;
        let step = (list.len() / 256).max(1);
        for y in list.iter().step_by(step) {
            let theta = {
                let mut t = ArrayD::from_elem(ndarray::IxDyn(shape), -1.0);
                let ts = t.as_slice_mut().expect("fresh");
                for &i in y {
                    ts[i] = 1.0;
                }
                t
            };
            match solve(s, &theta) {
                Ok(got) => phi.record(sorted(&got) == sorted(y), || {
                    format!(
                        "{}: the unique optimum is {y:?} but argmax returned {got:?}",
                        instance(&theta)
                    )
                }),
                Err(f) => phi.fail(|| format!("{}: {f}", instance(&theta))),
            }
        }

        // Non-finite potentials, at the first and the last entry.
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for pos in [0, m - 1] {
                let good = random_theta(shape, &mut rng, Kind::Continuous);
                let mut t = good.clone();
                t.as_slice_mut().expect("fresh")[pos] = bad;
                let what = || format!("shape {shape:?}, {bad} at flat index {pos}");
                let calls: [Call<'_>; 3] = [
                    ("argmax", Box::new(|| s.argmax(t.view(), &mut Vec::new()))),
                    (
                        "argmax_pair (plain)",
                        Box::new(|| {
                            s.argmax_pair(t.view(), good.view(), &mut Vec::new(), &mut Vec::new())
                        }),
                    ),
                    (
                        "argmax_pair (augmented)",
                        Box::new(|| {
                            s.argmax_pair(good.view(), t.view(), &mut Vec::new(), &mut Vec::new())
                        }),
                    ),
                ];
                for (call, f) in calls {
                    match guarded(f) {
                        Ok(()) => nonfinite.fail(|| format!("{}: {call} accepted it", what())),
                        Err(f) if f.is_panic() => {
                            nonfinite.fail(|| format!("{}: {call} {f}", what()))
                        }
                        Err(_) => nonfinite.ok(),
                    }
                }
            }
        }
    }

    // Determinism after other solves: everything again, in reverse order.
    for inst in instances.iter().rev() {
        if let Ok(y) = &inst.first {
            match solve(s, &inst.theta) {
                Ok(again) => determ.record(&again == y, || {
                    format!(
                        "{}: {y:?} first, {again:?} after {} other solves",
                        inst.label(),
                        instances.len()
                    )
                }),
                Err(f) => determ.fail(|| format!("{}: later call: {f}", inst.label())),
            }
        }
    }
    for PairCase {
        inst: i,
        theta,
        aug,
        a,
        b,
    } in pairs.iter().rev()
    {
        let (mut a2, mut b2) = (Vec::new(), Vec::new());
        match guarded(|| s.argmax_pair(theta.view(), aug.view(), &mut a2, &mut b2)) {
            Ok(()) => pair.record(a == &a2 && b == &b2, || {
                format!(
                    "{}: argmax_pair gave ({a:?}, {b:?}) first and ({a2:?}, {b2:?}) after other \
                     solves",
                    instances[*i].label()
                )
            }),
            Err(f) => pair.fail(|| format!("{}: repeated argmax_pair: {f}", instances[*i].label())),
        }
    }

    let [o0, o1, o2, o3] = rows_opt;
    report.push(o0.check(&truth));
    report.push(o1.check(&truth));
    report.push(o2.check(&truth));
    report.push(o3.check(&truth));
    report.push(feasible.check(if all_enumerated {
        "every result is an enumerated solution"
    } else {
        "in range and no index twice (membership only where enumerate lists the solutions)"
    }));
    report.push(phi.check(&truth));
    report.push(raise.check("continuous theta, +0.5 on the returned active set"));
    report.push(
        determ.check("each input solved twice in a row and again at the end, in reverse order"),
    );
    report.push(pair.check("theta with theta + eps * noise, eps in {-1, 0.3, 2}"));
    report.push(nonfinite.check("argmax and both sides of argmax_pair, first and last entry"));

    // Wrong shapes.
    let mut wrong = Row::new("wrong shape refused with an error");
    for shape in plan.rejected.iter().take(3) {
        let t = ArrayD::<f64>::zeros(ndarray::IxDyn(shape));
        match guarded(|| s.argmax(t.view(), &mut Vec::new())) {
            Ok(()) => {
                wrong.fail(|| format!("argmax accepted shape {shape:?}, which check_shape refuses"))
            }
            Err(f) if f.is_panic() => wrong.fail(|| format!("shape {shape:?}: argmax {f}")),
            Err(_) => wrong.ok(),
        }
    }
    if plan.rejected.is_empty() {
        report.push(Check::skipped(
            "wrong shape refused with an error",
            "check_shape accepts every probed shape (ranks 0 to 4)",
        ));
    } else {
        report.push(wrong.check("shapes that check_shape refuses"));
    }
    report
}
