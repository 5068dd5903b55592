//! `dlm`: learn randomly perturbed structured predictors with direct loss minimization.
//!
//! Run `dlm --help` for the commands and `dlm COMMAND --help` for their options.

mod args;
mod bench;
mod common;
mod knn;
mod limits;
mod outputs;
mod plot;
mod run;
mod signals;
mod solve;
mod structured;
mod train;
mod verify;

use clap::{Args, CommandFactory, FromArgMatches, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Learn randomly perturbed structured predictors with direct loss minimization (DLM).
///
/// A network mu(x) scores the parts of a discrete structure (a matching, the k nearest
/// neighbours, a class); a second network sigma(x) scales Gumbel (or other) noise; the DLM
/// estimator differentiates the expected task loss through an ordinary solver, with two solver
/// calls per noise draw. Structures, noise models, losses and scorers come from plugins: the
/// built-in ones, shared libraries named with --plugin, and those in DLM_PLUGIN_PATH.
#[derive(clap::Parser, Debug)]
#[command(name = "dlm", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Load a plugin library (repeatable); also read from DLM_PLUGIN_PATH (':'-separated files
    /// or directories).
    #[arg(long = "plugin", global = true, value_name = "PATH")]
    plugins: Vec<PathBuf>,

    /// Worker threads for batched solving (default: all cores). Results do not depend on it.
    #[arg(long, global = true, env = "DLM_THREADS", value_name = "N")]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the registered structures, noise models, losses and scorers, and where each came from.
    Plugins(solve::PluginsArgs),
    /// Solve one structured argmax problem (or a batch) from a .npy or .csv file; JSON result.
    Solve(solve::SolveArgs),
    /// Draw perturb-and-MAP samples for given potentials and report their frequencies.
    Sample(solve::SampleArgs),
    /// Check the Gumbel-max identities and the DLM gradient against finite differences.
    Verify(verify::VerifyArgs),
    /// Train a perturbed predictor (sorting by matching, k-NN, any structure on a data file) with
    /// DLM.
    Train(Box<args::TrainArgs>),
    /// Evaluate a saved model on a fresh test set.
    Eval(args::EvalArgs),
    /// Benchmark the solvers.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `dlm train --resume` must know which options were given (not defaulted).
    if let (Command::Train(a), Some(("train", sub))) = (&mut cli.command, matches.subcommand()) {
        let cmd = args::TrainArgs::augment_args(clap::Command::new("train"));
        a.given = args::given_options(&cmd, sub);
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = cli.threads {
        if t == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        pool = pool.num_threads(t);
    }
    let pool = match pool.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start the worker threads: {e}");
            return ExitCode::from(2);
        }
    };
    // Run the command on a worker of the pool: parallel loops then start where they are,
    // without a cross-thread hand-off per batch (measured: 300 -> see docs/results.md).
    match pool.install(|| run(&cli.plugins, cli.command)) {
        Ok(code) => code,
        // The reader of stdout went away (`dlm plugins | head -1`): end quietly.
        Err(e) if common::is_closed_stdout(&e) => ExitCode::from(common::CLOSED_STDOUT_EXIT),
        Err(e) => {
            eprintln!("error: {e}{}", cli_hint(&e));
            ExitCode::from(2)
        }
    }
}

/// The engine's errors do not know the command line; this adds the flag that fixes them.
fn cli_hint(e: &dlm_core::DlmError) -> &'static str {
    match e {
        dlm_core::DlmError::UnknownComponent { .. } => {
            " (--plugin PATH or DLM_PLUGIN_PATH; `dlm plugins` lists what is registered)"
        }
        dlm_core::DlmError::Unsupported { what, .. } if what.starts_with("device") => {
            " (--device cpu)"
        }
        _ => "",
    }
}

fn run(plugins: &[PathBuf], command: Command) -> dlm_core::Result<ExitCode> {
    let reg = common::registry(plugins)?;
    match command {
        Command::Plugins(a) => solve::plugins(&reg, &a),
        Command::Solve(a) => solve::solve(&reg, &a),
        Command::Sample(a) => solve::sample(&reg, &a),
        Command::Verify(a) => verify::verify(&reg, &a),
        Command::Train(a) => {
            limits::check_train(&a)?;
            train::train(&reg, &a)
        }
        Command::Eval(a) => train::eval(&reg, &a),
        Command::Bench(a) => bench::bench(&reg, &a),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Clap's own consistency checks (clashing option names between global and subcommand
    /// options, bad defaults) run here rather than as a panic at the user's first call.
    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
