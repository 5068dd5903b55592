//! A generic supervised task: any structure, trained on examples from a `.npz` file.
//!
//! # The data file
//! A `.npz` archive (NumPy's `np.savez` or `np.savez_compressed`) with these arrays (`N`
//! examples; any other array name is refused, so a typo is not silently ignored):
//!
//! | array | dtype | shape | meaning |
//! |---|---|---|---|
//! | `x` | float64 or float32 | `[N, ...]` | features, the input of `mu` and `sigma` |
//! | `truth` | int64 or int32 | `[N, K]` (or `[N]`, read as `[N, 1]`) | the true structure's active set (flat row-major indices into the potentials) in the structure's canonical order; rows of varying length end in `-1` padding |
//! | `shape` | int64 or int32 | `[D]` | the structure's potentials shape (required with `truth`) |
//! | `phi` | float64 or float32 | `[N, ...shape]` | alternatively to `truth`: the 0/1 indicator of the true structure |
//! | `weights` | float64 or float32 | `[N, W]` (or `[N]`) | optional [`Target::weights`] of each example (e.g. per-part loss weights) |
//! | `x_test`, `truth_test` / `phi_test`, `weights_test` | as above | | optional test split; without it a seeded `test_fraction` of the examples is held out |
//!
//! With `phi` the active set is the nonzero flat indices in **ascending** order: the
//! canonical order only of structures whose argmax returns ascending indices (top-k, argmax,
//! grid-path), not of a matching (row order is ascending there too, but a loss that reads the
//! order of `truth` beyond set membership must get `truth`). Exact match compares sets, so it
//! does not depend on the order.
//!
//! Every array is checked before use, with errors naming the array and the problem: missing
//! arrays, wrong dtypes or ranks, mismatched example counts, truth indices outside the shape,
//! non-0/1 indicators, NaN or infinite values, empty data. The sizes an array's header
//! declares are compared with the bytes actually present before anything is allocated.
//!
//! # Training
//! `mu` maps `x` `[B, ...]` to the potentials (`[B, prod(shape)]` or `[B, ...shape]`), the
//! [`IdentityMap`] reshapes them to `[B, ...shape]`; `sigma` maps `x` to one noise scale per
//! example. Each epoch shuffles the training split (seeded) and takes minibatches of
//! `batch` examples (the last one smaller when `batch` does not divide the split) through the
//! shared [`PerturbedModel::train_step`]. The monitored training loss is the mean task loss of
//! the noiseless predictions. Evaluation reports, on a split, the mean task loss of the
//! noiseless predictions and the exact-match rate (prediction's active set equals the truth as
//! a set).

use crate::model::{IdentityMap, NoiseScale, PerturbedModel, PotentialMap, StepInput};
use crate::sort::check_first_step;
use crate::trainer::{resume_point, EpochCursor, EpochProgress, StepTotals, Task};
use dlm_core::error::{ensure_finite, DlmError, Result};
use dlm_core::estimator::{DlmEstimator, NoiseKey};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::{rng_for, shuffle, Stream};
use dlm_core::structure::StructuredArgmax;
use dlm_core::Scorer;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use ndarray_npy::ReadNpyExt;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// Largest potentials array per example (`prod(shape)`) a data file may declare.
pub const MAX_POTENTIALS: usize = 1 << 24;

/// Largest single array (bytes, after decompression) read from a data file.
pub const MAX_ARRAY_BYTES: u64 = 1 << 34;

/// The array names a data file may hold.
pub const ARRAY_NAMES: [&str; 9] = [
    "x",
    "truth",
    "shape",
    "phi",
    "weights",
    "x_test",
    "truth_test",
    "phi_test",
    "weights_test",
];

/// The default held-out fraction when a file has no `x_test`.
pub const DEFAULT_TEST_FRACTION: f64 = 0.2;

/// Counter that keys the split's shuffle, apart from the per-epoch shuffles.
const SPLIT_COUNTER: u64 = 0x5350_4c49_5400_0000; // "SPLIT"

/// How the test split is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TestSplit {
    /// The file's `x_test` arrays when it has them, else this fraction held out (by a seeded
    /// shuffle). `Auto(DEFAULT_TEST_FRACTION)` is the default.
    Auto(f64),
    /// This fraction held out; a file with `x_test` is refused, since the fraction would not
    /// be used.
    Fraction(f64),
}

impl Default for TestSplit {
    fn default() -> Self {
        TestSplit::Auto(DEFAULT_TEST_FRACTION)
    }
}

/// How a file gave its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `truth` index rows plus `shape`.
    Truth,
    /// `phi` indicator arrays (active sets in ascending order).
    Phi,
}

impl TargetForm {
    /// `truth` or `phi`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetForm::Truth => "truth",
            TargetForm::Phi => "phi",
        }
    }
}

/// Where the test split came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitSource {
    /// The file's `x_test` arrays.
    Arrays,
    /// A seeded fraction of the examples, held out.
    Fraction(f64),
}

/// The examples of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Examples {
    /// Features `[N, ...]`, standard layout.
    pub x: ArrayD<f64>,
    /// One target per example (`truth` without padding; `weights` when the file has them).
    pub targets: Vec<Target>,
}

impl Examples {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The examples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Examples {
        Examples {
            x: self.x.select(Axis(0), idx),
            targets: idx.iter().map(|&i| self.targets[i].clone()).collect(),
        }
    }
}

/// A data file, validated and split into training and test examples.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredData {
    /// The file (for messages and model headers).
    pub source: PathBuf,
    /// The structure's potentials shape.
    pub shape: Vec<usize>,
    /// The feature shape of one example (`x.shape()[1..]`).
    pub features: Vec<usize>,
    /// How the targets were given.
    pub form: TargetForm,
    /// Where the test split came from.
    pub split: SplitSource,
    /// Training examples.
    pub train: Examples,
    /// Test examples.
    pub test: Examples,
}

impl StructuredData {
    /// Reads and validates the `.npz` file at `path`; `split` and `seed` say how the test
    /// split is made (see [`TestSplit`]).
    pub fn load(path: &Path, split: TestSplit, seed: u64) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| DlmError::io("reading", path, e))?;
        Self::from_reader(std::io::BufReader::new(file), path, split, seed)
    }

    /// [`load`](StructuredData::load) from any reader of `.npz` bytes; `source` names it in
    /// messages.
    pub fn from_reader<R: Read + Seek>(
        reader: R,
        source: &Path,
        split: TestSplit,
        seed: u64,
    ) -> Result<Self> {
        let mut ar = Archive::open(reader, source)?;
        let x = ar
            .features("x")?
            .ok_or_else(|| ar.missing("x", "the features [N, ...]"))?;
        let n = x.shape()[0];
        let truth = ar.ints("truth")?;
        let phi = ar.floats("phi")?;
        let shape_arr = ar.ints("shape")?;
        let (form, shape) =
            match (&truth, &phi) {
                (Some(_), Some(_)) => {
                    return Err(ar.bad(
                        "'truth' and 'phi'",
                        "give the targets once: either truth (with shape) or phi",
                    ))
                }
                (None, None) => return Err(ar.missing(
                    "truth",
                    "the targets: truth [N, K] (active sets) with shape [D], or phi [N, ...shape]",
                )),
                (Some(_), None) => {
                    let s = shape_arr.as_ref().ok_or_else(|| {
                        ar.missing(
                            "shape",
                            "the structure's potentials shape [D], needed with truth",
                        )
                    })?;
                    (TargetForm::Truth, ar.potentials_shape(s)?)
                }
                (None, Some(p)) => {
                    let s = phi_shape(&ar, "phi", p)?;
                    if let Some(given) = &shape_arr {
                        let given = ar.potentials_shape(given)?;
                        if given != s {
                            return Err(ar.bad(
                                "'shape'",
                                format!("{given:?} differs from phi's per-example shape {s:?}"),
                            ));
                        }
                    }
                    (TargetForm::Phi, s)
                }
            };
        let weights = ar.weights("weights")?;
        let targets = ar.targets(form, n, &shape, truth, phi, weights, "")?;
        let all = Examples { x, targets };

        let x_test = ar.features("x_test")?;
        let (train, test, split) = match x_test {
            Some(xt) => {
                if let TestSplit::Fraction(_) = split {
                    return Err(DlmError::invalid(
                        "test_fraction",
                        format!(
                            "{} has its own test split (x_test), so a held-out fraction does not apply; remove it",
                            source.display()
                        ),
                    ));
                }
                if xt.shape()[1..] != all.x.shape()[1..] {
                    return Err(ar.bad(
                        "'x_test'",
                        format!(
                            "examples of shape {:?}, but x has {:?}",
                            &xt.shape()[1..],
                            &all.x.shape()[1..]
                        ),
                    ));
                }
                let nt = xt.shape()[0];
                let (tt, pt) = match form {
                    TargetForm::Truth => (ar.ints("truth_test")?, None),
                    TargetForm::Phi => (None, ar.floats("phi_test")?),
                };
                let other = match form {
                    TargetForm::Truth => "phi_test",
                    TargetForm::Phi => "truth_test",
                };
                if ar.has(other) {
                    return Err(ar.bad(
                        &format!("'{other}'"),
                        format!(
                            "the training targets are given as {}, so the test targets must be {}_test",
                            form.as_str(),
                            form.as_str()
                        ),
                    ));
                }
                if tt.is_none() && pt.is_none() {
                    return Err(
                        ar.missing(&format!("{}_test", form.as_str()), "the targets of x_test")
                    );
                }
                if let Some(p) = &pt {
                    let s = phi_shape(&ar, "phi_test", p)?;
                    if s != shape {
                        return Err(ar.bad(
                            "'phi_test'",
                            format!("per-example shape {s:?}, but phi has {shape:?}"),
                        ));
                    }
                }
                let wt = ar.weights("weights_test")?;
                match (all.targets[0].weights.is_empty(), wt.is_some()) {
                    (false, false) => {
                        return Err(
                            ar.missing("weights_test", "the weights of x_test (x has weights)")
                        )
                    }
                    (true, true) => return Err(ar.bad(
                        "'weights_test'",
                        "the file has no 'weights' for the training examples; give both or neither",
                    )),
                    _ => {}
                }
                let targets = ar.targets(form, nt, &shape, tt, pt, wt, "_test")?;
                (all, Examples { x: xt, targets }, SplitSource::Arrays)
            }
            None => {
                for t in ["truth_test", "phi_test", "weights_test"] {
                    if ar.has(t) {
                        return Err(ar.bad(
                            &format!("'{t}'"),
                            "test targets without the test features x_test; add x_test or remove it",
                        ));
                    }
                }
                let (TestSplit::Auto(f) | TestSplit::Fraction(f)) = split;
                let (train, test) = split_fraction(&all, f, seed, source)?;
                (train, test, SplitSource::Fraction(f))
            }
        };
        Ok(StructuredData {
            source: source.to_path_buf(),
            features: train.x.shape()[1..].to_vec(),
            shape,
            form,
            split,
            train,
            test,
        })
    }
}

/// Holds out `round(N * fraction)` examples chosen by a seeded shuffle; both parts keep the
/// file's order.
fn split_fraction(
    all: &Examples,
    fraction: f64,
    seed: u64,
    source: &Path,
) -> Result<(Examples, Examples)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DlmError::invalid(
            "test_fraction",
            format!("{fraction} is not in the open interval (0, 1); use e.g. 0.2"),
        ));
    }
    let n = all.len();
    let n_test = (n as f64 * fraction).round() as usize;
    if n_test == 0 || n_test >= n {
        return Err(DlmError::invalid(
            "test_fraction",
            format!(
                "{fraction} of the {n} examples of {} leaves the {} split empty; choose a \
                 fraction that gives both at least one example, or add x_test to the file",
                source.display(),
                if n_test == 0 { "test" } else { "training" }
            ),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(
        &mut rng_for(seed, Stream::Shuffle, &[SPLIT_COUNTER]),
        &mut order,
    );
    let (mut test, mut train) = (order[..n_test].to_vec(), order[n_test..].to_vec());
    test.sort_unstable();
    train.sort_unstable();
    Ok((all.select(&train), all.select(&test)))
}

/// The per-example shape of an indicator array `[N, ...shape]`.
fn phi_shape<R: Read + Seek>(ar: &Archive<R>, name: &str, phi: &ArrayD<f64>) -> Result<Vec<usize>> {
    let s = phi.shape()[1..].to_vec();
    if s.is_empty() || s.contains(&0) {
        return Err(ar.bad(
            &format!("'{name}'"),
            format!(
                "shape {:?}: need [N, ...shape] with a non-empty shape of positive sizes",
                phi.shape()
            ),
        ));
    }
    let total = s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if total.is_none_or(|t| t > MAX_POTENTIALS) {
        return Err(ar.bad(
            &format!("'{name}'"),
            format!("per-example shape {s:?} has more than {MAX_POTENTIALS} entries"),
        ));
    }
    Ok(s)
}

/// An open `.npz` archive with its array names (also the reader of
/// [`shortest_path`](crate::shortest_path)'s data files).
pub(crate) struct Archive<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    /// Array name (without `.npy`) -> entry name in the archive.
    names: Vec<(String, String)>,
    source: PathBuf,
}

/// A malformed-data error about `what` in the file `source`.
fn bad_in(source: &Path, what: &str, message: impl Into<String>) -> DlmError {
    DlmError::format(format!(".npz data file ({what})"), source, message.into())
}

/// One array's raw `.npy` bytes and its dtype.
struct RawArray {
    dtype: String,
    bytes: Vec<u8>,
}

impl<R: Read + Seek> Archive<R> {
    fn open(reader: R, source: &Path) -> Result<Self> {
        Self::open_with_names(reader, source, &ARRAY_NAMES)
    }

    /// Opens an archive whose array names must all be among `accepted`.
    pub(crate) fn open_with_names(reader: R, source: &Path, accepted: &[&str]) -> Result<Self> {
        let zip = zip::ZipArchive::new(reader).map_err(|e| {
            DlmError::format(
                ".npz data file",
                source,
                format!("not a readable .npz (zip) archive: {e}; write it with numpy.savez"),
            )
        })?;
        let names: Vec<(String, String)> = zip
            .file_names()
            .map(|f| {
                (
                    f.strip_suffix(".npy").unwrap_or(f).to_string(),
                    f.to_string(),
                )
            })
            .collect();
        let ar = Archive {
            zip,
            names,
            source: source.to_path_buf(),
        };
        if let Some((n, _)) = ar
            .names
            .iter()
            .find(|(n, _)| !accepted.contains(&n.as_str()))
        {
            return Err(ar.bad(
                &format!("array '{n}'"),
                format!(
                    "is not a known array name; accepted: {}",
                    accepted.join(", ")
                ),
            ));
        }
        Ok(ar)
    }

    pub(crate) fn bad(&self, what: &str, message: impl Into<String>) -> DlmError {
        bad_in(&self.source, what, message)
    }

    pub(crate) fn missing(&self, name: &str, what: &str) -> DlmError {
        let present: Vec<&str> = self.names.iter().map(|(n, _)| n.as_str()).collect();
        self.bad(
            &format!("array '{name}'"),
            format!(
                "missing: the file needs '{name}', {what} (arrays present: {})",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        )
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|(n, _)| n == name)
    }

    /// The raw bytes of array `name`, if present: read through a bounded reader (so memory
    /// grows only with the data actually present), header parsed, and the data size the header
    /// declares compared with the bytes that follow it.
    fn raw(&mut self, name: &str) -> Result<Option<RawArray>> {
        let Some(entry_name) = self
            .names
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
        else {
            return Ok(None);
        };
        let what = format!("array '{name}'");
        let source = self.source.clone();
        let mut entry = self
            .zip
            .by_name(&entry_name)
            .map_err(|e| bad_in(&source, &what, format!("unreadable archive entry: {e}")))?;
        if entry.size() > MAX_ARRAY_BYTES {
            return Err(bad_in(
                &source,
                &what,
                format!(
                    "{} bytes, more than the {MAX_ARRAY_BYTES} this reader accepts",
                    entry.size()
                ),
            ));
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_ARRAY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad_in(&source, &what, format!("unreadable: {e}")))?;
        drop(entry);
        let (dtype, shape, header_len) = self.header(&what, &bytes)?;
        let elem = match dtype.get(1..) {
            Some("f8" | "i8") => 8,
            Some("f4" | "i4") => 4,
            _ => {
                return Err(self.bad(
                    &what,
                    format!("dtype '{dtype}' is not one of float64, float32, int64, int32"),
                ))
            }
        };
        let data = bytes.len() - header_len;
        let declared = shape
            .iter()
            .try_fold(elem, |a: usize, &d| a.checked_mul(d))
            .filter(|&b| b <= isize::MAX as usize);
        if declared != Some(data) {
            return Err(self.bad(
                &what,
                format!(
                    "the header declares shape {shape:?} of '{dtype}' ({}), but {data} bytes of data follow it",
                    declared.map_or_else(|| "an impossible size".to_string(), |b| format!("{b} bytes"))
                ),
            ));
        }
        Ok(Some(RawArray { dtype, bytes }))
    }

    /// `(dtype, shape, header length)` of an `.npy` byte string, its lengths checked against
    /// the bytes present before the header parser allocates anything.
    fn header(&self, what: &str, bytes: &[u8]) -> Result<(String, Vec<usize>, usize)> {
        let bad = |m: &str| self.bad(what, format!("not a valid .npy array: {m}"));
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("no .npy magic string"));
        }
        let (len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(bad(&format!("unsupported format version {v}"))),
        };
        if start + len > bytes.len() {
            return Err(bad("truncated header"));
        }
        let mut rest = bytes;
        let header = ndarray_npy::npy::header::Header::from_reader(&mut rest)
            .map_err(|e| bad(&e.to_string()))?;
        let dtype = header
            .type_descriptor
            .as_string()
            .cloned()
            .unwrap_or_else(|| header.type_descriptor.to_string());
        Ok((dtype, header.shape, bytes.len() - rest.len()))
    }

    fn decode<T: ndarray_npy::ReadableElement + Clone>(
        &self,
        what: &str,
        raw: &RawArray,
    ) -> Result<ArrayD<T>> {
        let a = ArrayD::<T>::read_npy(raw.bytes.as_slice())
            .map_err(|e| self.bad(what, format!("unreadable: {e}")))?;
        Ok(if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        })
    }

    /// A float64/float32 array, as f64, every value finite.
    pub(crate) fn floats(&mut self, name: &str) -> Result<Option<ArrayD<f64>>> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        let what = format!("array '{name}'");
        let a = match raw.dtype.get(1..) {
            Some("f8") => self.decode::<f64>(&what, &raw)?,
            Some("f4") => self.decode::<f32>(&what, &raw)?.mapv(f64::from),
            _ => {
                return Err(self.bad(
                    &what,
                    format!("dtype '{}'; expected float64 or float32", raw.dtype),
                ))
            }
        };
        ensure_finite(
            &format!("array '{name}' of {}", self.source.display()),
            a.as_slice().expect("standard layout"),
        )?;
        Ok(Some(a))
    }

    /// An int64/int32 array, as i64.
    fn ints(&mut self, name: &str) -> Result<Option<ArrayD<i64>>> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        let what = format!("array '{name}'");
        match raw.dtype.get(1..) {
            Some("i8") => self.decode::<i64>(&what, &raw).map(Some),
            Some("i4") => Ok(Some(self.decode::<i32>(&what, &raw)?.mapv(i64::from))),
            _ => Err(self.bad(
                &what,
                format!("dtype '{}'; expected int64 or int32", raw.dtype),
            )),
        }
    }

    /// Features `[N, ...]` with `N >= 1` and every feature axis non-empty.
    pub(crate) fn features(&mut self, name: &str) -> Result<Option<ArrayD<f64>>> {
        let Some(x) = self.floats(name)? else {
            return Ok(None);
        };
        if x.ndim() < 2 {
            return Err(self.bad(
                &format!("array '{name}'"),
                format!(
                    "shape {:?}: features must be [N, ...] with at least one feature axis (e.g. [N, F])",
                    x.shape()
                ),
            ));
        }
        if x.shape()[0] == 0 {
            return Err(DlmError::Empty {
                what: format!("array '{name}' of {}", self.source.display()),
                hint: "the data file needs at least one example".into(),
            });
        }
        if x.shape()[1..].contains(&0) {
            return Err(self.bad(
                &format!("array '{name}'"),
                format!(
                    "shape {:?}: every feature axis needs at least one entry",
                    x.shape()
                ),
            ));
        }
        Ok(Some(x))
    }

    /// Weights `[N, W]` (or `[N]`, one weight each).
    fn weights(&mut self, name: &str) -> Result<Option<ArrayD<f64>>> {
        let Some(w) = self.floats(name)? else {
            return Ok(None);
        };
        match w.ndim() {
            1 => {
                let n = w.len();
                Ok(Some(
                    w.into_shape_with_order(IxDyn(&[n, 1])).expect("same size"),
                ))
            }
            2 => Ok(Some(w)),
            _ => Err(self.bad(
                &format!("array '{name}'"),
                format!("shape {:?}: weights must be [N, W] or [N]", w.shape()),
            )),
        }
    }

    /// The potentials shape from a `shape` array: 1-d, sizes >= 1, product at most
    /// [`MAX_POTENTIALS`].
    fn potentials_shape(&self, s: &ArrayD<i64>) -> Result<Vec<usize>> {
        let bad = |m: String| self.bad("array 'shape'", m);
        if s.ndim() != 1 || s.is_empty() {
            return Err(bad(format!(
                "shape {:?}: must be a 1-d list of the potentials' sizes, e.g. [4, 4]",
                s.shape()
            )));
        }
        let dims: Vec<usize> = s
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d >= 1))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("{s}: every size must be at least 1")))?;
        let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if total.is_none_or(|t| t > MAX_POTENTIALS) {
            return Err(bad(format!(
                "{dims:?} has more than {MAX_POTENTIALS} potentials per example"
            )));
        }
        Ok(dims)
    }

    /// The targets of `n` examples from the truth rows or indicators, with weights.
    #[allow(clippy::too_many_arguments)]
    fn targets(
        &self,
        form: TargetForm,
        n: usize,
        shape: &[usize],
        truth: Option<ArrayD<i64>>,
        phi: Option<ArrayD<f64>>,
        weights: Option<ArrayD<f64>>,
        suffix: &str,
    ) -> Result<Vec<Target>> {
        let x_name = format!("x{suffix}");
        let count = |name: &str, got: usize| -> Result<()> {
            if got == n {
                Ok(())
            } else {
                Err(self.bad(
                    &format!("array '{name}{suffix}'"),
                    format!("{got} examples, but '{x_name}' has {n}"),
                ))
            }
        };
        let cells: usize = shape.iter().product();
        let truths: Vec<Vec<usize>> = match form {
            TargetForm::Truth => {
                let t = truth.expect("truth present");
                let name = format!("truth{suffix}");
                let t = match t.ndim() {
                    1 => {
                        let len = t.len();
                        t.into_shape_with_order(IxDyn(&[len, 1]))
                            .expect("same size")
                    }
                    2 => t,
                    _ => {
                        return Err(self.bad(
                            &format!("array '{name}'"),
                            format!("shape {:?}: must be [N, K] (or [N])", t.shape()),
                        ))
                    }
                };
                count("truth", t.shape()[0])?;
                t.axis_iter(Axis(0))
                    .enumerate()
                    .map(|(i, row)| {
                        truth_row(
                            &name,
                            i,
                            row.as_slice().expect("standard layout"),
                            shape,
                            cells,
                        )
                    })
                    .collect::<std::result::Result<_, String>>()
                    .map_err(|m| self.bad(&format!("array '{name}'"), m))?
            }
            TargetForm::Phi => {
                let p = phi.expect("phi present");
                let name = format!("phi{suffix}");
                count("phi", p.shape()[0])?;
                let flat = p.as_slice().expect("standard layout");
                if let Some(j) = flat.iter().position(|&v| v != 0.0 && v != 1.0) {
                    return Err(self.bad(
                        &format!("array '{name}'"),
                        format!(
                            "example {}, flat index {}: value {} is not 0 or 1 (phi is a 0/1 indicator)",
                            j / cells,
                            j % cells,
                            flat[j]
                        ),
                    ));
                }
                flat.chunks(cells)
                    .map(|c| (0..cells).filter(|&j| c[j] == 1.0).collect())
                    .collect()
            }
        };
        let weights: Vec<Vec<f64>> = match weights {
            None => vec![Vec::new(); n],
            Some(w) => {
                count("weights", w.shape()[0])?;
                w.axis_iter(Axis(0))
                    .map(|r| r.iter().copied().collect())
                    .collect()
            }
        };
        Ok(truths
            .into_iter()
            .zip(weights)
            .map(|(truth, weights)| Target { truth, weights })
            .collect())
    }
}

/// One row of `truth`: indices in `0..cells`, no repeats, `-1` only as trailing padding.
fn truth_row(
    name: &str,
    i: usize,
    row: &[i64],
    shape: &[usize],
    cells: usize,
) -> std::result::Result<Vec<usize>, String> {
    let len = row.iter().position(|&v| v == -1).unwrap_or(row.len());
    if let Some(j) = row[len..].iter().position(|&v| v != -1) {
        return Err(format!(
            "row {i}: entry {} = {} follows -1 padding (padding must end the row)",
            len + j,
            row[len + j]
        ));
    }
    let mut out = Vec::with_capacity(len);
    for (j, &v) in row[..len].iter().enumerate() {
        let idx = usize::try_from(v)
            .ok()
            .filter(|&v| v < cells)
            .ok_or_else(|| {
                format!(
                    "{name}[{i}][{j}] = {v} is outside the potentials of shape {shape:?} \
                     (flat indices 0..{cells}; -1 pads a short row)"
                )
            })?;
        if out.contains(&idx) {
            return Err(format!(
                "row {i}: index {idx} appears twice (an active set is a set)"
            ));
        }
        out.push(idx);
    }
    Ok(out)
}

/// Whether two active sets hold the same indices (order ignored).
pub fn same_set(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Settings of the structured task.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredSettings {
    /// Examples per minibatch.
    pub batch: usize,
    /// The estimator (epsilon, draws, escape).
    pub estimator: DlmEstimator,
    /// Seed of the shuffles and the noise.
    pub seed: u64,
}

/// Metrics of noiseless prediction on a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StructuredMetrics {
    /// Examples evaluated.
    pub n_examples: usize,
    /// Mean task loss of the noiseless predictions.
    pub mean_loss: f64,
    /// Fraction of examples whose predicted active set equals the truth (as a set).
    pub exact_match: f64,
}

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The training examples.
    Train,
    /// The test examples.
    Test,
}

/// The structured task: data, settings and model.
pub struct StructuredTask {
    settings: StructuredSettings,
    data: StructuredData,
    model: PerturbedModel,
}

impl std::fmt::Debug for StructuredTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StructuredTask")
            .field("settings", &self.settings)
            .field("data", &self.data.source)
            .field("shape", &self.data.shape)
            .field("model", &self.model)
            .finish()
    }
}

impl StructuredTask {
    /// Builds the task; checks the structure against the data's shape and the scorers' shapes.
    pub fn new(
        settings: StructuredSettings,
        data: StructuredData,
        structure: Box<dyn StructuredArgmax>,
        noise: Box<dyn NoiseModel>,
        loss: Box<dyn Loss>,
        mu: Box<dyn Scorer>,
        sigma: NoiseScale,
    ) -> Result<Self> {
        settings.estimator.validate()?;
        if settings.batch == 0 {
            return Err(DlmError::invalid("batch", "must be at least 1"));
        }
        structure.check_shape(&data.shape).map_err(|e| {
            DlmError::invalid(
                "structure",
                format!(
                    "'{}' does not take the potentials shape {:?} of {}: {e}",
                    structure.name(),
                    data.shape,
                    data.source.display()
                ),
            )
        })?;
        let mut input = vec![settings.batch];
        input.extend_from_slice(&data.features);
        let out = mu.output_shape(&input)?;
        let per_example: usize = data.shape.iter().product();
        if out.first() != Some(&settings.batch) || out[1..].iter().product::<usize>() != per_example
        {
            return Err(DlmError::invalid(
                "mu scorer",
                format!(
                    "maps {input:?} to {out:?}, but the potentials of shape {:?} need [B, {per_example}] \
                     (e.g. mlp:sizes={}-{per_example})",
                    data.shape,
                    data.features.iter().product::<usize>()
                ),
            ));
        }
        let mut model = PerturbedModel::new(
            structure,
            noise,
            loss,
            mu,
            sigma,
            settings.estimator.clone(),
        )?;
        model.check_sigma_shape(&input)?;
        // The steps read the noiseless loss only (an estimator without noise gives it).
        model.set_step_predictions(false);
        Ok(StructuredTask {
            settings,
            data,
            model,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &StructuredSettings {
        &self.settings
    }

    /// The data.
    pub fn data(&self) -> &StructuredData {
        &self.data
    }

    /// The model (scorers, structure, noise, loss, current eps).
    pub fn model(&self) -> &PerturbedModel {
        &self.model
    }

    /// The model, mutably (loading weights).
    pub fn model_mut(&mut self) -> &mut PerturbedModel {
        &mut self.model
    }

    /// Noiseless predictions (active sets) for features `x` `[N, ...]`, in chunks.
    pub fn predict(&mut self, x: ArrayViewD<'_, f64>) -> Result<Vec<Vec<usize>>> {
        predict(&mut self.model, &self.data.shape, x)
    }

    /// Mean task loss and exact-match rate of the noiseless predictions on a split.
    pub fn evaluate(&mut self, part: Part) -> Result<StructuredMetrics> {
        let ex = match part {
            Part::Train => &self.data.train,
            Part::Test => &self.data.test,
        };
        let preds = predict(&mut self.model, &self.data.shape, ex.x.view())?;
        let mut loss = 0.0;
        let mut exact = 0usize;
        for (p, t) in preds.iter().zip(&ex.targets) {
            loss += self.model.loss.value(t, &self.data.shape, p)?;
            exact += same_set(p, &t.truth) as usize;
        }
        let n = ex.len();
        Ok(StructuredMetrics {
            n_examples: n,
            mean_loss: loss / n as f64,
            exact_match: exact as f64 / n as f64,
        })
    }
}

fn predict(
    model: &mut PerturbedModel,
    shape: &[usize],
    x: ArrayViewD<'_, f64>,
) -> Result<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(x.shape().first().copied().unwrap_or(0));
    for chunk in x.axis_chunks_iter(Axis(0), 1024) {
        let raw = model.mu.forward(chunk, false)?;
        let theta = IdentityMap::new(Some(shape.to_vec())).forward(raw)?;
        out.extend(model.predict_potentials(theta.view())?);
    }
    Ok(out)
}

impl Task for StructuredTask {
    fn train_steps(
        &mut self,
        epoch: u64,
        from: Option<EpochCursor>,
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochProgress> {
        let train = &self.data.train;
        let seed = self.settings.seed;
        let (first, mut acc) = resume_point(epoch, from)?;
        let mut order: Vec<usize> = (0..train.len()).collect();
        shuffle(&mut rng_for(seed, Stream::Shuffle, &[epoch]), &mut order);
        let mut map = IdentityMap::new(Some(self.data.shape.clone()));
        let chunks: Vec<&[usize]> = order.chunks(self.settings.batch).collect();
        check_first_step(first, chunks.len())?;
        // A batch's features and targets, in buffers reused from step to step.
        let row: usize = train.x.shape()[1..].iter().product();
        let all = train.x.as_slice().expect("features in standard layout");
        let (mut flat, mut targets) = (Vec::new(), Vec::<Target>::new());
        for (s, chunk) in chunks.iter().enumerate().skip(first) {
            flat.clear();
            for &i in *chunk {
                flat.extend_from_slice(&all[i * row..(i + 1) * row]);
            }
            let mut shape = train.x.shape().to_vec();
            shape[0] = chunk.len();
            let x = ArrayViewD::from_shape(IxDyn(&shape), &flat).expect("batch rows");
            targets.resize_with(chunk.len(), Target::default);
            for (t, &i) in targets.iter_mut().zip(*chunk) {
                // Field by field: a derived clone_from would not reuse the buffers.
                let Target { truth, weights } = &train.targets[i];
                t.truth.clone_from(truth);
                t.weights.clone_from(weights);
            }
            let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
            let stats = self.model.train_step(
                StepInput {
                    x_mu: x.view(),
                    x_sigma: x.view(),
                    targets: &targets,
                    example_ids: &ids,
                    key: NoiseKey { seed, epoch },
                },
                &mut map,
            )?;
            let b = chunk.len();
            acc.add(&StepTotals::of(&stats, stats.noiseless_loss * b as f64, b));
            if s + 1 < chunks.len() && stop() {
                return Ok(EpochProgress::Stopped(EpochCursor {
                    epoch,
                    step: s as u64 + 1,
                    totals: acc,
                }));
            }
        }
        Ok(EpochProgress::Done(acc.record(epoch, self.model.epsilon())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};
    use ndarray_npy::NpzWriter;
    use std::io::{Cursor, Write};

    /// One array of a test file.
    enum Arr {
        F64(ArrayD<f64>),
        F32(ArrayD<f32>),
        I64(ArrayD<i64>),
        I32(ArrayD<i32>),
    }

    fn f64s(shape: &[usize], v: impl Fn(usize) -> f64) -> Arr {
        let n: usize = shape.iter().product();
        Arr::F64(ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(v).collect()).unwrap())
    }

    fn i64s(shape: &[usize], v: &[i64]) -> Arr {
        Arr::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    fn npz(arrays: Vec<(&str, Arr)>) -> Vec<u8> {
        let mut w = NpzWriter::new(Cursor::new(Vec::new()));
        for (name, a) in &arrays {
            match a {
                Arr::F64(a) => w.add_array(*name, a),
                Arr::F32(a) => w.add_array(*name, a),
                Arr::I64(a) => w.add_array(*name, a),
                Arr::I32(a) => w.add_array(*name, a),
            }
            .unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn load(bytes: Vec<u8>, fraction: Option<f64>, seed: u64) -> Result<StructuredData> {
        let split = fraction.map_or_else(TestSplit::default, TestSplit::Fraction);
        StructuredData::from_reader(Cursor::new(bytes), Path::new("t.npz"), split, seed)
    }

    fn err(arrays: Vec<(&str, Arr)>) -> String {
        load(npz(arrays), None, 0).unwrap_err().to_string()
    }

    /// Ten examples on a [2, 3] grid: truth rows of 2 cells (example 9 padded to one).
    fn truth_file() -> Vec<(&'static str, Arr)> {
        let mut t: Vec<i64> = (0..10).flat_map(|i| [i % 6, (i + 1) % 6]).collect();
        t[19] = -1;
        vec![
            ("x", f64s(&[10, 4], |i| i as f64 * 0.1)),
            ("truth", i64s(&[10, 2], &t)),
            ("shape", i64s(&[2], &[2, 3])),
        ]
    }

    #[test]
    fn truth_files_load_and_split_by_seed() {
        let d = load(npz(truth_file()), None, 7).unwrap();
        assert_eq!(d.shape, vec![2, 3]);
        assert_eq!(d.features, vec![4]);
        assert_eq!(d.form, TargetForm::Truth);
        assert_eq!(d.split, SplitSource::Fraction(DEFAULT_TEST_FRACTION));
        assert_eq!((d.train.len(), d.test.len()), (8, 2));
        // Every example lands in exactly one split, with its own target.
        let mut seen: Vec<usize> = d
            .train
            .x
            .axis_iter(Axis(0))
            .chain(d.test.x.axis_iter(Axis(0)))
            .map(|r| (r[0] * 10.0 / 4.0).round() as usize)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for ex in [&d.train, &d.test] {
            for (r, t) in ex.x.axis_iter(Axis(0)).zip(&ex.targets) {
                let i = (r[0] * 10.0 / 4.0).round() as usize;
                let want: Vec<usize> = if i == 9 {
                    vec![3] // the -1 padding is dropped
                } else {
                    vec![i % 6, (i + 1) % 6]
                };
                assert_eq!(t.truth, want);
                assert!(t.weights.is_empty());
            }
        }
        // The same seed gives the same split; another seed (usually) another one.
        assert_eq!(load(npz(truth_file()), None, 7).unwrap(), d);
        let other = load(npz(truth_file()), Some(0.5), 8).unwrap();
        assert_eq!((other.train.len(), other.test.len()), (5, 5));
        assert_eq!(other.split, SplitSource::Fraction(0.5));
    }

    #[test]
    fn phi_float32_int32_weights_and_test_arrays() {
        let phi = |n: usize| {
            f64s(&[n, 2, 2], |j| {
                let (i, c) = (j / 4, j % 4);
                (c == i % 4 || c == 3) as u8 as f64
            })
        };
        let x32 = |n: usize| Arr::F32(ArrayD::from_elem(IxDyn(&[n, 3]), 0.5f32));
        let d = load(
            npz(vec![
                ("x", x32(6)),
                ("phi", phi(6)),
                ("weights", f64s(&[6], |i| i as f64)),
                ("x_test", x32(2)),
                ("phi_test", phi(2)),
                ("weights_test", f64s(&[2], |_| 1.0)),
            ]),
            None,
            0,
        )
        .unwrap();
        assert_eq!(d.form, TargetForm::Phi);
        assert_eq!(d.split, SplitSource::Arrays);
        assert_eq!(d.shape, vec![2, 2]);
        assert_eq!((d.train.len(), d.test.len()), (6, 2));
        assert_eq!(
            d.train.targets[1].truth,
            vec![1, 3],
            "ascending flat indices"
        );
        assert_eq!(d.train.targets[3].truth, vec![3]);
        assert_eq!(d.train.targets[4].weights, vec![4.0]);
        assert_eq!(d.train.x[[0, 0]], 0.5);
        // int32 truth and shape.
        let d = load(
            npz(vec![
                ("x", f64s(&[3, 1], |i| i as f64)),
                (
                    "truth",
                    Arr::I32(ArrayD::from_shape_vec(IxDyn(&[3]), vec![0, 2, 1]).unwrap()),
                ),
                (
                    "shape",
                    Arr::I32(ArrayD::from_shape_vec(IxDyn(&[1]), vec![3]).unwrap()),
                ),
            ]),
            Some(1.0 / 3.0),
            0,
        )
        .unwrap();
        assert_eq!((d.train.len(), d.test.len()), (2, 1));
        // A test fraction given for a file with its own test split is refused; as a fallback
        // (Auto) it gives way to x_test.
        let file = || {
            npz(vec![
                ("x", x32(6)),
                ("phi", phi(6)),
                ("x_test", x32(2)),
                ("phi_test", phi(2)),
            ])
        };
        let e = load(file(), Some(0.3), 0).unwrap_err().to_string();
        assert!(e.contains("x_test"), "{e}");
        let d = StructuredData::from_reader(
            Cursor::new(file()),
            Path::new("t.npz"),
            TestSplit::Auto(0.3),
            0,
        )
        .unwrap();
        assert_eq!((d.split, d.test.len()), (SplitSource::Arrays, 2));
    }

    /// A test file: named arrays.
    type File = Vec<(&'static str, Arr)>;

    /// `truth_file()` with array `name` replaced (or removed, with `None`).
    fn with(name: &'static str, a: Option<Arr>) -> Vec<(&'static str, Arr)> {
        let mut v: Vec<(&str, Arr)> = truth_file()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect();
        if let Some(a) = a {
            v.push((name, a));
        }
        v
    }

    #[test]
    fn malformed_files_are_refused_with_the_array_named() {
        let cases: Vec<(File, &[&str])> = vec![
            (
                with("x", None),
                &["array 'x'", "missing", "arrays present: truth, shape"],
            ),
            (
                with("x", Some(i64s(&[10, 1], &[1; 10]))),
                &["array 'x'", "'<i8'", "float64"],
            ),
            (
                with("x", Some(f64s(&[10], |_| 0.0))),
                &["array 'x'", "[10]", "feature axis"],
            ),
            (
                with("x", Some(f64s(&[0, 4], |_| 0.0))),
                &["array 'x'", "is empty"],
            ),
            (
                with("x", Some(f64s(&[9, 4], |_| 0.0))),
                &["'truth'", "10 examples", "'x' has 9"],
            ),
            (
                with(
                    "x",
                    Some(f64s(&[10, 4], |i| if i == 13 { f64::NAN } else { 0.0 })),
                ),
                &["array 'x'", "non-finite", "NaN", "index 13"],
            ),
            (
                with(
                    "truth",
                    Some(i64s(&[10, 1], &[0, 1, 2, 3, 4, 5, 6, 0, 0, 0])),
                ),
                &["truth[6][0] = 6", "outside", "[2, 3]"],
            ),
            (
                with(
                    "truth",
                    Some(i64s(&[10, 1], &[0, 1, 2, 3, 4, -2, 1, 0, 0, 0])),
                ),
                &["truth[5][0] = -2", "outside"],
            ),
            (
                with("truth", Some(i64s(&[10, 3], &[[0, -1, 2]; 10].concat()))),
                &["'truth'", "row 0", "follows -1 padding"],
            ),
            (
                with("truth", Some(i64s(&[10, 2], &[4; 20]))),
                &["row 0", "appears twice"],
            ),
            (
                with("truth", Some(Arr::F64(ArrayD::zeros(IxDyn(&[10, 2]))))),
                &["array 'truth'", "int64"],
            ),
            (with("truth", None), &["array 'truth'", "missing", "phi"]),
            (with("shape", None), &["array 'shape'", "missing"]),
            (
                with("shape", Some(i64s(&[2], &[2, 0]))),
                &["array 'shape'", "at least 1"],
            ),
            (
                with("shape", Some(i64s(&[2], &[1 << 20, 1 << 20]))),
                &["array 'shape'", "more than"],
            ),
            (
                with("phi", Some(f64s(&[10, 2, 3], |_| 0.0))),
                &["'truth' and 'phi'", "either"],
            ),
            (
                with("weights", Some(f64s(&[4, 2], |_| 0.0))),
                &["'weights'", "4 examples"],
            ),
            (
                with("truth_test", Some(i64s(&[1, 1], &[0]))),
                &["'truth_test'", "without the test features x_test"],
            ),
            (
                with("x_test", Some(f64s(&[3, 5], |_| 0.0))),
                &["'x_test'", "[5]", "x has [4]"],
            ),
            (
                with("x_test", Some(f64s(&[3, 4], |_| 0.0))),
                &["'truth_test'", "missing"],
            ),
            (
                with("labels", Some(f64s(&[10], |_| 0.0))),
                &["'labels'", "not a known array name"],
            ),
        ];
        for (arrays, needles) in cases {
            let e = err(arrays);
            for n in needles {
                assert!(e.contains(n), "'{n}' not in: {e}");
            }
            assert!(e.contains("t.npz"), "names the file: {e}");
        }
        // Indicators must be 0/1.
        let e = err(vec![
            ("x", f64s(&[2, 1], |_| 0.0)),
            ("phi", f64s(&[2, 3], |j| if j == 4 { 0.5 } else { 0.0 })),
        ]);
        assert!(
            e.contains("'phi'") && e.contains("example 1, flat index 1") && e.contains("0.5"),
            "{e}"
        );
        // Fractions that leave a split empty, or are outside (0, 1).
        for f in [0.0, 1.0, 0.01, 0.99, f64::NAN] {
            let e = load(npz(truth_file()), Some(f), 0).unwrap_err().to_string();
            assert!(e.contains("test_fraction"), "{f}: {e}");
        }
        // Not an archive at all.
        let e = load(b"not a zip".to_vec(), None, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a readable .npz"), "{e}");
    }

    /// A stored (uncompressed) archive holding `entries` byte-for-byte.
    fn raw_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    /// An `.npy` file whose header says `shape` but that holds `data` bytes.
    fn npy(descr: &str, shape: &str, data: usize) -> Vec<u8> {
        let mut dict =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + dict.len() + 1) % 64 != 0 {
            dict.push(' ');
        }
        dict.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn declared_sizes_are_checked_against_the_bytes_present() {
        // A header claiming 10^12 x 3 doubles over 48 bytes: refused before allocating.
        let e = load(
            raw_zip(&[("x.npy", npy("<f8", "(1000000000000, 3)", 48))]),
            None,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("array 'x'") && e.contains("48 bytes of data"),
            "{e}"
        );
        // A shape whose byte count overflows.
        let e = load(
            raw_zip(&[("x.npy", npy("<f8", "(4611686018427387904, 4)", 8))]),
            None,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("impossible size"), "{e}");
        // A header length beyond the entry.
        let mut b = npy("<f8", "(1, 1)", 8);
        b[8] = 0xff;
        b[9] = 0xff;
        let e = load(raw_zip(&[("x.npy", b)]), None, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated header"), "{e}");
        // A well-formed hand-written file loads (the check does not reject valid input).
        let x = npy("<f8", "(2, 1)", 16);
        let t = {
            let mut b = npy("<i8", "(2, 1)", 0);
            b.extend_from_slice(&0i64.to_le_bytes());
            b.extend_from_slice(&1i64.to_le_bytes());
            b
        };
        let s = {
            let mut b = npy("<i8", "(1,)", 0);
            b.extend_from_slice(&2i64.to_le_bytes());
            b
        };
        let d = load(
            raw_zip(&[("x.npy", x), ("truth.npy", t), ("shape.npy", s)]),
            Some(0.5),
            0,
        )
        .unwrap();
        assert_eq!(d.shape, vec![2]);
    }

    #[test]
    fn compressed_archives_load() {
        use ndarray_npy::WriteNpyExt;
        let npy_of = |a: Arr| {
            let mut b = Vec::new();
            match a {
                Arr::F64(a) => a.write_npy(&mut b),
                Arr::I64(a) => a.write_npy(&mut b),
                _ => unreachable!(),
            }
            .unwrap();
            b
        };
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, a) in truth_file() {
            z.start_file(format!("{name}.npy"), opts).unwrap();
            z.write_all(&npy_of(a)).unwrap();
        }
        let bytes = z.finish().unwrap().into_inner();
        assert_eq!(
            load(bytes, None, 7).unwrap(),
            load(npz(truth_file()), None, 7).unwrap()
        );
    }

    #[test]
    fn same_set_ignores_order() {
        assert!(same_set(&[3, 1, 2], &[1, 2, 3]));
        assert!(!same_set(&[1, 2], &[1, 2, 3]));
        assert!(!same_set(&[1, 1], &[1, 2]));
    }

    /// A linearly separable 3-class problem as top-1 selection with a label-mismatch loss
    /// (the weights): training must beat the untrained model on the held-out split, and an
    /// option the task cannot use (a structure of another shape) is refused.
    #[test]
    fn training_learns_a_separable_argmax_problem() {
        use dlm_core::{Registry, Spec};
        let n = 300;
        let mut rng = rng_for(1, Stream::TrainData, &[0]);
        let x = Array2::from_shape_fn((n, 2), |_| dlm_core::rng::open01(&mut rng) * 2.0 - 1.0);
        let class: Array1<i64> = x
            .axis_iter(Axis(0))
            .map(|r| {
                let s = [r[0], r[1], -r[0] - r[1]];
                (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap() as i64
            })
            .collect();
        let weights = Array2::from_shape_fn((n, 3), |(i, c)| (class[i] != c as i64) as u8 as f64);
        let bytes = npz(vec![
            ("x", Arr::F64(x.into_dyn())),
            ("truth", Arr::I64(class.into_dyn())),
            ("shape", i64s(&[1], &[3])),
            ("weights", Arr::F64(weights.into_dyn())),
        ]);
        let mut reg = Registry::new();
        reg.register_builtin("topk", dlm_plugin_topk::register)
            .unwrap();
        reg.register_builtin("noise", dlm_plugin_noise::register)
            .unwrap();
        reg.register_builtin("mlp", dlm_plugin_mlp::register)
            .unwrap();
        let build = |structure: &str| {
            StructuredTask::new(
                StructuredSettings {
                    batch: 16,
                    estimator: DlmEstimator {
                        epsilon: -1.0,
                        draws: 1,
                        escape_factor: 1.1,
                        max_abs_epsilon: 100.0,
                    },
                    seed: 3,
                },
                load(bytes.clone(), None, 3).unwrap(),
                reg.structure(&structure.parse().unwrap()).unwrap(),
                reg.noise(&Spec::named("gumbel")).unwrap(),
                reg.loss(&Spec::named("label-mismatch")).unwrap(),
                reg.scorer(&"mlp:sizes=2-3,opt=adam,lr=0.05,seed=5".parse().unwrap())
                    .unwrap(),
                NoiseScale::Fixed(0.1),
            )
        };
        let e = build("topk:k=4").unwrap_err().to_string();
        assert!(e.contains("does not take the potentials shape [3]"), "{e}");
        let mut task = build("topk:k=1").unwrap();
        let before = task.evaluate(Part::Test).unwrap();
        assert_eq!(before.n_examples, 60);
        for epoch in 0..15 {
            let r = task.train_epoch(epoch).unwrap();
            assert!(r.loss.is_finite() && r.zero_rate <= 1.0);
        }
        let after = task.evaluate(Part::Test).unwrap();
        assert!(
            after.exact_match > 0.9 && after.exact_match > before.exact_match + 0.2,
            "{before:?} -> {after:?}"
        );
        // For this loss, mean loss = 1 - exact match.
        assert!((after.mean_loss - (1.0 - after.exact_match)).abs() < 1e-12);
    }
}
