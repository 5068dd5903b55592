//! The CIFAR-10 binary format.
//!
//! Each file of the "binary version" (`cifar-10-batches-bin/`) is a sequence of 3073-byte
//! records: one label byte (0..9) then 3072 pixel bytes, a 3x32x32 image stored channel-major
//! (the 1024 red values row by row, then green, then blue). The training set is
//! `data_batch_1.bin` .. `data_batch_5.bin` (10000 records each), the test set `test_batch.bin`.

use std::io::Read;
use std::path::Path;

use ndarray::{concatenate, Array2, Axis};

use super::{Dataset, Split};
use dlm_core::error::{DlmError, Result};

/// Pixels per CIFAR image (3 x 32 x 32).
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;
/// Bytes per CIFAR-10 record (label + pixels).
pub const CIFAR_RECORD: usize = 1 + CIFAR_PIXELS;
/// Number of CIFAR-10 classes.
pub const CIFAR10_CLASSES: usize = 10;
/// Largest accepted batch file, in bytes.
const MAX_FILE: u64 = 1 << 32;

const WHAT: &str = "CIFAR-10 batch file";

/// Reads one CIFAR-10 binary batch file: a `[N, 3072]` matrix of pixels scaled to `[0, 1]`
/// (channel-major, as stored) and the `N` labels.
///
/// Errors name the file and the problem: unreadable, empty, a length that is not a multiple
/// of the 3073-byte record, or a label that is not below 10.
pub fn read_cifar_batch(path: impl AsRef<Path>) -> Result<(Array2<f64>, Vec<u8>)> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| DlmError::io("opening", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DlmError::io("reading", path, e))?;
    let bad = |message: String| DlmError::format(WHAT, path, message);
    if bytes.len() as u64 > MAX_FILE {
        return Err(bad(format!("implausibly large (over {MAX_FILE} bytes)")));
    }
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    if bytes.len() % CIFAR_RECORD != 0 {
        return Err(bad(format!(
            "{} bytes is not a multiple of the {CIFAR_RECORD}-byte record (1 label + \
             {CIFAR_PIXELS} pixels): {} whole records and {} byte{} left over; the file is \
             truncated or not CIFAR-10 binary (CIFAR-100 records are 3074 bytes)",
            bytes.len(),
            bytes.len() / CIFAR_RECORD,
            bytes.len() % CIFAR_RECORD,
            if bytes.len() % CIFAR_RECORD == 1 {
                ""
            } else {
                "s"
            }
        )));
    }
    let n = bytes.len() / CIFAR_RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * CIFAR_PIXELS);
    for (i, record) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= CIFAR10_CLASSES {
            return Err(bad(format!(
                "record {i} (byte offset {}) has label {label}; CIFAR-10 labels are 0..9",
                i * CIFAR_RECORD
            )));
        }
        labels.push(label);
        pixels.extend(record[1..].iter().map(|&p| f64::from(p) / 255.0));
    }
    let images = Array2::from_shape_vec((n, CIFAR_PIXELS), pixels)
        .expect("n * 3072 pixels shape into [n, 3072]");
    Ok((images, labels))
}

/// The training batches of the binary version, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch of the binary version.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// Loads a `cifar-10-batches-bin` directory: the five training batches (concatenated in
/// order) and the test batch, as data sets named `cifar10` of shape `(3, 32, 32)` with 10
/// classes. Errors if a file is missing (saying where to get the data) or malformed.
pub fn load_cifar10_dir(dir: &Path) -> Result<Split> {
    for f in CIFAR10_TRAIN_FILES.iter().chain([&CIFAR10_TEST_FILE]) {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(DlmError::io(
                "opening",
                &p,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{f} is missing from {}; no package registry ships CIFAR-10: download \
                         the binary version (cifar-10-binary.tar.gz) from \
                         https://www.cs.toronto.edu/~kriz/cifar.html and extract it into the \
                         data directory ($DLM_DATA_DIR or <repo>/.data), giving \
                         cifar-10-batches-bin/{{data_batch_1..5,test_batch}}.bin",
                        dir.display()
                    ),
                ),
            ));
        }
    }
    let mut images = Vec::with_capacity(CIFAR10_TRAIN_FILES.len());
    let mut labels = Vec::new();
    for f in CIFAR10_TRAIN_FILES {
        let (x, y) = read_cifar_batch(dir.join(f))?;
        images.push(x);
        labels.extend(y);
    }
    let views: Vec<_> = images.iter().map(|x| x.view()).collect();
    let train_x = concatenate(Axis(0), &views).expect("batches share the row length 3072");
    drop(images);
    let (test_x, test_y) = read_cifar_batch(dir.join(CIFAR10_TEST_FILE))?;
    let shape = [3, 32, 32];
    Ok(Split {
        train: Dataset::new(train_x, labels, shape, CIFAR10_CLASSES, "cifar10")?,
        test: Dataset::new(test_x, test_y, shape, CIFAR10_CLASSES, "cifar10")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::TempDir;

    /// `n` records; record i has label i % 10 and pixel j = (i + j) % 256.
    fn batch(n: usize, offset: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * CIFAR_RECORD);
        for i in offset..offset + n {
            v.push((i % 10) as u8);
            v.extend((0..CIFAR_PIXELS).map(|j| ((i + j) % 256) as u8));
        }
        v
    }

    #[test]
    fn reads_a_batch() {
        let t = TempDir::new("cifar-ok");
        let p = t.0.join("b.bin");
        std::fs::write(&p, batch(3, 0)).unwrap();
        let (x, y) = read_cifar_batch(&p).unwrap();
        assert_eq!(x.dim(), (3, 3072));
        assert_eq!(y, vec![0, 1, 2]);
        assert_eq!(x[[0, 0]], 0.0);
        assert_eq!(x[[2, 5]], 7.0 / 255.0);
        assert_eq!(x[[0, 255]], 1.0);
        // Channel-major: pixel 1024 is the first green value.
        assert_eq!(x[[1, 1024]], ((1 + 1024) % 256) as f64 / 255.0);
    }

    #[test]
    fn malformed_batches_are_errors() {
        let t = TempDir::new("cifar-bad");
        let good = batch(2, 0);
        let mut bad_label = good.clone();
        bad_label[CIFAR_RECORD] = 10;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.bin", vec![], "empty"),
            (
                "short.bin",
                good[..good.len() - 1].to_vec(),
                "not a multiple of the 3073-byte record",
            ),
            (
                "long.bin",
                [good.clone(), vec![0]].concat(),
                "2 whole records and 1 byte left over",
            ),
            (
                "label.bin",
                bad_label,
                "record 1 (byte offset 3073) has label 10",
            ),
        ];
        for (name, bytes, expect) in cases {
            let p = t.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            let msg = read_cifar_batch(&p).unwrap_err().to_string();
            assert!(msg.contains(expect) && msg.contains(name), "{name}: {msg}");
        }
    }

    #[test]
    fn loads_a_directory() {
        let t = TempDir::new("cifar-dir");
        for (k, f) in CIFAR10_TRAIN_FILES.iter().enumerate() {
            std::fs::write(t.0.join(f), batch(2, 2 * k)).unwrap();
        }
        let msg = load_cifar10_dir(&t.0).unwrap_err().to_string();
        assert!(msg.contains("test_batch.bin is missing"), "{msg}");
        std::fs::write(t.0.join(CIFAR10_TEST_FILE), batch(3, 100)).unwrap();
        let s = load_cifar10_dir(&t.0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (10, 3));
        assert_eq!(s.train.labels, (0..10).collect::<Vec<u8>>());
        assert_eq!(s.train.images[[9, 0]], 9.0 / 255.0);
        assert_eq!((s.train.shape, s.train.classes), ([3, 32, 32], 10));
        assert_eq!(s.test.name, "cifar10");
    }
}
