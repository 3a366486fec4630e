//! Group commit: a request waits until its writes are flushed, and one
//! flush serves every request that arrived while the last one ran.

use super::error::ApiError;
use crate::storage::Storage;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Committer {
    /// Start the flusher task on the current runtime.
    pub fn start(storage: Arc<dyn Storage>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let storage = storage.clone();
                let result = tokio::task::spawn_blocking(move || storage.flush())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                metrics::histogram!("kefu_flush_batch_size").record(batch.len() as f64);
                for waiter in batch {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Committer { tx }
    }

    /// Wait until everything written before this call is durable.
    pub async fn durable(&self) -> Result<(), ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| ApiError::Storage("flusher stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::Storage(e)),
            Err(_) => Err(ApiError::Storage("flusher stopped".into())),
        }
    }
}
