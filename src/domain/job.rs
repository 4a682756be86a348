//! Job states and the single place that decides which moves are legal.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job stands. The arrows are one-way (SPEC §2):
///
/// ```text
/// pending ──► processing ──► completed | failed | canceled
///    └──► failed | canceled | unconfirmed
/// unconfirmed ──► processing | failed | canceled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Stored, not yet accepted by the vendor (including waiting for a retry).
    Pending,
    /// The vendor accepted the job and has not finished it.
    Processing,
    /// A submit was sent and its outcome is unknown; never resubmitted automatically.
    Unconfirmed,
    /// Printed.
    Completed,
    /// Will not print; `error` says why.
    Failed,
    /// Canceled by a caller (or by the vendor on the caller's behalf).
    Canceled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Processing,
        JobState::Unconfirmed,
        JobState::Completed,
        JobState::Failed,
        JobState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Processing => "processing",
            JobState::Unconfirmed => "unconfirmed",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Canceled
        )
    }

    /// The transition table. Staying in the same non-terminal state is not a transition
    /// (callers record such refinements as events without a state change).
    pub fn can_move_to(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Pending, Processing | Failed | Canceled | Unconfirmed)
                | (Processing, Completed | Failed | Canceled)
                | (Unconfirmed, Processing | Completed | Failed | Canceled)
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked move from one state to another. The only way to build one is
/// [`Transition::new`], so code holding a `Transition` holds a legal move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    from: JobState,
    to: JobState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

impl Transition {
    pub fn new(from: JobState, to: JobState) -> Result<Transition, TransitionError> {
        if from.can_move_to(to) {
            Ok(Transition { from, to })
        } else {
            Err(TransitionError { from, to })
        }
    }

    pub fn from(&self) -> JobState {
        self.from
    }

    pub fn to(&self) -> JobState {
        self.to
    }
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Api,
    Dispatcher,
    Reconciler,
    Poller,
    Callback,
    /// The WeCom bridge: imports, WeCom pushes and reports back to WeCom.
    Wecom,
    /// A person settling what the gateway could not (`POST /v1/jobs/{id}/resolve`).
    Operator,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Api => "api",
            EventSource::Dispatcher => "dispatcher",
            EventSource::Reconciler => "reconciler",
            EventSource::Poller => "poller",
            EventSource::Callback => "callback",
            EventSource::Wecom => "wecom",
            EventSource::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<EventSource> {
        [
            EventSource::Api,
            EventSource::Dispatcher,
            EventSource::Reconciler,
            EventSource::Poller,
            EventSource::Callback,
            EventSource::Wecom,
            EventSource::Operator,
        ]
        .into_iter()
        .find(|source| source.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::{self, *};
    use super::Transition;

    const ALLOWED: [(JobState, JobState); 11] = [
        (Pending, Processing),
        (Pending, Failed),
        (Pending, Canceled),
        (Pending, Unconfirmed),
        (Processing, Completed),
        (Processing, Failed),
        (Processing, Canceled),
        (Unconfirmed, Processing),
        (Unconfirmed, Completed),
        (Unconfirmed, Failed),
        (Unconfirmed, Canceled),
    ];

    /// A named test per forbidden move, so a failure names the move.
    macro_rules! forbidden {
        ($($name:ident: $from:ident -> $to:ident,)*) => {
            mod forbidden {
                use super::super::{JobState::*, Transition};
                $(
                    #[test]
                    fn $name() {
                        assert!(Transition::new($from, $to).is_err());
                    }
                )*
            }
        };
    }

    forbidden! {
        pending_to_pending: Pending -> Pending,
        pending_to_completed: Pending -> Completed,
        processing_to_pending: Processing -> Pending,
        processing_to_processing: Processing -> Processing,
        processing_to_unconfirmed: Processing -> Unconfirmed,
        unconfirmed_to_pending: Unconfirmed -> Pending,
        unconfirmed_to_unconfirmed: Unconfirmed -> Unconfirmed,
        completed_to_pending: Completed -> Pending,
        completed_to_processing: Completed -> Processing,
        completed_to_unconfirmed: Completed -> Unconfirmed,
        completed_to_completed: Completed -> Completed,
        completed_to_failed: Completed -> Failed,
        completed_to_canceled: Completed -> Canceled,
        failed_to_pending: Failed -> Pending,
        failed_to_processing: Failed -> Processing,
        failed_to_unconfirmed: Failed -> Unconfirmed,
        failed_to_completed: Failed -> Completed,
        failed_to_failed: Failed -> Failed,
        failed_to_canceled: Failed -> Canceled,
        canceled_to_pending: Canceled -> Pending,
        canceled_to_processing: Canceled -> Processing,
        canceled_to_unconfirmed: Canceled -> Unconfirmed,
        canceled_to_completed: Canceled -> Completed,
        canceled_to_failed: Canceled -> Failed,
        canceled_to_canceled: Canceled -> Canceled,
    }

    #[test]
    fn every_allowed_transition_is_accepted() {
        for (from, to) in ALLOWED {
            assert!(Transition::new(from, to).is_ok(), "{from} -> {to}");
        }
    }

    /// One assertion per forbidden pair: all 36 pairs minus the 11 allowed ones.
    #[test]
    fn every_other_transition_is_refused() {
        let mut refused = 0;
        for from in JobState::ALL {
            for to in JobState::ALL {
                if ALLOWED.contains(&(from, to)) {
                    continue;
                }
                let err = Transition::new(from, to).expect_err("must be refused");
                assert_eq!((err.from, err.to), (from, to));
                refused += 1;
            }
        }
        assert_eq!(refused, 25);
    }

    #[test]
    fn terminal_states_never_change() {
        for from in [Completed, Failed, Canceled] {
            assert!(from.is_terminal());
            for to in JobState::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("done"), None);
    }
}
