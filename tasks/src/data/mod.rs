//! Image-classification data sets.
//!
//! A [`Dataset`] holds `N` images flattened to rows of an `[N, D]` matrix of pixels scaled to
//! `[0, 1]`, their `u8` class labels, and the image shape `(C, H, W)` (`D = C * H * W`,
//! channel-major, then row-major). [`load`] picks a data set by name:
//!
//! | name | source | shape |
//! |---|---|---|
//! | `digits` | embedded UCI handwritten digits (1797 images), see [`digits`](digits()) | 1 x 8 x 8 |
//! | `mnist` | `<data_dir>/mnist`, IDX files, see [`load_mnist_dir`] | 1 x 28 x 28 |
//! | `fashion-mnist` | `<data_dir>/fashion-mnist`, IDX files | 1 x 28 x 28 |
//! | `cifar10` | `<data_dir>/cifar-10-batches-bin`, see [`load_cifar10_dir`] | 3 x 32 x 32 |
//!
//! MNIST and Fashion-MNIST are fetched, verified and cached by `scripts/fetch-data.sh`; the
//! cache is [`default_data_dir`] (`$DLM_DATA_DIR`, else `<repo>/.data`).
//!
//! ```
//! let split = dlm_tasks::data::load("digits", &dlm_tasks::data::default_data_dir()).unwrap();
//! assert_eq!(split.train.len() + split.test.len(), 1797);
//! assert_eq!(split.train.shape, [1, 8, 8]);
//! ```

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

use dlm_core::error::{DlmError, Result};
use dlm_core::rng::{rng_for, shuffle, Stream};

pub mod cifar;
pub mod digits;
pub mod idx;

pub use cifar::{load_cifar10_dir, read_cifar_batch};
pub use digits::{digits, digits_split};
pub use idx::{load_mnist_dir, read_idx_images, read_idx_labels};

/// The names [`load`] accepts.
pub const DATASET_NAMES: [&str; 4] = ["digits", "mnist", "fashion-mnist", "cifar10"];

/// A labelled image set: `images` is `[N, D]` f64 (pixels scaled to `[0, 1]`), `labels` `[N]`
/// u8, plus the image shape `(C, H, W)` with `C * H * W = D`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// One flattened image per row (channel-major, then row-major), pixels in `[0, 1]`.
    pub images: Array2<f64>,
    /// The class of each image, `0..classes`.
    pub labels: Vec<u8>,
    /// Image shape `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Number of classes (every label is below it).
    pub classes: usize,
    /// Data set name (e.g. `mnist`), for messages and reports.
    pub name: String,
}

impl Dataset {
    /// Builds a data set, checking that the pieces agree: one label per image row, rows of
    /// `C * H * W` pixels, every label below `classes`.
    pub fn new(
        images: Array2<f64>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: usize,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        let d = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if d != Some(images.ncols()) {
            return Err(DlmError::shape(
                format!("images of data set '{name}'"),
                format!(
                    "[N, {}] (image shape {shape:?})",
                    shape.iter().product::<usize>()
                ),
                images.shape(),
            ));
        }
        if labels.len() != images.nrows() {
            return Err(DlmError::shape(
                format!("labels of data set '{name}'"),
                format!("[{}] (one per image)", images.nrows()),
                &[labels.len()],
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= classes)
        {
            return Err(DlmError::invalid(
                format!("labels of data set '{name}'"),
                format!("label {l} of image {i} is not below the number of classes {classes}"),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            shape,
            classes,
            name,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image, `C * H * W`.
    pub fn dim(&self) -> usize {
        self.images.ncols()
    }

    /// The images at `idx`, in that order (repeats allowed), with the same shape, classes and
    /// name.
    ///
    /// # Panics
    /// If an index is `>= self.len()`.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            images: self.images.select(Axis(0), idx),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
            name: self.name.clone(),
        }
    }

    /// Number of images of each class (`classes` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// A deterministic, per-class stratified train/test split.
    ///
    /// The images are shuffled with the seeded [`Stream::Shuffle`] generator; walking that
    /// order, each image goes to the test set until its class has its share of
    /// `round(len * test_fraction)` test images (apportioned to classes by largest
    /// remainder), and to the training set after that. Both parts keep the shuffled order.
    /// The same `(data, test_fraction, seed)` always gives the same split.
    ///
    /// Errors if `test_fraction` is not in `(0, 1)` or either part would be empty.
    pub fn stratified_split(&self, test_fraction: f64, seed: u64) -> Result<Split> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(DlmError::invalid(
                "test_fraction",
                format!("{test_fraction} is not in the open interval (0, 1); use e.g. 0.3"),
            ));
        }
        let n = self.len();
        let n_test = (n as f64 * test_fraction).round() as usize;
        if n_test == 0 || n_test >= n {
            return Err(DlmError::invalid(
                "test_fraction",
                format!(
                    "{test_fraction} of {n} images of data set '{}' leaves the {} set empty; \
                     choose a fraction that gives both sets at least one image",
                    self.name,
                    if n_test == 0 { "test" } else { "training" }
                ),
            ));
        }
        let quota = apportion(&self.class_counts(), n_test, n);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = rng_for(seed, Stream::Shuffle, &[SPLIT_COUNTER]);
        shuffle(&mut rng, &mut order);
        let mut taken = vec![0usize; self.classes];
        let (mut test, mut train) = (Vec::with_capacity(n_test), Vec::with_capacity(n - n_test));
        for i in order {
            let c = usize::from(self.labels[i]);
            if taken[c] < quota[c] {
                taken[c] += 1;
                test.push(i);
            } else {
                train.push(i);
            }
        }
        Ok(Split {
            train: self.select(&train),
            test: self.select(&test),
        })
    }
}

/// Counter that keys the split's shuffle, apart from any per-epoch shuffling.
const SPLIT_COUNTER: u64 = 0x5350_4c49_5400_0000; // "SPLIT"

/// Splits `total` over classes in proportion to `counts` (summing to `n`), by largest
/// remainder (ties to the lower class), never giving a class more than it has.
fn apportion(counts: &[usize], total: usize, n: usize) -> Vec<usize> {
    let exact: Vec<f64> = counts
        .iter()
        .map(|&c| c as f64 * total as f64 / n as f64)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|&e| e.floor() as usize).collect();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut left = total.saturating_sub(quota.iter().sum());
    for &c in by_remainder.iter().cycle().take(2 * counts.len()) {
        if left == 0 {
            break;
        }
        if quota[c] < counts[c] {
            quota[c] += 1;
            left -= 1;
        }
    }
    quota
}

/// A train/test pair of the same data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training images.
    pub train: Dataset,
    /// Held-out test images.
    pub test: Dataset,
}

/// Loads the data set `name` (one of [`DATASET_NAMES`]) from `data_dir`.
///
/// `digits` is embedded ([`digits_split`]`(0.3, 0)`; `data_dir` is ignored); `mnist` and
/// `fashion-mnist` are read from `data_dir/mnist` and `data_dir/fashion-mnist`
/// ([`load_mnist_dir`]); `cifar10` from `data_dir/cifar-10-batches-bin`
/// ([`load_cifar10_dir`]). Use [`default_data_dir`] for the usual `data_dir`.
pub fn load(name: &str, data_dir: &Path) -> Result<Split> {
    match name {
        "digits" => digits_split(0.3, 0),
        "mnist" | "fashion-mnist" => load_mnist_dir(&data_dir.join(name), name),
        "cifar10" => load_cifar10_dir(&data_dir.join("cifar-10-batches-bin")),
        _ => Err(DlmError::invalid(
            "data set",
            format!(
                "unknown data set '{name}'; choose one of: {}",
                DATASET_NAMES.join(", ")
            ),
        )),
    }
}

/// Where downloaded data sets are cached: `$DLM_DATA_DIR` if set (and not empty), else
/// `<repo>/.data` (git-ignored), the folder `scripts/fetch-data.sh` fills.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DLM_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    core.parent()
        .map_or_else(|| core.join(".."), Path::to_path_buf)
        .join(".data")
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, empty temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "dlm-core-data-{tag}-{}-{n}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn toy() -> Dataset {
        let images = Array2::from_shape_fn((20, 4), |(i, j)| (i * 4 + j) as f64 / 80.0);
        let labels = (0..20).map(|i| (i % 3) as u8).collect();
        Dataset::new(images, labels, [1, 2, 2], 3, "toy").unwrap()
    }

    #[test]
    fn new_validates() {
        let ok = Dataset::new(array![[0.0, 1.0]], vec![1], [1, 1, 2], 2, "a");
        assert!(ok.is_ok());
        let e = Dataset::new(array![[0.0, 1.0]], vec![1], [1, 2, 2], 2, "a").unwrap_err();
        assert!(e.to_string().contains("images of data set 'a'"), "{e}");
        let e = Dataset::new(array![[0.0, 1.0]], vec![1, 0], [1, 1, 2], 2, "a").unwrap_err();
        assert!(e.to_string().contains("labels"), "{e}");
        let e = Dataset::new(array![[0.0, 1.0]], vec![2], [1, 1, 2], 2, "a").unwrap_err();
        assert!(e.to_string().contains("label 2 of image 0"), "{e}");
    }

    #[test]
    fn select_picks_rows_in_order() {
        let d = toy();
        let s = d.select(&[5, 1, 5]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.labels, vec![2, 1, 2]);
        assert_eq!(s.images.row(0), d.images.row(5));
        assert_eq!(s.images.row(1), d.images.row(1));
        assert_eq!((s.shape, s.classes, s.name.as_str()), ([1, 2, 2], 3, "toy"));
        assert!(d.select(&[]).is_empty());
    }

    #[test]
    fn stratified_split_is_deterministic_disjoint_and_stratified() {
        let d = toy();
        let a = d.stratified_split(0.3, 7).unwrap();
        let b = d.stratified_split(0.3, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.test.len(), 6);
        assert_eq!(a.train.len(), 14);
        // Pixel values identify rows: the parts are disjoint and cover everything.
        let mut ids: Vec<usize> = a
            .train
            .images
            .rows()
            .into_iter()
            .chain(a.test.images.rows())
            .map(|r| (r[0] * 20.0).round() as usize)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..20).collect::<Vec<_>>());
        assert_eq!(a.test.class_counts(), vec![2, 2, 2]);
        let c = d.stratified_split(0.3, 8).unwrap();
        assert_ne!(a.test.labels.len(), 0);
        assert_ne!(a, c, "another seed gives another split");
    }

    #[test]
    fn stratified_split_rejects_bad_fractions() {
        let d = toy();
        for f in [0.0, 1.0, -0.1, f64::NAN, 0.01, 0.99] {
            let e = d.stratified_split(f, 0).unwrap_err();
            assert!(e.to_string().contains("test_fraction"), "{e}");
        }
    }

    #[test]
    fn apportion_sums_to_total() {
        assert_eq!(apportion(&[5, 5, 5], 5, 15), vec![2, 2, 1]);
        assert_eq!(apportion(&[10, 0, 1], 3, 11), vec![3, 0, 0]);
        assert_eq!(apportion(&[1, 1], 2, 2), vec![1, 1]);
    }

    #[test]
    fn load_dispatches_and_rejects_unknown_names() {
        let e = load("imagenet", Path::new("/nonexistent")).unwrap_err();
        let msg = e.to_string();
        for name in DATASET_NAMES {
            assert!(msg.contains(name), "{msg}");
        }
        let e = load("mnist", Path::new("/nonexistent-dlm-dir")).unwrap_err();
        assert!(e.to_string().contains("fetch-data.sh"), "{e}");
        let e = load("cifar10", Path::new("/nonexistent-dlm-dir")).unwrap_err();
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
        let s = load("digits", Path::new("/nonexistent-dlm-dir")).unwrap();
        assert_eq!(s.train.len() + s.test.len(), 1797);
    }

    #[test]
    fn default_data_dir_ends_in_dot_data() {
        if std::env::var_os("DLM_DATA_DIR").is_none() {
            let d = default_data_dir();
            assert!(d.ends_with(".data"), "{}", d.display());
            assert!(d.parent().unwrap().join("core").join("Cargo.toml").exists());
        }
    }
}
