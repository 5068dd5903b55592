//! Clean interrupts: the state machine between signal handlers and file writes.
//!
//! The command line installs handlers for SIGINT and SIGTERM that call [`on_signal`] (which
//! only touches atomics, so it is safe in a signal handler) and do what it returns:
//!
//! * while a training run is [`arm`]ed, the **first** signal is only recorded: training polls
//!   [`requested`] between steps, stops, writes its checkpoint and results, and exits with
//!   `128 + signal`;
//! * any further signal, or a signal before the run is armed, exits **at once** with
//!   `128 + signal`, except that it never cuts a file write short: writes go through
//!   [`while_writing`] (as [`crate::model_file::write_atomic`] does), and a signal that comes
//!   during one makes the writer exit as soon as that write has finished or been rolled back.
//!   A write never starts once the process has decided to exit. So an interrupt never leaves
//!   a temporary file behind.
//!
//! One word holds the whole state (writers in progress, "exit pending", "exiting"), so the
//! handler and the writers cannot both miss each other.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// Set once the process has committed to exiting (no write may start).
const EXITING: u32 = 1 << 31;
/// Set when an exit was asked for during a write; the last writer out exits.
const PENDING: u32 = 1 << 30;
/// The number of writes in progress.
const COUNT: u32 = PENDING - 1;

static STATE: AtomicU32 = AtomicU32::new(0);
static EXIT_CODE: AtomicI32 = AtomicI32::new(0);
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);

/// What a signal handler must do after [`on_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return: the signal was recorded, or a write in progress will exit when done.
    Continue,
    /// Exit now with this code (with `_exit`, which is safe in a handler).
    Exit(i32),
}

/// From now on the first signal asks training to stop instead of ending the process.
pub fn arm() {
    ARMED.store(true, Ordering::SeqCst);
}

/// The signal that asked training to stop, if one did.
pub fn requested() -> Option<i32> {
    match FIRST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The handler's part for signal number `sig`; only atomics, so async-signal-safe.
pub fn on_signal(sig: i32) -> Action {
    if ARMED.load(Ordering::SeqCst)
        && FIRST_SIGNAL
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        return Action::Continue;
    }
    let code = 128 + sig;
    loop {
        let s = STATE.load(Ordering::SeqCst);
        if s & EXITING != 0 {
            // Another handler (or writer) is exiting already.
            return Action::Continue;
        }
        if s & COUNT == 0 {
            if STATE
                .compare_exchange(s, EXITING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Action::Exit(code);
            }
        } else {
            EXIT_CODE.store(code, Ordering::SeqCst);
            if STATE
                .compare_exchange(s, s | PENDING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Action::Continue;
            }
        }
    }
}

/// Runs `write` (which must create, fill and rename or remove its own temporary file) so
/// that no signal ends the process in the middle of it: an exit asked for meanwhile happens
/// right after it. If the process is already exiting, this waits for the end.
pub fn while_writing<R>(write: impl FnOnce() -> R) -> R {
    loop {
        let s = STATE.load(Ordering::SeqCst);
        if s & (EXITING | PENDING) != 0 {
            finish_exit();
        }
        if STATE
            .compare_exchange(s, s + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            break;
        }
    }
    let r = write();
    let prev = STATE.fetch_sub(1, Ordering::SeqCst);
    if prev & PENDING != 0 && (prev & COUNT) == 1 {
        finish_exit();
    }
    r
}

/// Exits with the pending code once no write is in progress (or waits for whoever exits).
fn finish_exit() -> ! {
    loop {
        let s = STATE.load(Ordering::SeqCst);
        if s & EXITING == 0
            && s & COUNT == 0
            && STATE
                .compare_exchange(s, EXITING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            std::process::exit(EXIT_CODE.load(Ordering::SeqCst));
        }
        // Another thread is writing (it will exit when done) or exiting already.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test touching the process-wide state (so tests cannot race on it). The exits
    /// themselves are tested with the real binary (cli/tests/interrupt.rs).
    #[test]
    fn first_signal_is_recorded_and_later_ones_wait_for_writes() {
        // Not armed: exit at once, and no write may start after that decision.
        assert_eq!(on_signal(2), Action::Exit(130));
        assert_eq!(STATE.load(Ordering::SeqCst), EXITING);
        STATE.store(0, Ordering::SeqCst);
        arm();
        assert_eq!(on_signal(15), Action::Continue);
        assert_eq!(requested(), Some(15));
        // Writes in progress: the next signal only marks the exit as pending.
        assert_eq!(while_writing(|| STATE.load(Ordering::SeqCst)), 1);
        STATE.store(2, Ordering::SeqCst);
        assert_eq!(on_signal(2), Action::Continue);
        assert_eq!(STATE.load(Ordering::SeqCst), 2 | PENDING);
        assert_eq!(EXIT_CODE.load(Ordering::SeqCst), 130);
        // While exiting, further signals do nothing more.
        STATE.store(EXITING, Ordering::SeqCst);
        assert_eq!(on_signal(2), Action::Continue);
        STATE.store(0, Ordering::SeqCst);
    }
}
