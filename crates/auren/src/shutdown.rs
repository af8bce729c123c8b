//! One shutdown signal for every long-running piece, and a way to wait until they have drained.
//!
//! The composition root makes one [`Shutdown`]; every listener, worker and watcher gets a clone
//! (or spawns itself through [`Shutdown::spawn`]) and stops when it fires: the HTTP server stops
//! accepting and finishes in-flight requests, the bridge checkpoints what it holds, the config
//! watchers end. [`Shutdown::drain`] then waits for every tracked task, so the process exits only
//! once their work is durable. Modelled on tokio-rs/mini-redis `src/shutdown.rs`, with
//! tokio-util's cancellation token and task tracker doing the bookkeeping.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every holder to stop. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown was triggered (at once if it already was).
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Runs `task` until it ends, tracked so that [`Shutdown::drain`] waits for it. The task
    /// itself decides how to stop: it selects on [`Shutdown::wait`] and drains its own work.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %format!("{e:#}"), "task stopped with an error");
            }
        })
    }

    /// Triggers shutdown and waits up to `timeout` for every tracked task to finish. Returns
    /// false when some did not finish in time.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.trigger();
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
    }

    /// Triggers shutdown on SIGINT or SIGTERM; spawned once by a command that runs until stopped.
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = os_signal() => {
                    tracing::info!("shutdown signal received; draining");
                    me.trigger();
                }
                _ = me.wait() => {}
            }
        });
    }
}

async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tasks_that_finish_their_work() {
        let s = Shutdown::new();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let me = s.clone();
        s.spawn("worker", async move {
            me.wait().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        assert!(s.drain(Duration::from_secs(5)).await);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn drain_reports_a_task_that_does_not_stop() {
        let s = Shutdown::new();
        s.spawn("stuck", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(!s.drain(Duration::from_millis(100)).await);
    }
}
