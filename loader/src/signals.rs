//! SIGINT/SIGTERM for a run: the first signal asks the run to stop (it lets in-flight chunk
//! transactions end, aggregates what committed, closes its row `interrupted` and mails);
//! a second one ends the process at once. A signal at any stage is remembered, never lost.

use tokio::sync::watch;

/// Whether a stop was asked for; cheap to clone into every task.
#[derive(Clone)]
pub struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    /// Installs the handlers. Call once, as early as possible.
    pub fn listen() -> Interrupt {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal().await;
            tracing::warn!("signal received: stopping after the chunks in flight (a second signal stops at once)");
            let _ = tx.send(true);
            signal().await;
            tracing::error!("second signal: exiting at once; uncommitted chunks roll back");
            std::process::exit(130);
        });
        Interrupt(rx)
    }

    /// Never fires (for commands and tests that do not listen).
    pub fn never() -> Interrupt {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Interrupt(rx)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when a stop is asked for (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the sender is gone, which only happens at process exit.
        let _ = rx.wait_for(|set| *set).await;
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
