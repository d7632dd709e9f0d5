//! Ctrl-C and SIGTERM: they cancel the run (each running stage gets TERM, a grace, then KILL).

use tokio_util::sync::CancellationToken;

/// Ctrl-C and SIGTERM cancel the run.
pub(super) fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        cancel.cancel();
    });
}
