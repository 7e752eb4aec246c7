//! Where a lifecycle call reports its steps: the `more` replies of Start, Stop, Build …, and
//! the debug log. Passed down through a call's layers (guest/, console/, orchestrate/), never
//! looked up.

use proto::GuestState;

/// Where a lifecycle call reports its steps (a `more` reply stream), if anywhere, and whether
/// the caller asked for the guest's console output while its start or stop command runs
/// (util-vserver's `vserver NAME start` showed `rc 3`'s output; see crate::console::relay).
#[derive(Clone)]
pub struct Progress {
    tx: Option<tokio::sync::mpsc::UnboundedSender<proto::Progress>>,
    console: bool,
}

impl Progress {
    pub fn none() -> Progress {
        Progress {
            tx: None,
            console: false,
        }
    }

    pub fn channel() -> (
        Progress,
        tokio::sync::mpsc::UnboundedReceiver<proto::Progress>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Progress {
                tx: Some(tx),
                console: false,
            },
            rx,
        )
    }

    /// The same reports, with the console's output relayed or not.
    pub fn with_console(mut self, on: bool) -> Progress {
        self.console = on;
        self
    }

    /// Whether console output is wanted (and there is someone to send it to).
    pub fn wants_console(&self) -> bool {
        self.console && self.tx.is_some()
    }

    pub fn send(&self, name: &str, step: &str, message: &str, state: GuestState) {
        // The lifecycle's span (start, stop) is at this step now: the journal's STEP of every
        // line until the next one (crate::journal).
        tracing::Span::current().record("step", step);
        tracing::debug!(guest = name, step, "{message}");
        self.output(name, step, message, state);
    }

    /// A report that is not logged: console output (in the console log already).
    pub fn output(&self, name: &str, step: &str, message: &str, state: GuestState) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(proto::Progress {
                name: name.into(),
                step: step.into(),
                message: message.into(),
                state,
            });
        }
    }
}
