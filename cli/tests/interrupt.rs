//! Clean interrupts of `dlm train`, with the real binary and real signals: the first SIGINT
//! (or SIGTERM) finishes the current step, writes the checkpoint and the model, prints the
//! partial results (JSON `partial: true`) and exits 130 (143); a second one exits at once.
//! No temporary file survives, and the checkpoint resumes exactly.
#![cfg(unix)]

mod common;
use common::{files, ok, s};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A training run in the background whose stderr is read line by line (progress every epoch).
struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let mut child = common::dlm_command(args)
            .env("DLM_PROGRESS_INTERVAL", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dlm");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` (at most 60 s).
    fn wait_for(&mut self, needle: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let hit = l.contains(needle);
                self.stderr.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!("no '{needle}' on stderr: {:?}", self.stderr);
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit; returns the code, stdout and the rest of stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.stderr.extend(self.lines.try_iter());
        // The reader thread ends with the pipe; collect what it still sends.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.stderr.push(l);
        }
        (out.status.code(), stdout, self.stderr.join("\n"))
    }
}

/// The number after `key=` in a checkpoint's header.
fn header_u64(path: &Path, key: &str) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    text.split(&format!("\n{key}="))
        .nth(1)
        .and_then(|t| t.split('\n').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
}

#[test]
fn sigint_checkpoints_saves_prints_partial_json_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (c, m) = (dir.path().join("c.ckpt"), dir.path().join("m.dlm"));
    // A fixed training set of 200 sequences in batches of 10: 20 steps an epoch, so the
    // signal usually lands inside an epoch.
    let base = [
        "train",
        "--n",
        "5",
        "--train-size",
        "200",
        "--patience",
        "0",
        "--test-size",
        "100",
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--epochs",
        "100000",
        "--checkpoint",
        s(&c),
        "--save",
        s(&m),
        "--json",
    ]);
    let mut run = Run::start(&args);
    run.wait_for("epoch 2 ");
    run.signal(libc::SIGINT);
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(stderr.contains("dlm train --resume"), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(j["partial"], true);
    assert_eq!(j["interrupted_by"], "SIGINT");
    assert!(
        j["test"]["prop_wrong"].is_number(),
        "partial results evaluated"
    );
    // Only the two outputs: no temporary or probe file.
    assert_eq!(files(dir.path()), ["c.ckpt", "m.dlm"]);
    // The model loads; the checkpoint continues exactly like an uninterrupted run.
    ok(&["eval", "--load", s(&m), "--test-size", "100"]);
    let done = header_u64(&c, "epochs_done");
    assert_eq!(j["epochs_run"].as_u64(), Some(done));
    let total = (done + 2).to_string();
    let (a, b) = (dir.path().join("a.dlm"), dir.path().join("b.dlm"));
    let resumed = ok(&[
        "train",
        "--resume",
        s(&c),
        "--epochs",
        &total,
        "--save",
        s(&b),
        "--json",
        "--quiet",
    ]);
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--epochs", &total, "--save", s(&a), "--json", "--quiet"]);
    let straight = ok(&args);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    let strip = |o: &Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for k in ["train_seconds", "seconds_per_epoch"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(strip(&resumed), strip(&straight));
}

#[test]
fn sigterm_exits_143_without_a_checkpoint_but_with_results() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.dlm");
    let mut run = Run::start(&[
        "train",
        "--n",
        "4",
        "--epochs",
        "100000",
        "--patience",
        "0",
        "--test-size",
        "50",
        "--save",
        s(&m),
        "--json",
    ]);
    run.wait_for("epoch 1 ");
    run.signal(libc::SIGTERM);
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("no checkpoint"), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (j["partial"].clone(), j["interrupted_by"].clone()),
        (true.into(), "SIGTERM".into())
    );
    assert_eq!(files(dir.path()), ["m.dlm"]);
}

#[test]
fn a_second_sigint_exits_at_once_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let (c, m) = (dir.path().join("c.ckpt"), dir.path().join("m.dlm"));
    // After the first signal, the final evaluation on 10^6 sequences takes long.
    let mut run = Run::start(&[
        "train",
        "--n",
        "4",
        "--epochs",
        "100000",
        "--patience",
        "0",
        "--test-size",
        "1000000",
        "--checkpoint",
        s(&c),
        "--save",
        s(&m),
        "--json",
    ]);
    run.wait_for("epoch 1 ");
    run.signal(libc::SIGINT);
    run.wait_for("interrupted by SIGINT");
    let t0 = Instant::now();
    run.signal(libc::SIGINT);
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        stdout.is_empty(),
        "no results after the second signal: {stdout}"
    );
    // Checkpoint and model were written before the evaluation began.
    assert_eq!(files(dir.path()), ["c.ckpt", "m.dlm"]);
    // Both are complete: the checkpoint evaluates like a model, and so does the model.
    for p in [&c, &m] {
        ok(&["eval", "--load", s(p), "--test-size", "50"]);
    }
}
