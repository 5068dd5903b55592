//! The table of bad inputs, `docs/bad-inputs.md`, generated from the cases this test runs.
//!
//! Every case runs the real `dlm` binary, asserts its exit code and a key phrase of its
//! message, and contributes one row (input, exit code, first line of the message) to the
//! table. With `DLM_UPDATE_DOCS=1` the test rewrites the document; otherwise it fails when the
//! committed document differs from what it would write, so the table stays true.

mod common;
use common::grid_path_plugin;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a case expects and shows.
struct Case {
    /// The class of defect (a heading of the table).
    class: &'static str,
    /// The input, as a user would type it (`$DIR` is the case's working directory).
    input: String,
    /// The arguments of `dlm`.
    args: Vec<String>,
    /// Where stdout goes.
    stdout: Sink,
    /// The expected exit code.
    exit: i32,
    /// A phrase the message (stderr, or stdout for a success) must contain.
    phrase: &'static str,
    /// For a success: what to show from the JSON on stdout (its keys, in order).
    show: &'static [&'static str],
}

/// Where a case's stdout goes.
#[derive(Clone, Copy, PartialEq)]
enum Sink {
    /// Captured.
    Pipe,
    /// A pipe whose reader is closed before `dlm` writes.
    ClosedPipe,
    /// `/dev/full` (every write fails with "no space left on device").
    Full,
}

fn case(class: &'static str, input: &str, args: &[&str], exit: i32, phrase: &'static str) -> Case {
    Case {
        class,
        input: input.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdout: Sink::Pipe,
        exit,
        phrase,
        show: &[],
    }
}

/// `dlm ARGS` as a command line (with the arguments as given).
fn command(args: &[&str]) -> String {
    let quote = |a: &&str| {
        if a.is_empty() || a.contains([' ', '\'', '"', '(', ')', '|']) {
            format!("'{a}'")
        } else {
            a.to_string()
        }
    };
    let mut s = String::from("dlm");
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

/// A file's contents for the input column.
fn shown(text: &str) -> String {
    text.replace('\n', "\\n")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn dlm() -> Command {
    let mut c = common::dlm_command(&[]);
    c.env("DLM_THREADS", "2");
    c
}

fn run(dir: &Path, args: &[String], sink: Sink) -> Outcome {
    let mut c = dlm();
    c.args(args).current_dir(dir).stderr(Stdio::piped());
    match sink {
        Sink::Pipe | Sink::ClosedPipe => {
            c.stdout(Stdio::piped());
        }
        Sink::Full => {
            c.stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        }
    }
    let mut child = c.spawn().expect("run dlm");
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        if sink == Sink::ClosedPipe {
            // Close the only reader at once: dlm is still starting up, so its first write
            // finds the pipe closed.
            drop(out);
        } else {
            out.read_to_string(&mut stdout).unwrap();
        }
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

fn npy(shape: &str, values: &[f64]) -> Vec<u8> {
    let mut h = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    for x in values {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// The sort model header `dlm eval` needs, with `n` and `mu` as given.
fn sort_model(n: &str, mu_bytes: Vec<u8>) -> Vec<u8> {
    let mut m = dlm_tasks::model_file::ModelFile::default();
    for (k, v) in [
        ("task", "sort"),
        ("n", n),
        ("structure", "matching"),
        ("noise", "gumbel"),
        ("loss", "hamming"),
        ("mu", "mlp:sizes=1-2-3"),
        ("sigma_mode", "none"),
        ("sigma_net", "mlp:sizes=3-1"),
        ("batch", "10"),
        ("draws", "5"),
        ("seed", "0"),
        ("epsilon", "-12"),
    ] {
        m.header.insert(k.into(), v.into());
    }
    m.sections.push(("mu".into(), mu_bytes));
    m.to_bytes()
}

/// Writes the input files of the cases into `dir`.
fn prepare(dir: &Path) {
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    for (name, text) in CSV_FILES {
        w(name, text.as_bytes());
    }
    w("latin1.csv", b"1,2\n3,\xe9\n");
    w("huge.npy", &npy("(100000, 100000)", &[1.0, 2.0, 3.0, 4.0]));
    w("nan.npy", &npy("(2,)", &[1.0, f64::NAN]));
    w("short.npy", &npy("(2, 2)", &[1.0, 2.0, 3.0])[..70]);
    w("huge-n.dlm", &sort_model("100000000", vec![]));
    let mut model = sort_model("3", vec![1, 2, 3]);
    let at = model.len() - 3 - 8;
    model[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    w("huge-section.dlm", &model);
    let mnist = dir.join("data/mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (name, bytes) in [
        (
            "train-images-idx3-ubyte",
            idx(0x803, &[60000, 28, 28], &[0; 10]),
        ),
        ("train-labels-idx1-ubyte", idx(0x801, &[60000], &[0; 10])),
        (
            "t10k-images-idx3-ubyte",
            idx(0x803, &[1, 28, 28], &[0; 784]),
        ),
        ("t10k-labels-idx1-ubyte", idx(0x801, &[1], &[0])),
    ] {
        std::fs::write(mnist.join(name), bytes).unwrap();
    }
    std::fs::copy(grid_path_plugin(), dir.join("libdlm_example_grid_path.so")).unwrap();
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
}

const CSV_FILES: &[(&str, &str)] = &[
    ("t.csv", "9x\n1\n2\n3\n"),
    ("one-bad.csv", "5x\n"),
    ("header.csv", "score\n1\n2\n3\n"),
    ("nan.csv", "1,2\nNaN,0\n"),
    ("inf.csv", "1,inf\n"),
    ("big.csv", "1,1e400\n"),
    ("one.csv", "5\n"),
    ("late.csv", "1,2\n3,x\n"),
    ("ragged.csv", "1,2\n3\n"),
    ("empty.csv", ""),
    ("only-header.csv", "x,y\n"),
    ("rect.csv", "1,2,3\n4,5,6\n"),
];

fn csv_input(file: &str, args: &[&str]) -> String {
    let text = CSV_FILES
        .iter()
        .find(|(n, _)| *n == file)
        .map_or("", |(_, t)| t);
    format!("`{}` with {file} = `{}`", command(args), shown(text))
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let csv =
        |file: &str, s: &str, exit: i32, phrase: &'static str, show: &'static [&'static str]| {
            let args = ["solve", "-s", s, "-i", file];
            let mut c = case("CSV", &csv_input(file, &args), &args, exit, phrase);
            c.show = show;
            c
        };
    v.push(csv(
        "t.csv",
        "argmax",
        2,
        "line 1, column 1: '9x' is not a number",
        &[],
    ));
    v.push(csv("one-bad.csv", "argmax", 2, "'5x' is not a number", &[]));
    v.push(csv(
        "header.csv",
        "argmax",
        0,
        "\"solution\"",
        &["solution"],
    ));
    let args = ["solve", "-s", "argmax", "--header", "-i", "t.csv"];
    let mut c = case("CSV", &csv_input("t.csv", &args), &args, 0, "\"solution\"");
    c.show = &["solution"];
    v.push(c);
    v.push(csv(
        "nan.csv",
        "argmax",
        2,
        "line 2, column 1: 'NaN' is not a finite number",
        &[],
    ));
    v.push(csv(
        "inf.csv",
        "argmax",
        2,
        "line 1, column 2: 'inf' is not a finite number",
        &[],
    ));
    v.push(csv("big.csv", "argmax", 2, "'1e400' overflows f64", &[]));
    v.push(csv(
        "one.csv",
        "matching",
        0,
        "\"solution\"",
        &["shape", "solution"],
    ));
    v.push(csv(
        "late.csv",
        "argmax",
        2,
        "line 2, column 2: 'x' is not a number",
        &[],
    ));
    v.push(csv(
        "ragged.csv",
        "argmax",
        2,
        "line 2 has 1 values but line 1",
        &[],
    ));
    v.push(csv("empty.csv", "argmax", 2, "is empty", &[]));
    v.push(csv(
        "only-header.csv",
        "argmax",
        2,
        "was read as a header",
        &[],
    ));
    let args = ["solve", "-s", "argmax", "-i", "latin1.csv"];
    v.push(case(
        "CSV",
        &format!("`{}` with latin1.csv = `1,2\\n3,\\xe9\\n`", command(&args)),
        &args,
        2,
        "line 2: not UTF-8",
    ));

    let floats = |args: &[&str], show: &'static [&'static str]| {
        let mut c = case(
            "Large floats",
            &format!("`{}`", command(args)),
            args,
            0,
            "\"solution\"",
        );
        c.show = show;
        c
    };
    let issue = "--potentials=-1e308,-1e307,1e308,1.7976931348623157e308";
    v.push(floats(
        &["solve", "-s", "matching", issue, "--rows", "2"],
        &["solution", "score"],
    ));
    v.push(floats(
        &["solve", "-s", "matching:algo=km", issue, "--rows", "2"],
        &["solution", "score"],
    ));
    v.push(floats(
        &[
            "solve",
            "-s",
            "matching:algo=km",
            "--potentials=0,1e308,1e308,0",
            "--rows",
            "2",
        ],
        &["solution", "score"],
    ));
    v.push(floats(
        &[
            "solve",
            "-s",
            "matching",
            "--potentials=0,1e308,1e308,0",
            "--rows",
            "2",
        ],
        &["solution", "score"],
    ));
    v.push(floats(
        &[
            "solve",
            "-s",
            "matching:algo=km",
            "--potentials=0,5e-324,1e-323,0",
            "--rows",
            "2",
        ],
        &["solution", "score"],
    ));

    let size = |input: String, args: &[&str], phrase: &'static str| {
        case("Sizes from files and flags", &input, args, 2, phrase)
    };
    let plain = |args: &[&str], phrase| size(format!("`{}`", command(args)), args, phrase);
    let args = ["solve", "-i", "huge.npy"];
    v.push(size(
        format!("`{}`, a header claiming (100000, 100000) before 4 values", command(&args)),
        &args,
        "header claims shape [100000, 100000] = 10000000000 values (80000000000 bytes), the file holds 32 bytes (4 values)",
    ));
    let args = ["solve", "-i", "short.npy"];
    v.push(size(
        format!("`{}`, a .npy file cut inside its header", command(&args)),
        &args,
        "truncated header",
    ));
    let args = ["eval", "--load", "huge-n.dlm"];
    v.push(size(
        format!(
            "`{}`, a sort model whose header says n=100000000",
            command(&args)
        ),
        &args,
        "above the limit of 10000",
    ));
    let args = ["eval", "--load", "huge-section.dlm"];
    v.push(size(
        format!("`{}`, a model section claiming 2^60 bytes", command(&args)),
        &args,
        "section 'mu'",
    ));
    let args = [
        "train",
        "--task",
        "knn",
        "--data",
        "mnist",
        "--data-dir",
        "data",
        "--epochs",
        "1",
    ];
    v.push(size(
        format!(
            "`{}`, an IDX header claiming 60000 x 28 x 28 images before 10 bytes",
            command(&args)
        ),
        &args,
        "promises 47040000 data bytes",
    ));
    v.push(plain(
        &["train", "--n", "100000000", "--epochs", "1"],
        "above the limit of 10000",
    ));
    v.push(plain(
        &["train", "--batch", "1000000000000", "--epochs", "1"],
        "--batch",
    ));
    v.push(plain(
        &["train", "--n", "1000", "--batch", "100", "--epochs", "1"],
        "--batch x --draws",
    ));
    v.push(plain(
        &["train", "--draws", "1000000000000", "--epochs", "1"],
        "--draws",
    ));
    v.push(plain(
        &["train", "--smooth", "1000000000000", "--epochs", "1"],
        "--smooth",
    ));
    v.push(plain(
        &["train", "--test-size", "1000000000000", "--epochs", "1"],
        "--test-size",
    ));
    v.push(plain(
        &["train", "--train-size", "1000000000000", "--epochs", "1"],
        "--train-size",
    ));
    v.push(plain(
        &[
            "train",
            "--mu",
            "mlp:sizes=1-32-100000000000",
            "--epochs",
            "1",
        ],
        "parameters, above the limit of 134217728",
    ));
    v.push(plain(
        &[
            "train",
            "--task",
            "knn",
            "--queries",
            "1000",
            "--candidates",
            "1000",
            "--draws",
            "1000",
            "--epochs",
            "1",
        ],
        "--queries x --candidates x --draws",
    ));
    v.push(plain(
        &["verify", "--samples", "1000000000000"],
        "--samples",
    ));
    v.push(plain(
        &["bench", "matching", "--n", "100000"],
        "above the limit of 1024",
    ));
    v.push(plain(&["bench", "topk", "--m", "100000000"], "--m"));

    let mut c = case(
        "Closed or full stdout",
        "`dlm plugins` with its stdout pipe closed by the reader before dlm writes",
        &["plugins"],
        141,
        "",
    );
    c.stdout = Sink::ClosedPipe;
    v.push(c);
    let zeros = vec!["0"; 2000].join(",");
    let pot = format!("--potentials={zeros}");
    let mut c = case(
        "Closed or full stdout",
        "`dlm sample --potentials=0,0,...(2000 zeros) --samples 20000 --top 5000` (over 64 KiB of JSON) with its stdout pipe closed",
        &["sample", &pot, "--samples", "20000", "--top", "5000"],
        141,
        "",
    );
    c.stdout = Sink::ClosedPipe;
    v.push(c);
    let mut c = case(
        "Closed or full stdout",
        "`dlm plugins > /dev/full`",
        &["plugins"],
        2,
        "No space left on device",
    );
    c.stdout = Sink::Full;
    v.push(c);
    let mut c = case(
        "Closed or full stdout",
        "`dlm solve --potentials 1,2 -s argmax > /dev/full`",
        &["solve", "--potentials", "1,2", "-s", "argmax"],
        2,
        "No space left on device",
    );
    c.stdout = Sink::Full;
    v.push(c);

    let args = [
        "sample",
        "--potentials",
        "0,0,0,0",
        "--samples",
        "1000",
        "--max-distinct",
        "2",
    ];
    let mut c = case(
        "Sample memory",
        &format!("`{}`", command(&args)),
        &args,
        0,
        "\"other\"",
    );
    c.show = &["samples", "distinct", "other"];
    v.push(c);

    let msg = |args: &[&str], exit: i32, phrase: &'static str| {
        case(
            "Messages",
            &format!("`{}`", command(args)),
            args,
            exit,
            phrase,
        )
    };
    let mut c = case(
        "Messages",
        "`dlm --plugin libdlm_example_grid_path.so plugins --json` with the library in the current directory",
        &["--plugin", "libdlm_example_grid_path.so", "plugins", "--json"],
        0,
        "grid-path",
    );
    c.show = &[];
    v.push(c);
    v.push(msg(
        &["--plugin", "libnosuch.so", "plugins"],
        2,
        "no such file: $DIR/libnosuch.so",
    ));
    v.push(msg(
        &["--plugin", "plugins", "plugins"],
        2,
        "is a directory",
    ));
    v.push(msg(
        &["sample", "--sigma", "1e308", "--potentials", "1e308,1"],
        2,
        "invalid value for sigma",
    ));
    v.push(msg(
        &["train", "--n", "0", "--epochs", "1"],
        2,
        "--n must be at least 2",
    ));
    v.push(msg(&["verify", "--sigma", "0"], 2, "--sigma"));
    v.push(msg(&["verify", "--z=-1"], 2, "--z"));
    v.push(msg(&["verify", "--sigma", "NaN"], 2, "--sigma"));

    let nan = |args: &[&str], phrase: &'static str| {
        case(
            "NaN and shapes",
            &format!("`{}`", command(args)),
            args,
            2,
            phrase,
        )
    };
    v.push(nan(
        &["solve", "-s", "argmax", "--potentials", "1,NaN"],
        "non-finite value (NaN)",
    ));
    v.push(nan(
        &["solve", "-i", "nan.npy", "-s", "argmax"],
        "non-finite value (NaN)",
    ));
    v.push(nan(
        &["solve", "-s", "matching", "--potentials", "1,2,3"],
        "shape mismatch",
    ));
    v.push(nan(
        &["solve", "-s", "matching", "-i", "rect.csv"],
        "shape mismatch",
    ));
    v.push(nan(
        &["sample", "--sigma=-1", "--potentials", "1,2"],
        "sigma",
    ));
    v
}

/// The first line of what a case printed, with the working directory written as `$DIR`.
fn message(c: &Case, o: &Outcome, dir: &str) -> String {
    let text = if c.exit == 0 && !c.show.is_empty() {
        let v: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", c.input, o.stdout));
        c.show
            .iter()
            .map(|k| format!("{k}: {}", v[*k]))
            .collect::<Vec<_>>()
            .join(", ")
    } else if c.exit == 0 {
        format!("(stdout lists {})", c.phrase)
    } else {
        o.stderr
            .lines()
            .next()
            .unwrap_or("(nothing on stderr)")
            .to_string()
    };
    text.replace(dir, "$DIR")
}

/// One markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `dlm sample` with an enormous sample count: its memory must not grow and progress must
/// show. Returns the row (input, exit, message).
fn sample_memory_row(dir: &Path) -> (String, String, String) {
    let mut child = dlm()
        .args([
            "sample",
            "--potentials",
            "0.5,0",
            "--samples",
            "1000000000000",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let early = rss(child.id());
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late = rss(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(early > 0, "read the memory of the running process");
    // The old sampler kept every solution: about 0.2 GB/s.
    assert!(
        late < early + 20_000,
        "memory grew from {early} kB to {late} kB in 3.5 s"
    );
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("sampled ") && first.contains(" of 1000000000000 ("),
        "progress on stderr: {stderr}"
    );
    // Counts and times vary from run to run: show their shape.
    let mut shape = String::new();
    let mut digits = false;
    for ch in first.chars() {
        if ch.is_ascii_digit() || (digits && ch == '.') {
            if !digits {
                shape.push('N');
            }
            digits = true;
        } else {
            digits = false;
            shape.push(ch);
        }
    }
    let shape = shape.replace("of N (", "of 1000000000000 (");
    (
        "`dlm sample --potentials 0.5,0 --samples 1000000000000`, stopped by the test after 5 s; resident memory at 1.5 s and 5 s compared (must grow by less than 20 MB)".into(),
        "killed".into(),
        format!("{shape} (once a second; memory did not grow)"),
    )
}

#[test]
fn bad_inputs_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    prepare(dir);
    let dir_text = dir.to_string_lossy().into_owned();
    let mut rows: Vec<(&'static str, String, String, String)> = Vec::new();
    let mut failures = Vec::new();
    for c in cases() {
        let o = run(dir, &c.args, c.stdout);
        let text = if c.exit == 0 { &o.stdout } else { &o.stderr };
        let normalised = text.replace(&dir_text, "$DIR");
        if o.code != Some(c.exit) || !normalised.contains(c.phrase) {
            failures.push(format!(
                "{}: exit {:?} (expected {}), expected the phrase {:?}\nstdout: {}\nstderr: {}",
                c.input, o.code, c.exit, c.phrase, o.stdout, o.stderr
            ));
            continue;
        }
        if c.exit != 0 {
            assert!(
                !o.stderr.contains("panicked"),
                "{}: a panic: {}",
                c.input,
                o.stderr
            );
        }
        rows.push((
            c.class,
            c.input.clone(),
            c.exit.to_string(),
            message(&c, &o, &dir_text),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let (input, exit, msg) = sample_memory_row(dir);
    let at = rows
        .iter()
        .position(|r| r.0 == "Sample memory")
        .expect("a sample row");
    rows.insert(at, ("Sample memory", input, exit, msg));

    let mut doc = String::from(
        "# Bad inputs\n\n\
         Generated by `cli/tests/bad_inputs.rs` from the cases it runs against the real `dlm`\n\
         binary (do not edit by hand: run `DLM_UPDATE_DOCS=1 cargo test -p dlm-cli --test\n\
         bad_inputs` after changing a message). Each row is one case: the input, the exit code\n\
         and the first line of the message on stderr (for a success, the relevant part of the\n\
         JSON on stdout). `$DIR` is the case's working directory, which holds the files named.\n\
         Exit codes: 0 success, 2 an error (with its message), 141 the reader of stdout went\n\
         away (`dlm plugins | head -1`; quiet, as for a process ended by SIGPIPE).\n",
    );
    let mut class = "";
    for (c, input, exit, msg) in &rows {
        if *c != class {
            class = c;
            doc.push_str(&format!(
                "\n## {c}\n\n| input | exit | message |\n|---|---|---|\n"
            ));
        }
        doc.push_str(&format!("| {} | {exit} | {} |\n", cell(input), cell(msg)));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bad-inputs.md");
    if std::env::var("DLM_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &doc).unwrap();
    } else {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == doc,
            "docs/bad-inputs.md differs from the cases' results; rerun with DLM_UPDATE_DOCS=1 \
             and commit it. Expected:\n{doc}"
        );
    }
}
