//! Fuzzing of every parser of untrusted input: CSV and `.npy` arrays, IDX and CIFAR-10 data
//! files, model files, mlp weights, the structured task's `.npz` data files, and component
//! specs with their typed getters.
//!
//! Each parser gets proptest-generated inputs of two kinds: arbitrary bytes, and valid files
//! mutated by bit flips, truncations, insertions (random bytes or slices of a valid file),
//! duplicated ranges and overwritten length fields (0, 1, 2^31, 2^32 - 1, 2^63, ... in both byte
//! orders). Properties, per input:
//!
//! * **no panic**: the call runs under `catch_unwind`;
//! * **bounded time**: each call must return within [`CASE_SECONDS`], and a watchdog thread
//!   aborts the whole test binary (naming the parser) if one hangs for [`HANG_SECONDS`];
//! * **bounded memory**: this binary's global allocator counts the bytes each thread holds,
//!   and the peak reached during the call, above what was held before it, must stay below a
//!   bound derived from the input's length (per parser, see the `bound` arguments: a small
//!   multiple of the length for formats read as they are, the deflate expansion limit of
//!   1032:1 for compressed ones). An allocation sized by a claimed length rather than by the
//!   bytes present (a header claiming `(100000, 100000)` values) exceeds it at once.
//!
//! Case counts are fixed (seeded, deterministic) and small enough that the whole file runs in
//! a few seconds of a debug build; `DLM_FUZZ_CASES=N` sets every target's count and
//! `DLM_FUZZ_SEED=S` another seed, for longer runs (`scripts/fuzz.sh`).

use dlm_core::Spec;
use dlm_plugin_mlp::net::{Activation, Mlp, Optimizer};
use dlm_tasks::io::{parse_csv, parse_npy, read_npy, CsvHeader};
use dlm_tasks::model_file::ModelFile;
use dlm_tasks::structured::{StructuredData, TestSplit};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Allocation counting.

/// The system allocator, counting the bytes each thread has allocated and not freed, and
/// the peak of that count.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = HELD.try_with(|h| {
        let v = h.get() + delta;
        h.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are thread-local cells
// initialised without allocating.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) };
        account(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            account(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the most bytes it held at once (on this thread) above
/// what was held before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - start).max(0) as usize)
}

#[test]
fn the_allocation_counter_sees_allocations() {
    let (v, peak) = peak_of(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "{peak}");
    drop(v);
    let (_, peak) = peak_of(|| {
        for _ in 0..10 {
            std::hint::black_box(vec![0u8; 1000]);
        }
    });
    assert!(
        (1000..2000).contains(&peak),
        "freed memory is not held: {peak}"
    );
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// Longest a single parse may take (debug build, inputs of a few KiB).
const CASE_SECONDS: f64 = 10.0;

/// A call that has not returned after this long is a hang: the binary aborts.
const HANG_SECONDS: u64 = 120;

/// Cases per target, unless `DLM_FUZZ_CASES` says otherwise.
fn cases(default: u32) -> u32 {
    std::env::var("DLM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32, salt: u8) -> TestRunner {
    let seed: u8 = std::env::var("DLM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let mut key = [seed; 32];
    key[0] = salt;
    TestRunner::new_with_rng(
        PtConfig {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..PtConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    )
}

/// Aborts the process if the heartbeat stops for [`HANG_SECONDS`] while a case runs.
struct Watchdog {
    beat: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(name: &'static str) -> Self {
        let beat = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (b, d) = (beat.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = (b.load(Ordering::SeqCst), Instant::now());
            while !d.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let now = b.load(Ordering::SeqCst);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed().as_secs() >= HANG_SECONDS {
                    eprintln!("fuzz target {name}: a call has not returned after {HANG_SECONDS} s");
                    std::process::abort();
                }
            }
        });
        Watchdog { beat, done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Feeds `cases` inputs from `strategy` to `parse` and checks the three properties; `bound`
/// is the allowed peak of bytes held during a call, given the input's length.
fn fuzz<S: Strategy<Value = Vec<u8>>>(
    name: &'static str,
    cases: u32,
    salt: u8,
    strategy: S,
    bound: impl Fn(usize) -> usize,
    parse: impl Fn(&[u8]),
) {
    let dog = Watchdog::start(name);
    let ok = Cell::new(0u64);
    let result = runner(cases, salt).run(&strategy, |input| {
        dog.beat.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        let (outcome, peak) = peak_of(|| catch_unwind(AssertUnwindSafe(|| parse(&input))));
        let secs = t.elapsed().as_secs_f64();
        let excerpt = &input[..input.len().min(64)];
        if outcome.is_err() {
            return Err(TestCaseError::fail(format!(
                "{name} panicked on {} bytes starting {excerpt:?}",
                input.len()
            )));
        }
        if secs > CASE_SECONDS {
            return Err(TestCaseError::fail(format!(
                "{name} took {secs:.1} s on {} bytes starting {excerpt:?}",
                input.len()
            )));
        }
        let allowed = bound(input.len());
        if peak > allowed {
            return Err(TestCaseError::fail(format!(
                "{name} held {peak} bytes at once (allowed {allowed}) on {} bytes starting {excerpt:?}",
                input.len()
            )));
        }
        ok.set(ok.get() + 1);
        Ok(())
    });
    drop(dog);
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(ok.get() >= u64::from(cases), "{name}: {} cases", ok.get());
}

// ---------------------------------------------------------------------------------------------
// Inputs.

/// One change to a valid file; positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips bit `.1` of byte `.0`.
    Flip(usize, u8),
    /// Keeps only the first `.0` bytes.
    Truncate(usize),
    /// Inserts bytes.
    Insert(usize, Vec<u8>),
    /// Inserts a slice `(start, len)` of the valid file.
    Splice(usize, usize, usize),
    /// Writes an interesting number (`.1`-th of [`INTERESTING`]) over the bytes at `.0`, in
    /// `.2` bytes, big-endian when `.3`.
    Number(usize, usize, usize, bool),
    /// Duplicates the range `(start, len)` in place.
    Repeat(usize, usize),
}

/// Lengths and counts that break careless parsers.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    1 << 63,
    u64::MAX,
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(i, s, l)| Mutation::Splice(i, s, l)),
        3 => (any::<usize>(), 0..INTERESTING.len(), prop::sample::select(vec![1usize, 2, 4, 8]), any::<bool>())
            .prop_map(|(i, v, w, be)| Mutation::Number(i, v, w, be)),
        1 => (any::<usize>(), 1usize..32).prop_map(|(s, l)| Mutation::Repeat(s, l)),
    ]
}

fn apply(valid: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = valid.to_vec();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip(i, b) if !v.is_empty() => {
                let k = i % v.len();
                v[k] ^= 1 << b;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(i) => v.truncate(at(*i, v.len())),
            Mutation::Insert(i, bytes) => {
                let k = at(*i, v.len());
                v.splice(k..k, bytes.iter().copied());
            }
            Mutation::Splice(i, s, l) if !valid.is_empty() => {
                let s = s % valid.len();
                let e = (s + l).min(valid.len());
                let k = at(*i, v.len());
                v.splice(k..k, valid[s..e].iter().copied());
            }
            Mutation::Splice(..) => {}
            Mutation::Number(i, n, w, be) => {
                let x = INTERESTING[*n];
                let bytes = if *be {
                    x.to_be_bytes()[8 - w..].to_vec()
                } else {
                    x.to_le_bytes()[..*w].to_vec()
                };
                let k = at(*i, v.len());
                for (j, b) in bytes.into_iter().enumerate() {
                    if k + j < v.len() {
                        v[k + j] = b;
                    }
                }
            }
            Mutation::Repeat(s, l) if !v.is_empty() => {
                let s = s % v.len();
                let e = (s + l).min(v.len());
                let copy = v[s..e].to_vec();
                v.splice(s..s, copy);
            }
            Mutation::Repeat(..) => {}
        }
    }
    v
}

/// Arbitrary bytes, or one of the valid files mutated one to eight times.
fn inputs(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..600),
        4 => (0..n, prop::collection::vec(mutation(), 1..8))
            .prop_map(move |(k, m)| apply(&valid[k], &m)),
    ]
}

/// A `.npy` file of `values` with the given header fields.
fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(data);
    v
}

fn f64_le(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn i64_le(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn npz(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        z.start_file(format!("{name}.npy"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// Writes each input to a temporary file for the readers that take a path.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dlm-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempFile(dir.join(format!("{name}-{:?}", std::thread::current().id())))
    }
    fn with(&self, bytes: &[u8]) -> &Path {
        std::fs::write(&self.0, bytes).unwrap();
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

const KIB: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Targets.

#[test]
fn fuzz_csv() {
    let valid = vec![
        b"x,y\n1,2\n3.5,-4e3\n# comment\n\n5;6\r\n".to_vec(),
        b"1\t2\t3\n4\t5\t6\n".to_vec(),
        b"7\n".to_vec(),
    ];
    let p = Path::new("f.csv");
    // Text plus one f64 per value (a value takes at least two bytes) in a doubling vector.
    fuzz(
        "csv",
        cases(1500),
        1,
        inputs(valid),
        |n| 16 * n + 16 * KIB,
        |b| {
            let _ = parse_csv(b, p, CsvHeader::Auto);
            let _ = parse_csv(b, p, CsvHeader::Present);
        },
    );
}

#[test]
fn fuzz_npy() {
    let valid = vec![
        npy_bytes(
            "<f8",
            false,
            "(2, 3)",
            &f64_le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ),
        npy_bytes("<f8", true, "(2, 2)", &f64_le(&[1.0, 2.0, 3.0, 4.0])),
        npy_bytes(
            ">f4",
            false,
            "(3,)",
            &[0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0],
        ),
        npy_bytes("<f8", false, "()", &f64_le(&[7.0])),
    ];
    let p = Path::new("f.npy");
    // float32 data widens to twice its bytes, and Fortran order is copied once.
    fuzz(
        "npy",
        cases(1500),
        2,
        inputs(valid.clone()),
        |n| 8 * n + 16 * KIB,
        |b| {
            let _ = parse_npy(b, p);
        },
    );
    let file = TempFile::new("npy");
    fuzz(
        "npy-file",
        cases(300),
        3,
        inputs(valid),
        |n| 8 * n + 16 * KIB,
        |b| {
            let _ = read_npy(file.with(b));
        },
    );
}

#[test]
fn fuzz_idx() {
    let images = idx(0x803, &[2, 3, 3], &(0..18).collect::<Vec<u8>>());
    let labels = idx(0x801, &[2], &[1, 7]);
    let valid = vec![images.clone(), labels.clone(), gzip(&images), gzip(&labels)];
    let file = TempFile::new("idx");
    let bound = |n: usize| 2100 * n + 256 * KIB; // gzip expands by at most 1032:1
    fuzz("idx", cases(400), 4, inputs(valid), bound, |b| {
        let p = file.with(b);
        let _ = dlm_tasks::data::read_idx_images(p);
        let _ = dlm_tasks::data::read_idx_labels(p);
    });
}

#[test]
fn fuzz_cifar() {
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|j| (j % 251) as u8));
        r
    };
    let valid = vec![[record(3), record(9)].concat(), record(0)];
    let file = TempFile::new("cifar");
    // The bytes, then eight bytes per pixel.
    fuzz(
        "cifar",
        cases(200),
        5,
        inputs(valid),
        |n| 20 * n + 64 * KIB,
        |b| {
            let _ = dlm_tasks::data::read_cifar_batch(file.with(b));
        },
    );
}

fn mlp_bytes(adam: bool) -> Vec<u8> {
    let opt = if adam {
        Optimizer::adam(1e-3)
    } else {
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
        }
    };
    Mlp::new(&[2, 3, 1], Activation::Relu, Activation::Softplus, opt, 1)
        .unwrap()
        .to_bytes()
}

#[test]
fn fuzz_model_files_and_mlp_weights() {
    let mut m = ModelFile::default();
    m.header.insert("task".into(), "sort".into());
    m.header.insert("n".into(), "3".into());
    m.header.insert("mu".into(), "mlp:sizes=1-3-3".into());
    m.sections.push(("mu".into(), mlp_bytes(true)));
    m.sections.push(("sigma".into(), mlp_bytes(false)));
    let valid = vec![m.to_bytes(), ModelFile::default().to_bytes()];
    let p = Path::new("m.dlm");
    fuzz(
        "model-file",
        cases(1000),
        6,
        inputs(valid),
        |n| 4 * n + 16 * KIB,
        |b| {
            if let Ok(m) = ModelFile::from_bytes(b, p) {
                for (_, s) in &m.sections {
                    let _ = Mlp::from_bytes(s);
                }
                let _ = m.parse::<usize>("n", p);
            }
        },
    );
    let valid = vec![mlp_bytes(true), mlp_bytes(false)];
    // The stored vectors, each copied once into the network's tensors.
    fuzz(
        "mlp-weights",
        cases(1000),
        7,
        inputs(valid),
        |n| 8 * n + 16 * KIB,
        |b| {
            let _ = Mlp::from_bytes(b);
        },
    );
}

#[test]
fn fuzz_structured_npz() {
    let x = npy_bytes("<f8", false, "(5, 2)", &f64_le(&[0.5; 10]));
    let truth = npy_bytes("<i8", false, "(5, 1)", &i64_le(&[0, 1, 2, 0, 1]));
    let shape = npy_bytes("<i8", false, "(1,)", &i64_le(&[3]));
    let entries = [("x", x), ("truth", truth), ("shape", shape)];
    let small = npz(&entries, false);
    assert!(
        StructuredData::from_reader(
            Cursor::new(small.clone()),
            Path::new("d.npz"),
            TestSplit::default(),
            0
        )
        .is_ok(),
        "the seed file loads"
    );
    let real = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grid-path-plugin/data/paths.npz"),
    )
    .unwrap();
    let valid = vec![small, npz(&entries, true), real];
    // Deflated entries expand by at most 1032:1; then one f64 per value.
    let bound = |n: usize| 4200 * n + 1024 * KIB;
    fuzz("structured-npz", cases(200), 8, inputs(valid), bound, |b| {
        let _ = StructuredData::from_reader(
            Cursor::new(b.to_vec()),
            Path::new("d.npz"),
            TestSplit::default(),
            0,
        );
    });
}

#[test]
fn fuzz_component_specs() {
    let valid: Vec<Vec<u8>> = [
        "matching:algo=km,warm=false",
        "gumbel:variance=3",
        "mlp:sizes=1-32-10,opt=adam,lr=0.1,seed=3",
        "topk:k=2",
        " a : x = 1 , y=2,",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz(
        "spec",
        cases(2000),
        9,
        inputs(valid),
        |n| 64 * n + 16 * KIB,
        |b| {
            let text = String::from_utf8_lossy(b);
            let Ok(spec) = text.parse::<Spec>() else {
                return;
            };
            // What parses prints as text that parses to the same spec.
            let again: Spec = spec.to_string().parse().expect("a printed spec parses");
            assert_eq!(again, spec);
            let c = spec.config();
            for key in spec.options.keys() {
                let _ = c.f64(key, 0.0);
                let _ = c.usize(key, 0);
                let _ = c.u64(key, 0);
                let _ = c.bool(key, false);
                let _ = c.choice(key, "a", &["a", "b"]);
            }
            let _ = c.finish();
        },
    );
}

#[test]
fn mutations_change_the_input() {
    // The generator is not degenerate: most mutated files differ from the valid one.
    let valid = b"0123456789abcdef".to_vec();
    let mut runner = runner(200, 0);
    let strategy = prop::collection::vec(mutation(), 1..8);
    let mut changed = 0;
    for _ in 0..200 {
        let m = strategy.new_tree(&mut runner).unwrap().current();
        changed += usize::from(apply(&valid, &m) != valid);
    }
    assert!(changed > 150, "{changed}");
}
