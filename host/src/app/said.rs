//! A background worker's failures said once: a worker that fails every
//! tick for as long as storage fails logs when its error starts or
//! changes, and once when it works again — not at every tick.

use std::sync::Mutex;

/// What a worker last said went wrong.
#[derive(Default)]
pub struct Said(Mutex<Option<String>>);

impl Said {
    /// `what` failed with `error`: logged unless it is what was said last.
    pub fn failed(&self, what: &'static str, error: &dyn std::fmt::Display) {
        let error = error.to_string();
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(error.as_str()) {
            tracing::error!(%error, "{what}");
            *last = Some(error);
        }
    }

    /// It worked: say so if it had failed.
    pub fn worked(&self, what: &'static str) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = last.take() {
            tracing::info!(was = %error, "{what} works again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_is_said_once_until_it_works_again() {
        let said = Said::default();
        said.failed("reading", &"disk full");
        assert_eq!(said.0.lock().unwrap().as_deref(), Some("disk full"));
        said.failed("reading", &"disk full");
        said.worked("reading");
        assert_eq!(*said.0.lock().unwrap(), None);
    }
}
