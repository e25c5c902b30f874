//! The transaction state machine of one transactional id: the states, the
//! legal moves between them (as data), and the one function that checks a
//! move. Everything that changes a transaction's state goes through
//! [`TxnState::transition`]; the metadata and the handlers only decide
//! *which* move to ask for.

use serde::{Deserialize, Serialize};

/// The state of the transaction of one transactional id.
///
/// ```text
///   (new id)
///      │
///      ▼
///    Empty ◀──────────────────── InitProducerId ────────────────────┐
///     │ ▲ │                                                          │
///     │ └─┘ InitProducerId (epoch bump)                              │
///     │                                                              │
///     │ AddPartitions                                                │
///     ▼                                                              │
///    Ongoing ◀─┐ AddPartitions (more partitions)                     │
///     │ │ │ └──┘                                                     │
///     │ │ └── timeout, or InitProducerId ──▶ PrepareEpochFence       │
///     │ │                                    (pending mark only)     │
///     │ └── EndTxn(abort) ──────────────┐             │              │
///     │                                 ▼             │              │
///     │ EndTxn(commit)            PrepareAbort ◀──────┘              │
///     ▼                                 │ markers acked              │
///    PrepareCommit                      ▼                            │
///     │ markers acked             CompleteAbort ─────────────────────┤
///     ▼                                                              │
///    CompleteCommit ─────────────────────────────────────────────────┘
///
///    CompleteCommit, CompleteAbort ── AddPartitions ──▶ Ongoing (next transaction)
///    Empty, CompleteCommit, CompleteAbort ── idle past the expiry ──▶ Dead
/// ```
///
/// Durability: every state but [`TxnState::PrepareEpochFence`] is written
/// durably before it is applied in memory (see `TxnMetadata`'s prepare →
/// persist → complete). `PrepareEpochFence` is never stored: it marks a
/// fencing abort while its record — already in `PrepareAbort`, with the
/// bumped epoch — is being written, so a crash sees either the old `Ongoing`
/// record or the new `PrepareAbort` one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open. The producer id and epoch are valid for the next
    /// one. A transactional id enters here on its first InitProducerId and
    /// returns here on every later one.
    Empty,
    /// A transaction is open: at least one partition has been added and the
    /// producer may write to its partitions. Adding more partitions stays
    /// here.
    Ongoing,
    /// The producer asked to commit and the decision is durable: the
    /// transaction *will* commit. Commit markers are being written to every
    /// partition; nothing else may happen to this transactional id until
    /// they are all acknowledged.
    PrepareCommit,
    /// The transaction will abort (asked by the producer, or forced by the
    /// coordinator after a fence). Abort markers are being written.
    PrepareAbort,
    /// Every partition acknowledged its commit marker. The transaction is
    /// over; the producer may start the next one.
    CompleteCommit,
    /// Every partition acknowledged its abort marker. The transaction is
    /// over; the producer may start the next one.
    CompleteAbort,
    /// The coordinator is aborting an open transaction on its own initiative
    /// (timeout, or a new producer instance called InitProducerId) and has
    /// bumped the epoch to fence the old producer. Only ever a *pending*
    /// mark: the record being written is already `PrepareAbort`.
    PrepareEpochFence,
    /// The transactional id has been idle too long and is being forgotten.
    /// Terminal: its record is deleted, and a later InitProducerId starts
    /// over with a fresh producer id.
    Dead,
}

/// A move the state machine does not allow. Handlers check states before
/// asking for a move, so outside tests this is a backstop, never the normal
/// answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal transaction state transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: TxnState,
    pub to: TxnState,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::PrepareEpochFence,
        TxnState::Dead,
    ];

    /// The states this one may be entered from: the transition table, as
    /// data. Read it as "to get into `self`, you must come from one of these".
    pub const fn valid_previous_states(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            // First InitProducerId (a new id starts in Empty), or a later one
            // after a transaction ended.
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            // First AddPartitions of a transaction, or more partitions.
            Ongoing => &[Empty, Ongoing, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            // EndTxn(abort) from the producer, or the fence's abort.
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            // Only an open transaction needs fencing: in Empty/Complete* a
            // plain epoch bump fences, and Prepare* must finish first.
            PrepareEpochFence => &[Ongoing],
            // Only an id with nothing in flight may be forgotten.
            Dead => &[Empty, CompleteCommit, CompleteAbort],
        }
    }

    /// Checks the move `self -> to` and returns `to` if it is legal.
    pub fn transition(self, to: TxnState) -> Result<TxnState, IllegalTransition> {
        if to.valid_previous_states().contains(&self) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// Markers are being written: the outcome is decided and durable.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// The state a producer-driven end of an `Ongoing` transaction moves to.
    pub fn prepare_for(commit: bool) -> TxnState {
        if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort }
    }

    /// For `Prepare*` and `Complete*`: was the outcome a commit?
    pub fn outcome_commit(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit | TxnState::CompleteCommit => Some(true),
            TxnState::PrepareAbort | TxnState::CompleteAbort | TxnState::PrepareEpochFence => {
                Some(false)
            }
            TxnState::Empty | TxnState::Ongoing | TxnState::Dead => None,
        }
    }

    /// The name the admin API shows (Kafka's names, so tooling reads alike).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
            TxnState::Dead => "Dead",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TxnState::{self, *};

    /// The legal moves, written out edge by edge, independently of
    /// `valid_previous_states`, so a slip in either shows up.
    const LEGAL: &[(TxnState, TxnState)] = &[
        (Empty, Empty),
        (Empty, Ongoing),
        (Empty, Dead),
        (Ongoing, Ongoing),
        (Ongoing, PrepareCommit),
        (Ongoing, PrepareAbort),
        (Ongoing, PrepareEpochFence),
        (PrepareEpochFence, PrepareAbort),
        (PrepareCommit, CompleteCommit),
        (PrepareAbort, CompleteAbort),
        (CompleteCommit, Empty),
        (CompleteCommit, Ongoing),
        (CompleteCommit, Dead),
        (CompleteAbort, Empty),
        (CompleteAbort, Ongoing),
        (CompleteAbort, Dead),
    ];

    #[test]
    fn t10_every_pair_is_legal_exactly_when_listed() {
        // Proves: over all 8 × 8 (from, to) pairs, `transition` accepts
        // exactly the 16 listed edges and rejects the other 48 with a typed
        // error naming both states.
        let mut legal_seen = 0;
        for from in TxnState::ALL {
            for to in TxnState::ALL {
                let expected_legal = LEGAL.contains(&(from, to));
                match from.transition(to) {
                    Ok(state) => {
                        assert!(expected_legal, "{from:?} -> {to:?} must be illegal");
                        assert_eq!(state, to);
                        legal_seen += 1;
                    }
                    Err(err) => {
                        assert!(!expected_legal, "{from:?} -> {to:?} must be legal");
                        assert_eq!((err.from, err.to), (from, to));
                    }
                }
            }
        }
        assert_eq!(legal_seen, LEGAL.len());
        assert_eq!(TxnState::ALL.len() * TxnState::ALL.len(), 64);
    }

    #[test]
    fn t11_dead_is_terminal_and_prepared_states_only_complete() {
        // Proves: nothing leaves Dead, and Prepare* can only move to its own
        // Complete* (the outcome never flips once it is durable).
        for to in TxnState::ALL {
            assert!(Dead.transition(to).is_err());
        }
        let from_commit: Vec<_> =
            TxnState::ALL.into_iter().filter(|&to| PrepareCommit.transition(to).is_ok()).collect();
        assert_eq!(from_commit, vec![CompleteCommit]);
        let from_abort: Vec<_> =
            TxnState::ALL.into_iter().filter(|&to| PrepareAbort.transition(to).is_ok()).collect();
        assert_eq!(from_abort, vec![CompleteAbort]);
    }

    #[test]
    fn t12_helpers_agree_with_the_states() {
        // Proves: outcome/prepared/in-flight helpers classify every state.
        assert_eq!(TxnState::prepare_for(true), PrepareCommit);
        assert_eq!(TxnState::prepare_for(false), PrepareAbort);
        for s in TxnState::ALL {
            assert_eq!(s.is_prepared(), matches!(s, PrepareCommit | PrepareAbort));
            assert_eq!(
                s.outcome_commit(),
                match s {
                    PrepareCommit | CompleteCommit => Some(true),
                    PrepareAbort | CompleteAbort | PrepareEpochFence => Some(false),
                    _ => None,
                }
            );
            assert!(!s.name().is_empty());
        }
    }
}
