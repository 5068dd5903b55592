//! The embedded default data set: UCI optical-recognition handwritten digits.
//!
//! 1797 grey-scale 8x8 images of the digits 0..9 (the UCI test set as shipped by
//! scikit-learn; CC BY 4.0, see `data/README.md`), compiled into the crate so that examples
//! and tests need no download. The file is a gzipped CSV without header: per row, 64 pixel
//! values 0..16 (row-major) then the label.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use ndarray::Array2;

use super::{Dataset, Split};
use dlm_core::error::{DlmError, Result};

/// The gzipped CSV, `data/digits.csv.gz` of the repository.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../../data/digits.csv.gz");

/// Number of images in [`digits`].
pub const DIGITS_LEN: usize = 1797;

const WHAT: &str = "digits CSV";
const SOURCE: &str = "<embedded data/digits.csv.gz>";

/// The 1797 embedded digit images as one data set named `digits`: shape `(1, 8, 8)`,
/// pixels `value / 16` in `[0, 1]`, 10 classes.
pub fn digits() -> Result<Dataset> {
    let mut text = String::new();
    MultiGzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| DlmError::format(WHAT, SOURCE, format!("cannot decompress: {e}")))?;
    parse_digits_csv(&text)
}

/// The embedded digits, split into train and test by [`Dataset::stratified_split`]: a
/// deterministic seeded shuffle, then per class the first `test_fraction` of the images go
/// to the test set. The default is `digits_split(0.3, 0)` (1258 train, 539 test).
pub fn digits_split(test_fraction: f64, seed: u64) -> Result<Split> {
    digits()?.stratified_split(test_fraction, seed)
}

/// Parses rows of 64 pixel values (0..16) and a label (0..9).
fn parse_digits_csv(text: &str) -> Result<Dataset> {
    const PIXELS: usize = 64;
    let mut pixels = Vec::with_capacity(DIGITS_LEN * PIXELS);
    let mut labels = Vec::with_capacity(DIGITS_LEN);
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| DlmError::format(WHAT, SOURCE, format!("line {}: {m}", k + 1));
        let mut fields = 0;
        for (j, field) in line.split(',').enumerate() {
            fields += 1;
            if j > PIXELS {
                continue;
            }
            let max = if j < PIXELS { 16 } else { 9 };
            let v: u8 = field
                .trim()
                .parse()
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(|| {
                    bad(format!(
                        "field {} is '{field}', expected an integer 0..={max}",
                        j + 1
                    ))
                })?;
            if j < PIXELS {
                pixels.push(f64::from(v) / 16.0);
            } else {
                labels.push(v);
            }
        }
        if fields != PIXELS + 1 {
            return Err(bad(format!(
                "{fields} fields, expected {} (64 pixels and a label)",
                PIXELS + 1
            )));
        }
    }
    if labels.is_empty() {
        return Err(DlmError::Empty {
            what: SOURCE.into(),
            hint: "the digits CSV has no rows; restore data/digits.csv.gz".into(),
        });
    }
    let images = Array2::from_shape_vec((labels.len(), PIXELS), pixels)
        .expect("64 pixels were pushed per label");
    Dataset::new(images, labels, [1, 8, 8], 10, "digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_all_digits() {
        let d = digits().unwrap();
        assert_eq!(d.len(), DIGITS_LEN);
        assert_eq!(d.images.dim(), (DIGITS_LEN, 64));
        assert_eq!(
            (d.shape, d.classes, d.name.as_str()),
            ([1, 8, 8], 10, "digits")
        );
        let counts = d.class_counts();
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
        assert!(d.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(d.images.iter().copied().fold(0.0, f64::max), 1.0);
        // First row of the file: 0,0,5,13,9,1,0,0,... label 0.
        assert_eq!(d.labels[0], 0);
        assert_eq!(d.images[[0, 2]], 5.0 / 16.0);
        assert_eq!(d.images[[0, 3]], 13.0 / 16.0);
    }

    #[test]
    fn split_is_deterministic_disjoint_and_stratified() {
        let a = digits_split(0.3, 0).unwrap();
        assert_eq!(a, digits_split(0.3, 0).unwrap());
        assert_eq!((a.train.len(), a.test.len()), (1258, 539));
        let b = digits_split(0.3, 1).unwrap();
        assert_ne!(a.test.images, b.test.images);
        // Disjoint: no test image occurs in the training set (the few exact duplicate images
        // of the data set are matched by multiplicity).
        let key = |r: ndarray::ArrayView1<f64>, l: u8| {
            let mut k: Vec<u8> = r.iter().map(|&p| (p * 16.0) as u8).collect();
            k.push(l);
            k
        };
        let full = digits().unwrap();
        let mut all: Vec<Vec<u8>> = full
            .images
            .rows()
            .into_iter()
            .zip(&full.labels)
            .map(|(r, &l)| key(r, l))
            .collect();
        let mut parts: Vec<Vec<u8>> = a
            .train
            .images
            .rows()
            .into_iter()
            .zip(&a.train.labels)
            .chain(a.test.images.rows().into_iter().zip(&a.test.labels))
            .map(|(r, &l)| key(r, l))
            .collect();
        all.sort();
        parts.sort();
        assert_eq!(all, parts, "train + test is a permutation of the data set");
        // Stratified: each class has ~30% of its images in the test set.
        for (c, (&t, &n)) in a
            .test
            .class_counts()
            .iter()
            .zip(&full.class_counts())
            .enumerate()
        {
            let share = t as f64 / n as f64;
            assert!((share - 0.3).abs() < 0.01, "class {c}: {t}/{n}");
        }
        // Not sorted by class: the shuffled order is kept.
        assert!(a.test.labels.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn bad_csv_is_an_error() {
        for (text, expect) in [
            ("1,2,3\n", "line 1: 3 fields"),
            (&format!("{}9\n", "0,".repeat(64)) as &str, ""),
            (&format!("{}10\n", "0,".repeat(64)), "field 65 is '10'"),
            (&format!("17,{}1\n", "0,".repeat(63)), "field 1 is '17'"),
            (&format!("x,{}1\n", "0,".repeat(63)), "field 1 is 'x'"),
            (&format!("{}1,2\n", "0,".repeat(64)), "66 fields"),
            ("\n", "no rows"),
        ] {
            let r = parse_digits_csv(text);
            if expect.is_empty() {
                assert_eq!(r.unwrap().labels, vec![9]);
            } else {
                let msg = r.unwrap_err().to_string();
                assert!(msg.contains(expect), "{msg}");
            }
        }
    }
}
