//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a big-endian header, a magic `0x0000TTNN` (`TT` the element type, `0x08` for
//! unsigned bytes; `NN` the number of dimensions), one big-endian `u32` per dimension, then the
//! elements, row-major. Images are magic `0x00000803` (2051, `[N, rows, cols]`), labels
//! `0x00000801` (2049, `[N]`). A file that starts with the gzip magic `1f 8b` is decompressed
//! on the fly, whatever its name.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::{Array2, Array3};

use super::{Dataset, Split};
use dlm_core::error::{DlmError, Result};

/// Magic number of an IDX file of unsigned-byte images `[N, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels `[N]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Largest accepted image side (rows or columns).
const MAX_SIDE: usize = 1 << 12;
/// Largest accepted number of items.
const MAX_ITEMS: usize = 1 << 28;
/// Largest accepted payload (after decompression), in bytes.
const MAX_PAYLOAD: u64 = 1 << 32;
/// At most this many trailing bytes are counted for the error message.
const MAX_TRAILING_COUNT: u64 = 1 << 20;

/// Reads an IDX image file (magic 2051, raw or gzip) into a `[N, rows, cols]` array.
///
/// Errors name the file and the problem: unreadable, wrong magic (e.g. a label file), a
/// dimension count other than 3, implausible sizes, truncated data, trailing bytes, or a
/// corrupt gzip stream.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let path = path.as_ref();
    let (dims, data) = read_idx_u8(path, IDX_IMAGES_MAGIC)?;
    let shape = (dims[0], dims[1], dims[2]);
    Array3::from_shape_vec(shape, data)
        .map_err(|e| DlmError::format(WHAT_IMAGES, path, format!("cannot shape the pixels: {e}")))
}

/// Reads an IDX label file (magic 2049, raw or gzip) into one `u8` per item.
///
/// Errors as [`read_idx_images`].
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    read_idx_u8(path.as_ref(), IDX_LABELS_MAGIC).map(|(_, data)| data)
}

/// The four files of an MNIST-style directory, without the optional `.gz`.
const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Loads an MNIST-style directory: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each raw or with a `.gz` suffix
/// (the raw file wins if both exist). `name` names the resulting data sets (`mnist`,
/// `fashion-mnist`).
///
/// Pixels are scaled by `1/255`; the images have shape `(1, rows, cols)`; `classes` is the
/// largest label plus one (10 for MNIST and Fashion-MNIST). Errors if a file is missing
/// (with a hint to run `scripts/fetch-data.sh`), malformed, if image and label counts
/// differ, if train and test images differ in size, or if a set is empty.
pub fn load_mnist_dir(dir: &Path, name: &str) -> Result<Split> {
    let [train_x, train_y, test_x, test_y] = MNIST_FILES.map(|f| find_file(dir, f, name));
    let (train_x, train_y, test_x, test_y) = (train_x?, train_y?, test_x?, test_y?);
    let train = (read_idx_images(&train_x)?, read_idx_labels(&train_y)?);
    let test = (read_idx_images(&test_x)?, read_idx_labels(&test_y)?);
    for ((images, labels), (xp, yp)) in
        [(&train, (&train_x, &train_y)), (&test, (&test_x, &test_y))]
    {
        if images.dim().0 != labels.len() {
            return Err(DlmError::format(
                "MNIST-style data set",
                dir,
                format!(
                    "{} holds {} images but {} holds {} labels; the files do not belong together \
                     (re-run scripts/fetch-data.sh)",
                    file_name(xp),
                    images.dim().0,
                    file_name(yp),
                    labels.len()
                ),
            ));
        }
        if labels.is_empty() {
            return Err(DlmError::Empty {
                what: format!("{} ({})", file_name(xp), dir.display()),
                hint: "an MNIST-style file needs at least one image; re-run scripts/fetch-data.sh"
                    .into(),
            });
        }
    }
    let (_, rows, cols) = train.0.dim();
    if test.0.dim().1 != rows || test.0.dim().2 != cols {
        return Err(DlmError::format(
            "MNIST-style data set",
            dir,
            format!(
                "training images are {rows}x{cols} but test images are {}x{}",
                test.0.dim().1,
                test.0.dim().2
            ),
        ));
    }
    let classes = train
        .1
        .iter()
        .chain(&test.1)
        .copied()
        .max()
        .map_or(1, |m| usize::from(m) + 1);
    let to_dataset = |(images, labels): (Array3<u8>, Vec<u8>)| {
        let n = images.dim().0;
        let flat = images
            .into_shape_with_order((n, rows * cols))
            .expect("a standard-layout [n, rows, cols] array reshapes to [n, rows * cols]");
        let pixels: Array2<f64> = flat.mapv(|p| f64::from(p) / 255.0);
        Dataset::new(pixels, labels, [1, rows, cols], classes, name)
    };
    Ok(Split {
        train: to_dataset(train)?,
        test: to_dataset(test)?,
    })
}

const WHAT_IMAGES: &str = "IDX image file";
const WHAT_LABELS: &str = "IDX label file";

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

/// `dir/base`, else `dir/base.gz`, else an error telling how to get the data.
fn find_file(dir: &Path, base: &str, name: &str) -> Result<PathBuf> {
    let raw = dir.join(base);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let fetch = match name {
        "mnist" | "fashion-mnist" => format!("scripts/fetch-data.sh {name}"),
        _ => "scripts/fetch-data.sh".to_string(),
    };
    Err(DlmError::io(
        "opening",
        raw,
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "neither {base} nor {base}.gz exists in {}; run {fetch} to download it \
                 (it caches into $DLM_DATA_DIR or <repo>/.data)",
                dir.display()
            ),
        ),
    ))
}

fn describe_magic(magic: u32) -> String {
    match magic {
        IDX_IMAGES_MAGIC => "an IDX image file (magic 2051)".into(),
        IDX_LABELS_MAGIC => "an IDX label file (magic 2049)".into(),
        m if m.swap_bytes() == IDX_IMAGES_MAGIC || m.swap_bytes() == IDX_LABELS_MAGIC => {
            format!("magic 0x{m:08x}, a byte-swapped (little-endian) header; IDX is big-endian")
        }
        m if m >> 16 == 0 && (m >> 8) & 0xff != 0x08 => format!(
            "magic 0x{m:08x}: element type 0x{:02x}, but only unsigned bytes (0x08) are supported",
            (m >> 8) & 0xff
        ),
        m => format!("magic 0x{m:08x}, not an IDX file"),
    }
}

/// Reads one unsigned-byte IDX file with the given magic: its dimensions and elements.
fn read_idx_u8(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let what = if magic == IDX_IMAGES_MAGIC {
        WHAT_IMAGES
    } else {
        WHAT_LABELS
    };
    let bad = |message: String| DlmError::format(what, path, message);
    let file = File::open(path).map_err(|e| DlmError::io("opening", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| DlmError::io("reading", path, e))?
        .len();
    let mut raw = BufReader::new(file);
    let mut head = [0u8; 2];
    let got = read_full(&mut raw, &mut head).map_err(|e| DlmError::io("reading", path, e))?;
    let gzip = got == 2 && head == [0x1f, 0x8b];
    let prefix = io::Cursor::new(head[..got].to_vec());
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(prefix.chain(raw)))
    } else {
        Box::new(prefix.chain(raw))
    };
    // Errors while decoding gzip are format errors; plain read errors are I/O errors.
    let read_err = |e: io::Error| -> DlmError {
        if gzip && e.kind() != io::ErrorKind::PermissionDenied {
            bad(format!("corrupt or truncated gzip stream: {e}"))
        } else {
            DlmError::io("reading", path, e)
        }
    };
    let stored = if gzip { " (after gunzip)" } else { "" };

    let mut word = [0u8; 4];
    let got = read_full(&mut reader, &mut word).map_err(read_err)?;
    if got == 0 {
        return Err(bad(format!("the file is empty{stored}")));
    }
    if got < 4 {
        return Err(bad(format!(
            "truncated header: only {got} bytes{stored}, the magic number alone needs 4"
        )));
    }
    let found = u32::from_be_bytes(word);
    if found != magic {
        return Err(bad(format!(
            "expected {}, found {}",
            describe_magic(magic),
            describe_magic(found)
        )));
    }
    let ndims = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(ndims);
    for k in 0..ndims {
        let got = read_full(&mut reader, &mut word).map_err(read_err)?;
        if got < 4 {
            return Err(bad(format!(
                "truncated header: the file ends{stored} inside dimension {k} of {ndims}"
            )));
        }
        dims.push(u32::from_be_bytes(word) as usize);
    }
    if dims[0] > MAX_ITEMS {
        return Err(bad(format!(
            "implausible item count {} in the header (at most {MAX_ITEMS} accepted)",
            dims[0]
        )));
    }
    if dims[1..].iter().any(|&s| s == 0 || s > MAX_SIDE) {
        return Err(bad(format!(
            "implausible image size {:?} in the header: each side must be in 1..={MAX_SIDE}",
            &dims[1..]
        )));
    }
    let expected = dims
        .iter()
        .try_fold(1u64, |a, &b| a.checked_mul(b as u64))
        .filter(|&n| n <= MAX_PAYLOAD)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            bad(format!(
                "header dimensions {dims:?} describe more than {MAX_PAYLOAD} bytes of data"
            ))
        })?;
    let header = 4 * (1 + ndims);

    // Reserve what the header claims only as far as the file can hold it (a plain file holds
    // at most its length; a gzip stream is reserved for as it decompresses), so that a header
    // claiming more than is there costs no memory before the shortfall is found.
    let reserve = if gzip { 0 } else { file_len };
    let mut data = Vec::with_capacity(expected.min(usize::try_from(reserve).unwrap_or(0)));
    (&mut reader)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() < expected {
        return Err(bad(format!(
            "truncated: the header {dims:?} promises {expected} data bytes after the {header}-byte \
             header, but only {} follow{stored}",
            data.len()
        )));
    }
    let trailing =
        io::copy(&mut (&mut reader).take(MAX_TRAILING_COUNT), &mut io::sink()).map_err(read_err)?;
    if trailing > 0 {
        let count = if trailing == MAX_TRAILING_COUNT {
            format!("at least {trailing}")
        } else {
            trailing.to_string()
        };
        return Err(bad(format!(
            "{count} trailing byte{} after the {expected} data bytes the header {dims:?} \
             describes{stored}; the file is corrupt or its header is wrong",
            if trailing == 1 { "" } else { "s" }
        )));
    }
    Ok((dims, data))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::TempDir;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// 3 images of 2x4 with pixel i*8+j, labels 2, 0, 1.
    fn images3() -> Vec<u8> {
        idx_bytes(IDX_IMAGES_MAGIC, &[3, 2, 4], &(0..24).collect::<Vec<u8>>())
    }
    fn labels3() -> Vec<u8> {
        idx_bytes(IDX_LABELS_MAGIC, &[3], &[2, 0, 1])
    }

    fn err_of<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn reads_raw_and_gzip() {
        let t = TempDir::new("idx-ok");
        for (suffix, enc) in [("", false), (".gz", true), (".bin", true)] {
            let f = |b: Vec<u8>| if enc { gz(&b) } else { b };
            let x = write(&t.0, &format!("x{suffix}"), &f(images3()));
            let y = write(&t.0, &format!("y{suffix}"), &f(labels3()));
            let images = read_idx_images(&x).unwrap();
            assert_eq!(images.dim(), (3, 2, 4));
            assert_eq!(images[[1, 0, 3]], 11);
            assert_eq!(images[[2, 1, 2]], 22);
            assert_eq!(read_idx_labels(&y).unwrap(), vec![2, 0, 1]);
        }
        // Zero items is a valid (empty) file.
        let e = write(&t.0, "empty-set", &idx_bytes(IDX_LABELS_MAGIC, &[0], &[]));
        assert!(read_idx_labels(&e).unwrap().is_empty());
    }

    #[test]
    fn malformed_files_are_errors_naming_the_problem() {
        let t = TempDir::new("idx-bad");
        let img = images3();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "empty"),
            ("short-magic", vec![0, 0, 8], "truncated header"),
            ("labels-as-images", labels3(), "IDX label file (magic 2049)"),
            ("swapped", 0x0308_0000u32.to_be_bytes().to_vec(), "little-endian"),
            ("float", idx_bytes(0x0000_0d03, &[1, 1, 1], &[0; 4]), "element type 0x0d"),
            ("text", b"hello world".to_vec(), "not an IDX file"),
            ("short-dims", img[..10].to_vec(), "inside dimension 1 of 3"),
            ("truncated", img[..img.len() - 1].to_vec(), "truncated: the header [3, 2, 4] promises 24"),
            ("trailing", [img.clone(), vec![9, 9]].concat(), "2 trailing bytes"),
            ("zero-side", idx_bytes(IDX_IMAGES_MAGIC, &[1, 0, 4], &[]), "implausible image size"),
            ("huge-side", idx_bytes(IDX_IMAGES_MAGIC, &[1, 1 << 20, 4], &[]), "implausible image size"),
            ("huge-count", idx_bytes(IDX_IMAGES_MAGIC, &[u32::MAX, 28, 28], &[]), "implausible item count"),
            ("too-big", idx_bytes(IDX_IMAGES_MAGIC, &[1 << 28, 4096, 4096], &[]), "more than"),
            ("gz-truncated", gz(&img)[..20].to_vec(), "gzip"),
            ("gz-trailing", gz(&[img.clone(), vec![1]].concat()), "1 trailing byte after the 24 data bytes the header [3, 2, 4] describes (after gunzip)"),
            ("gz-short", gz(&img[..img.len() - 3]), "only 21 follow (after gunzip)"),
        ];
        for (name, bytes, expect) in cases {
            let p = write(&t.0, name, &bytes);
            let msg = err_of(read_idx_images(&p));
            assert!(msg.contains(expect), "{name}: {msg}");
            assert!(msg.contains(name), "{name}: message names the file: {msg}");
        }
        let p = write(&t.0, "images-as-labels", &images3());
        let msg = err_of(read_idx_labels(&p));
        assert!(msg.contains("expected an IDX label file"), "{msg}");
        assert!(msg.contains("found an IDX image file"), "{msg}");
        let msg = err_of(read_idx_labels(t.0.join("missing")));
        assert!(msg.contains("opening") && msg.contains("missing"), "{msg}");
    }

    fn mnist_dir(t: &TempDir, gzip: bool) {
        let f = |b: Vec<u8>| if gzip { gz(&b) } else { b };
        let sfx = if gzip { ".gz" } else { "" };
        write(
            &t.0,
            &format!("train-images-idx3-ubyte{sfx}"),
            &f(images3()),
        );
        write(
            &t.0,
            &format!("train-labels-idx1-ubyte{sfx}"),
            &f(labels3()),
        );
        let test_x = idx_bytes(IDX_IMAGES_MAGIC, &[1, 2, 4], &[255; 8]);
        write(&t.0, &format!("t10k-images-idx3-ubyte{sfx}"), &f(test_x));
        let test_y = idx_bytes(IDX_LABELS_MAGIC, &[1], &[4]);
        write(&t.0, &format!("t10k-labels-idx1-ubyte{sfx}"), &f(test_y));
    }

    #[test]
    fn loads_an_mnist_style_directory() {
        for gzip in [false, true] {
            let t = TempDir::new("mnist-dir");
            mnist_dir(&t, gzip);
            let s = load_mnist_dir(&t.0, "toy").unwrap();
            assert_eq!((s.train.len(), s.test.len()), (3, 1));
            assert_eq!(s.train.shape, [1, 2, 4]);
            assert_eq!(s.train.images.dim(), (3, 8));
            assert_eq!(s.train.images[[1, 3]], 11.0 / 255.0);
            assert_eq!(s.test.images[[0, 7]], 1.0);
            assert_eq!(s.train.labels, vec![2, 0, 1]);
            assert_eq!((s.train.classes, s.test.classes), (5, 5));
            assert_eq!(s.train.name, "toy");
        }
    }

    #[test]
    fn mnist_dir_errors() {
        let t = TempDir::new("mnist-missing");
        mnist_dir(&t, false);
        std::fs::remove_file(t.0.join("t10k-labels-idx1-ubyte")).unwrap();
        let msg = err_of(load_mnist_dir(&t.0, "mnist"));
        assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
        assert!(msg.contains("scripts/fetch-data.sh mnist"), "{msg}");

        write(
            &t.0,
            "t10k-labels-idx1-ubyte",
            &idx_bytes(IDX_LABELS_MAGIC, &[2], &[0, 1]),
        );
        let msg = err_of(load_mnist_dir(&t.0, "mnist"));
        assert!(
            msg.contains("holds 1 images but t10k-labels-idx1-ubyte holds 2 labels"),
            "{msg}"
        );

        write(
            &t.0,
            "t10k-labels-idx1-ubyte",
            &idx_bytes(IDX_LABELS_MAGIC, &[1], &[0]),
        );
        let x = idx_bytes(IDX_IMAGES_MAGIC, &[1, 4, 2], &[0; 8]);
        write(&t.0, "t10k-images-idx3-ubyte", &x);
        let msg = err_of(load_mnist_dir(&t.0, "mnist"));
        assert!(
            msg.contains("training images are 2x4 but test images are 4x2"),
            "{msg}"
        );
    }

    /// Needs `scripts/fetch-data.sh` to have run: `cargo test -p dlm-core -- --ignored`.
    #[test]
    #[ignore = "needs the downloaded data (scripts/fetch-data.sh)"]
    fn loads_downloaded_mnist_and_fashion_mnist() {
        let dir = crate::data::default_data_dir();
        for name in ["mnist", "fashion-mnist"] {
            let s = crate::data::load(name, &dir).unwrap();
            assert_eq!((s.train.len(), s.test.len()), (60_000, 10_000), "{name}");
            assert_eq!(s.train.shape, [1, 28, 28]);
            assert_eq!(s.train.images.dim(), (60_000, 784));
            assert_eq!(s.train.classes, 10);
            assert_eq!(s.train.class_counts().iter().sum::<usize>(), 60_000);
            assert!(s.test.class_counts().iter().all(|&c| c >= 800), "{name}");
            let max = s.train.images.iter().copied().fold(0.0, f64::max);
            assert_eq!(max, 1.0);
        }
    }
}
