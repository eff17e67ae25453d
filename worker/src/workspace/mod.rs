//! Git I/O for agent workspaces (docs/design.md, "Agent workspaces"): each attempt runs in a
//! fresh `git worktree` on its own branch cut from the job's integration branch; afterwards its
//! changes are committed, and one at a time each attempt is integrated into the integration
//! branch (pre-flight with `git merge-tree`, merge commit with `git commit-tree`, verify at the
//! merge in a scratch worktree, then a compare-and-swap move of the branch).
//!
//! One attempt path and one integration for every caller: `run_attempt` and `integrate` take
//! a `Source`, where the worktree comes from and where the branch goes: the user's repository
//! itself (`Local`, the local runner) or a worker's cache clone of a shared repository
//! (`Caches`, cluster workers).
//!
//! Every git call runs `git -C <dir>` with stdin closed in the environment of `git_env` (no
//! prompt, no variable pointing git at another repository, only the allowed transports). The
//! user's own checkout is never changed: nothing here runs checkout, switch, reset, stash, add
//! or commit in it, and its index is never written; only refs under the names ordo is given
//! and the `worktrees/` admin area of its git directory change. An integration branch that is
//! checked out somewhere is refused rather than moved under that checkout (git refuses the same
//! for `fetch` and `push`).
//!
//! # Layout
//! - `attempt`: `run_attempt` (prepare, run, commit, publish) and the policy for a workspace
//!   that cannot be prepared.
//! - `integrate`: `integrate` (plan with `git merge-tree`, verify at the merge, move the branch).
//! - `local`: `Local`, the user's repository as a source; checking a job's repository first.
//! - `cache`: `Caches`, a worker's cache clones as a source.
//! - `worktree`: making (speculative bases included), listing and removing attempts'
//!   worktrees and branches.
//! - `commit`: committing what an attempt changed.
//! - `stages`: the agent and command stages an attempt goes through after its verify, and
//!   the rounds a `changes` verdict sends back to the implementer.
//! - `conflict`: resolve rounds (merging the tip in, markers left).
//! - `git`: the one git runner and the plumbing reads (refs, worktrees, identity).

use std::future::Future;
use std::path::PathBuf;

use ordo_proto::wire::{Integrate, Integration, Workspace};
use ordo_proto::{Dispatch, TaskResult};

mod attempt;
pub mod cache;
mod commit;
mod conflict;
mod git;
mod integrate;
mod local;
mod stages;
#[cfg(test)]
mod testkit;
mod worktree;

pub use attempt::{PREPARE_RETRY_DELAY, PREPARE_TRIES, run_attempt, run_attempt_retrying};
pub use cache::Caches;
pub use commit::commit;
pub use git::{FALLBACK_EMAIL, FALLBACK_NAME, is_url};
pub use integrate::{VERIFY_TAIL_BYTES, integrate, integrate_batch};
pub use local::{Local, Resolved, resolve};
pub use worktree::{Leftovers, Prepared, default_root, leftovers, prepare, remove, remove_job};

/// Where an attempt's worktree is made and where its branch goes: the one thing the local
/// runner and a cluster worker do differently. `run_attempt` and `integrate` do the rest.
pub trait Source: Sync {
    /// Makes the worktree of the attempt `d` (whose workspace is `ws`), on its task branch,
    /// in a repository this process may write. `Err`: nothing ran (see `run_attempt`).
    fn prepare(
        &self,
        ws: &Workspace,
        d: &Dispatch,
    ) -> impl Future<Output = Result<Prepared, Error>> + Send;

    /// After the attempt ran and (if it succeeded) committed: makes its branch available to
    /// whoever integrates it. Locally nothing (the branch is in the user's repository); a
    /// cache clone pushes it to the shared repository and removes the worktree. A failure
    /// fails the attempt (`result` says why).
    fn publish(
        &self,
        ws: &Workspace,
        prepared: &Prepared,
        result: &mut TaskResult,
    ) -> impl Future<Output = ()> + Send;

    /// The repository an integration is planned and verified in, and the integration
    /// branch's tip there.
    fn target(&self, req: &Integrate) -> impl Future<Output = Result<Target, Error>> + Send;

    /// Moves the integration branch to `new` if it is still at `target.expected` (`None`: if
    /// it does not exist yet); `Error::Moved` when another integrator moved it first.
    fn advance(
        &self,
        target: &Target,
        req: &Integrate,
        new: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// What stays and what goes once the integration came out as `outcome`: the attempt's
    /// worktree and branches (best effort).
    fn tidy(&self, req: &Integrate, outcome: &Integration) -> impl Future<Output = ()> + Send;
}

/// Where an integration merges (`Source::target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The repository holding the tip and the task's head (the user's, or a cache clone).
    pub repo: PathBuf,
    /// Where the scratch worktree of the integration verify goes.
    pub root: PathBuf,
    /// The commit the task is merged onto: the integration branch's tip (before the first
    /// integration on a cluster: `base`).
    pub tip: String,
    /// What the branch must still be at to be moved: `None` when it does not exist yet.
    pub expected: Option<String>,
}

/// Why a workspace operation failed. Every message names the repository, worktree, branch or
/// git command concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository path does not exist, is not a directory or is not a git repository.
    #[error("repository {}: {reason}", .path.display())]
    Repository { path: PathBuf, reason: String },
    /// A worktree is not as ordo left it: gone, its `.git` deleted, on another branch.
    #[error("worktree {}: {reason}", .worktree.display())]
    Worktree { worktree: PathBuf, reason: String },
    /// A branch name, base or commit that cannot be used.
    #[error("{what} {name:?}: {reason}")]
    Invalid {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// The integration branch was not at the tip the merge was made on when it was to be moved
    /// (another integrator moved it): nothing was changed, integrate again from the new tip.
    #[error(
        "the integration branch moved while integrating; {branch} is at {}, not at {expected} \
         the merge was made on: nothing was changed, integrate again from the new tip",
        .found.as_deref().unwrap_or("nothing (deleted)")
    )]
    Moved {
        branch: String,
        expected: String,
        found: Option<String>,
    },
    /// A speculative attempt's base cannot be made: a dependency's work is not in the
    /// repository or does not merge cleanly onto the tip. Not a workspace failure: the
    /// attempt fails (`run_attempt`), and the engine discards it.
    #[error("the speculative base could not be made: dependency branch {branch}: {reason}")]
    Speculative { branch: String, reason: String },
    /// A git command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Git {
        command: String,
        status: String,
        stderr: String,
    },
    /// git could not be started.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A file-system operation on a path ordo manages failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
