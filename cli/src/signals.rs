//! SIGINT and SIGTERM during `dlm train`: the handlers feed `dlm_tasks::interrupt`, whose state
//! machine decides between "ask training to stop" (the first signal once training runs) and
//! "exit now" (any other), never in the middle of a file write.

/// Installs the handlers (once; later calls do nothing). Where that fails, the default
/// behaviour (ending the process) stays.
pub(crate) fn install() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // SAFETY: the action only does atomic operations (on_signal) and `_exit`, both
                // async-signal-safe.
                let installed = unsafe {
                    signal_hook::low_level::register(sig, move || {
                        if let dlm_tasks::interrupt::Action::Exit(code) =
                            dlm_tasks::interrupt::on_signal(sig)
                        {
                            signal_hook::low_level::exit(code);
                        }
                    })
                };
                if let Err(e) = installed {
                    eprintln!(
                        "warning: cannot handle signal {sig} ({e}); an interrupt will lose the run"
                    );
                }
            }
        });
    }
}

/// The conventional name of a signal number.
pub(crate) fn name(sig: i32) -> String {
    match sig {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        s => format!("signal {s}"),
    }
}
