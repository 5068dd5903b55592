//! Checks of a [`Loss`] on a structure, against brute force over the structure's solutions.
//!
//! * A loss with a linear form (`linear_form` returns `Some(c)`): `value(t, y) = c + <L, phi(y)>`
//!   on every solution `y`, for several targets (the estimator then uses the structure's own
//!   argmax on `theta + eps L`, which the conformance checks cover).
//! * A loss without one: the structure's `argmax_loss_augmented` maximises
//!   `<theta, phi(y)> + eps * loss(t, y)` (brute force over the solutions) for `eps` in
//!   `{±0.1, ±1, ±10}`, returns a feasible solution and is deterministic.
//!
//! Targets: the truth is a random feasible solution; weights are random, of length
//! `prod(shape)`, or `shape[0]` if the loss refuses that, or none; or whatever
//! [`KitOptions::target`] builds.

use crate::conformance::Row;
use crate::options::KitOptions;
use crate::plan::{plan, Plan};
use crate::report::{Check, Report};
use crate::util::{fmt_values, guarded, instance, random_theta, score_of, Failure, Kind};
use dlm_core::error::Result;
use dlm_core::loss::{Loss, Target};
use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::{ArrayD, IxDyn};

/// Row names of [`check_loss`].
pub const LOSS_ROWS: [&str; 4] = [
    "loss: accepts the targets, finite on every solution",
    "loss: value = c + <L, phi(y)> on every solution",
    "loss-augmented argmax: optimal by brute force (eps +-0.1, +-1, +-10)",
    "loss-augmented argmax: feasible and deterministic",
];

fn target_with(truth: &[usize], weights: usize, rng: &mut DlmRng) -> Target {
    Target {
        truth: truth.to_vec(),
        weights: (0..weights).map(|_| 0.25 + open01(rng)).collect(),
    }
}

/// Whether `loss` accepts `target` on `shape` (its value at the truth; a `linear_form` error
/// is reported by the linear-form row instead).
fn accepts(loss: &dyn Loss, target: &Target, shape: &[usize]) -> std::result::Result<(), Failure> {
    guarded(|| loss.value(target, shape, &target.truth)).map(|_| ())
}

/// `count` targets for `shape`, with truths drawn from `solutions`.
pub(crate) fn make_targets(
    loss: &dyn Loss,
    shape: &[usize],
    solutions: &[Vec<usize>],
    count: usize,
    rng: &mut DlmRng,
    opts: &KitOptions,
) -> std::result::Result<Vec<Target>, String> {
    let pick = |rng: &mut DlmRng| {
        let k = ((open01(rng) * solutions.len() as f64) as usize).min(solutions.len() - 1);
        solutions[k].clone()
    };
    if let Some(f) = &opts.target {
        let mut out = Vec::new();
        for _ in 0..count {
            let truth = pick(rng);
            let t = guarded(|| Ok(f(shape, &truth, rng)))
                .map_err(|e| format!("the target builder failed: {e}"))?;
            accepts(loss, &t, shape).map_err(|e| {
                format!("loss refuses the built target {t:?} on shape {shape:?}: {e}")
            })?;
            out.push(t);
        }
        return Ok(out);
    }
    let m: usize = shape.iter().product();
    let mut lengths = vec![m];
    for l in [shape.first().copied().unwrap_or(0), 0] {
        if !lengths.contains(&l) {
            lengths.push(l);
        }
    }
    let mut why = Vec::new();
    for &len in &lengths {
        let truth = pick(rng);
        let t = target_with(&truth, len, rng);
        match accepts(loss, &t, shape) {
            Ok(()) => {
                let mut out = vec![t];
                for _ in 1..count {
                    let truth = pick(rng);
                    out.push(target_with(&truth, len, rng));
                }
                return Ok(out);
            }
            Err(e) => why.push(format!("{len} weights: {e}")),
        }
    }
    Err(format!(
        "loss '{}' refuses every default target on shape {shape:?} ({}); give \
         KitOptions::target",
        loss.name(),
        why.join("; ")
    ))
}

fn describe_target(t: &Target) -> String {
    if t.weights.is_empty() {
        format!("truth {:?}", t.truth)
    } else {
        format!("truth {:?}, weights {}", t.truth, fmt_values(&t.weights))
    }
}

/// Runs the loss checks of `loss` on `s` (see the [module docs](self)).
///
/// Errors only for invalid `opts`; what the loss or the structure does wrong is a failing row.
pub fn check_loss(s: &dyn StructuredArgmax, loss: &dyn Loss, opts: &KitOptions) -> Result<Report> {
    opts.validate()?;
    let plan = plan(s, opts);
    Ok(check_loss_planned(s, loss, &plan, opts))
}

pub(crate) fn check_loss_planned(
    s: &dyn StructuredArgmax,
    loss: &dyn Loss,
    plan: &Plan,
    opts: &KitOptions,
) -> Report {
    let mut report = Report::new();
    if plan.cases.is_empty() {
        for name in LOSS_ROWS {
            report.push(Check::skipped(
                name,
                "no usable shape (see the conformance row 'shapes')",
            ));
        }
        return report;
    }
    let mut accept = Row::new(LOSS_ROWS[0]);
    let mut linear_entries: Vec<(f64, f64, String)> = Vec::new();
    let mut linear_bad = Row::new(LOSS_ROWS[1]);
    let mut optimal = Row::new(LOSS_ROWS[2]);
    let mut feasible = Row::new(LOSS_ROWS[3]);
    let mut with_linear = 0usize;
    let mut without_linear = 0usize;
    let mut truth_note = String::new();
    for (case, sc) in plan.cases.iter().enumerate() {
        let shape = &sc.shape;
        let sols = &sc.solutions;
        if !sols.enumerated {
            truth_note = format!(" ({})", sols.source());
        }
        let mut rng = rng_for(opts.seed, Stream::Other, &[0x1055, case as u64]);
        let targets = match make_targets(loss, shape, &sols.list, 3, &mut rng, opts) {
            Ok(t) => t,
            Err(why) => {
                accept.fail(|| why);
                continue;
            }
        };
        for target in &targets {
            let tdesc = || format!("shape {shape:?}, {}", describe_target(target));
            // Values on every solution.
            let mut values = Vec::with_capacity(sols.list.len());
            let mut ok = true;
            for y in &sols.list {
                match guarded(|| loss.value(target, shape, y)) {
                    Ok(v) if v.is_finite() => values.push(v),
                    Ok(v) => {
                        ok = false;
                        accept.fail(|| format!("{}: value at {y:?} is {v}", tdesc()));
                        break;
                    }
                    Err(f) => {
                        ok = false;
                        accept.fail(|| format!("{}: value at {y:?}: {f}", tdesc()));
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
            accept.ok();
            let mut lin = ArrayD::<f64>::zeros(IxDyn(shape));
            match guarded(|| loss.linear_form(target, lin.view_mut())) {
                Err(f) => linear_bad.fail(|| format!("{}: linear_form: {f}", tdesc())),
                Ok(Some(c)) => {
                    with_linear += 1;
                    let l = lin.as_slice().expect("fresh");
                    if !(c.is_finite() && l.iter().all(|v| v.is_finite())) {
                        linear_bad.fail(|| {
                            format!(
                                "{}: non-finite linear form c = {c}, L = {}",
                                tdesc(),
                                fmt_values(l)
                            )
                        });
                        continue;
                    }
                    linear_bad.ok();
                    for (y, &v) in sols.list.iter().zip(&values) {
                        let lv = c + score_of(l, y);
                        linear_entries.push((
                            (v - lv).abs(),
                            1e-9 * (1.0 + v.abs() + lv.abs()),
                            format!(
                                "{}: at {y:?} value {v} but c + <L, phi> = {lv} (c = {c}, L = {})",
                                tdesc(),
                                fmt_values(l)
                            ),
                        ));
                    }
                }
                Ok(None) => {
                    without_linear += 1;
                    let theta = random_theta(shape, &mut rng, Kind::Continuous);
                    let t = theta.as_slice().expect("fresh");
                    for eps in [-10.0, -1.0, -0.1, 0.1, 1.0, 10.0] {
                        let label = || {
                            format!(
                                "{}, {}, eps {eps} (seed {})",
                                instance(&theta),
                                describe_target(target),
                                opts.seed
                            )
                        };
                        let call = || {
                            let mut out = Vec::new();
                            guarded(|| {
                                s.argmax_loss_augmented(theta.view(), loss, target, eps, &mut out)
                            })
                            .map(|_| out)
                        };
                        let y = match call() {
                            Ok(y) => y,
                            Err(f) => {
                                optimal.fail(|| format!("{}: {f}", label()));
                                feasible.fail(|| format!("{}: {f}", label()));
                                continue;
                            }
                        };
                        // Feasible: one of the solutions (its objective needs its loss).
                        let Some(k) = sols
                            .list
                            .iter()
                            .position(|s| crate::util::sorted(s) == crate::util::sorted(&y))
                        else {
                            let known = sols.source();
                            feasible.fail(|| {
                                format!("{}: returned {y:?}, not among the {known}", label())
                            });
                            optimal.fail(|| format!("{}: returned the infeasible {y:?}", label()));
                            continue;
                        };
                        let again = call();
                        feasible.record(again.as_ref().ok() == Some(&y), || {
                            format!("{}: returned {y:?} then {again:?}", label())
                        });
                        let obj = |j: usize| score_of(t, &sols.list[j]) + eps * values[j];
                        let (mut best, mut at) = (f64::NEG_INFINITY, 0);
                        for j in 0..sols.list.len() {
                            if obj(j) > best {
                                best = obj(j);
                                at = j;
                            }
                        }
                        let scale: f64 = t.iter().map(|v| v.abs()).sum::<f64>()
                            + eps.abs() * values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                        let got = obj(k);
                        optimal.record(got >= best - 1e-9 * scale.max(1.0), || {
                            format!(
                                "{}: returned {y:?} with <theta, phi> + eps*loss = {got} but {:?} \
                                 has {best}{truth_note}",
                                label(),
                                sols.list[at]
                            )
                        });
                    }
                }
            }
        }
    }
    report.push(accept.check(&format!("targets on shapes {}", plan.describe())));
    let bad = linear_bad.check("");
    if bad.failed() {
        report.push(bad);
    } else if with_linear > 0 {
        let mut c = Check::worst(LOSS_ROWS[1], linear_entries.len(), &linear_entries);
        if c.pass() {
            c.detail = format!(
                "{} (target, solution) pairs{truth_note}; worst: {}",
                linear_entries.len(),
                c.detail
            );
        }
        report.push(c);
    } else {
        report.push(Check::skipped(
            LOSS_ROWS[1],
            format!("loss '{}' has no linear form", loss.name()),
        ));
    }
    if without_linear > 0 {
        report.push(optimal.check(&format!("six eps per target{truth_note}")));
        report.push(feasible.check("each call repeated"));
    } else {
        let reason = if with_linear > 0 {
            format!(
                "loss '{}' has a linear form: the loss-augmented argmax is the structure's argmax \
                 on theta + eps*L (covered by the conformance rows)",
                loss.name()
            )
        } else {
            "no target reached the loss-augmented check".to_string()
        };
        report.push(Check::skipped(LOSS_ROWS[2], reason.clone()));
        report.push(Check::skipped(LOSS_ROWS[3], reason));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::structure::checked_slice;
    use dlm_core::DlmError;
    use ndarray::{ArrayViewD, ArrayViewMutD};

    /// Two of `[m]` items (brute force); `argmax_loss_augmented` is right, or flips `eps`.
    struct Pairs {
        flip: bool,
    }

    fn pairs(m: usize) -> Vec<Vec<usize>> {
        (0..m)
            .flat_map(|a| (a + 1..m).map(move |b| vec![a, b]))
            .collect()
    }

    fn best(list: &[Vec<usize>], mut f: impl FnMut(&[usize]) -> f64) -> Vec<usize> {
        let mut b = (f64::NEG_INFINITY, &list[0]);
        for y in list {
            let v = f(y);
            if v > b.0 {
                b = (v, y);
            }
        }
        b.1.clone()
    }

    impl StructuredArgmax for Pairs {
        fn name(&self) -> &str {
            "pairs"
        }
        fn check_shape(&self, shape: &[usize]) -> Result<()> {
            match shape {
                [m] if *m >= 2 => Ok(()),
                _ => Err(DlmError::shape("pairs", "[m], m >= 2", shape)),
            }
        }
        fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
            let t = checked_slice(self, &theta)?;
            *out = best(&pairs(t.len()), |y| score_of(t, y));
            Ok(())
        }
        fn argmax_loss_augmented(
            &self,
            theta: ArrayViewD<'_, f64>,
            loss: &dyn Loss,
            target: &Target,
            eps: f64,
            out: &mut Vec<usize>,
        ) -> Result<()> {
            let t = checked_slice(self, &theta)?;
            let e = if self.flip { -eps } else { eps };
            let list = pairs(t.len());
            let mut err = None;
            *out = best(&list, |y| {
                let l = loss.value(target, &[t.len()], y).unwrap_or_else(|e| {
                    err = Some(e.to_string());
                    0.0
                });
                score_of(t, y) + e * l
            });
            match err {
                Some(e) => Err(DlmError::invalid("loss", e)),
                None => Ok(()),
            }
        }
        fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
            self.check_shape(shape)?;
            Ok(Some(pairs(shape[0])))
        }
    }

    /// 0/1 loss on the chosen set: not linear in the indicator.
    struct SetMiss;

    impl Loss for SetMiss {
        fn name(&self) -> &str {
            "set-miss"
        }
        fn value(&self, target: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
            Ok(
                if crate::util::sorted(active) == crate::util::sorted(&target.truth) {
                    0.0
                } else {
                    1.0
                },
            )
        }
    }

    /// Items chosen outside the truth, with a wrong constant in its linear form.
    struct WrongConstant;

    impl Loss for WrongConstant {
        fn name(&self) -> &str {
            "wrong-constant"
        }
        fn value(&self, target: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
            Ok(active.iter().filter(|i| !target.truth.contains(i)).count() as f64)
        }
        fn linear_form(
            &self,
            target: &Target,
            mut out: ArrayViewMutD<'_, f64>,
        ) -> Result<Option<f64>> {
            out.fill(1.0);
            for &i in &target.truth {
                out.as_slice_mut().unwrap()[i] = 0.0;
            }
            Ok(Some(0.5)) // should be 0
        }
    }

    #[test]
    fn a_correct_loss_augmented_argmax_passes() {
        let r = check_loss(&Pairs { flip: false }, &SetMiss, &KitOptions::default()).unwrap();
        r.assert_pass();
        assert!(r.get(LOSS_ROWS[2]).unwrap().pass(), "{r}");
        assert!(r.get(LOSS_ROWS[1]).unwrap().is_skipped(), "{r}");
    }

    #[test]
    fn a_wrong_loss_augmented_argmax_fails_and_names_the_instance() {
        let r = check_loss(&Pairs { flip: true }, &SetMiss, &KitOptions::default()).unwrap();
        let row = r.get(LOSS_ROWS[2]).unwrap();
        assert!(row.failed(), "{r}");
        assert!(
            row.detail.contains("shape [") && row.detail.contains("eps"),
            "{row:?}"
        );
        // Feasible and deterministic all the same.
        assert!(r.get(LOSS_ROWS[3]).unwrap().pass(), "{r}");
    }

    #[test]
    fn a_structure_without_loss_augmented_argmax_fails_for_a_nonlinear_loss() {
        struct Plain;
        impl StructuredArgmax for Plain {
            fn name(&self) -> &str {
                "plain"
            }
            fn check_shape(&self, shape: &[usize]) -> Result<()> {
                Pairs { flip: false }.check_shape(shape)
            }
            fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
                Pairs { flip: false }.argmax(theta, out)
            }
            fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
                Pairs { flip: false }.enumerate(shape)
            }
        }
        let r = check_loss(&Plain, &SetMiss, &KitOptions::default()).unwrap();
        let row = r.get(LOSS_ROWS[2]).unwrap();
        assert!(row.failed() && row.detail.contains("not linear"), "{r}");
    }

    /// Needs `m + 1` weights (one per item and a constant), which no default target has.
    struct Special;

    impl Loss for Special {
        fn name(&self) -> &str {
            "special"
        }
        fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
            let w = &target.weights;
            if w.len() != shape[0] + 1 {
                return Err(DlmError::invalid("special", "needs m + 1 weights"));
            }
            Ok(w[shape[0]] + active.iter().map(|&i| w[i]).sum::<f64>())
        }
        fn linear_form(
            &self,
            target: &Target,
            mut out: ArrayViewMutD<'_, f64>,
        ) -> Result<Option<f64>> {
            let m = out.len();
            out.as_slice_mut()
                .unwrap()
                .copy_from_slice(&target.weights[..m]);
            Ok(Some(target.weights[m]))
        }
    }

    #[test]
    fn a_target_builder_serves_losses_with_special_weights() {
        let s = Pairs { flip: false };
        let r = check_loss(&s, &Special, &KitOptions::default()).unwrap();
        let row = r.get(LOSS_ROWS[0]).unwrap();
        assert!(
            row.failed() && row.detail.contains("give KitOptions::target"),
            "{r}"
        );
        let opts = KitOptions::default().with_target(|shape, truth, rng| Target {
            truth: truth.to_vec(),
            weights: (0..=shape[0]).map(|_| open01(rng)).collect(),
        });
        check_loss(&s, &Special, &opts).unwrap().assert_pass();
    }

    #[test]
    fn a_wrong_linear_form_fails() {
        let r = check_loss(
            &Pairs { flip: false },
            &WrongConstant,
            &KitOptions::default(),
        )
        .unwrap();
        let row = r.get(LOSS_ROWS[1]).unwrap();
        assert!(row.failed(), "{r}");
        assert!(row.detail.contains("c = 0.5"), "{row:?}");
    }
}
