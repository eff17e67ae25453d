//! One attempt, whatever its source: prepare the worktree, run the program and its verify
//! command there, commit what changed, run its stages, publish the branch. A dispatch without
//! a workspace runs as `exec::run` does, through the same function.
//!
//! A workspace that cannot be prepared (the repository, clone, fetch or worktree) is not the
//! task's failure: its command never ran. `run_attempt` says so with `Err`, and the caller
//! tries again where it can: a worker hands the message back (another worker, or this one
//! later, gets it: a delivery, no attempt; after `PREPARE_TRIES` failures in a row it refuses
//! worktree tasks for a while), the local runner, which has no redelivery, tries again in
//! place (`run_attempt_retrying`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_proto::wire::{Workspace, WorkspaceResult};
use ordo_proto::{Dispatch, Outcome, TaskResult, now_ms};

use super::commit::commit;
use super::conflict::markers_left;
use super::stages::{Commit, gate};
use super::{Error, Prepared, Source};
use crate::exec::{self, ExecOptions, OutputChunk};

/// Failures to prepare a workspace in a row after which the caller gives up for now: the
/// local runner fails the attempt, a worker refuses worktree tasks for a while.
pub const PREPARE_TRIES: u32 = 3;
/// Pause before the local runner tries again to prepare an attempt's workspace.
pub const PREPARE_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Runs one attempt: for a worktree job, makes its worktree through `source`, runs the
/// program and its verify command there (`ORDO_WORKSPACE` set, a relative `working_dir` taken
/// inside it, one inside the repository moved into it), commits what the task changed when
/// they succeed (the result then carries the `WorkspaceResult`; changes that cannot be
/// committed fail the attempt with the reason), runs its stages (`stages::gate`: rounds
/// committed again) and publishes the branch (`Source::publish`). A dispatch without a
/// workspace runs as `exec::run` does, then goes through its stages in its directory.
///
/// `Err` when the workspace cannot be prepared: the command never ran, which is not the task's
/// failure (see the module notes). A speculative base that cannot be made
/// (`Error::Speculative`) is a failed attempt instead, the command not run either.
pub async fn run_attempt(
    d: &Dispatch,
    opts: &ExecOptions,
    cancel: impl Future<Output = ()>,
    output: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    source: &impl Source,
) -> Result<TaskResult, Error> {
    let mut cancel = std::pin::pin!(cancel);
    let Some(ws) = &d.workspace else {
        let mut result = exec::run(d, opts, cancel.as_mut(), output.clone()).await;
        if !d.stages.is_empty() {
            let dir = std::path::absolute(d.working_dir.as_deref().unwrap_or("."))
                .unwrap_or_else(|_| PathBuf::from("."));
            let none: Option<&Committer> = None;
            gate(d, &dir, none, opts, cancel.as_mut(), output, &mut result).await;
        }
        return Ok(result);
    };
    let started = now_ms();
    let prepared = match source.prepare(ws, d).await {
        Ok(prepared) => prepared,
        // The dependencies' work does not merge (or is gone): trying again would fail again.
        // The attempt fails saying why; the engine discards it and runs the task on the tip.
        Err(e @ Error::Speculative { .. }) => {
            let worker = opts.worker.clone();
            return Ok(TaskResult::new(
                d,
                worker,
                Outcome::Failed,
                started,
                e.to_string(),
            ));
        }
        Err(e) => return Err(e),
    };
    let mut result = run_prepared(d, ws, &prepared, opts, cancel.as_mut(), output).await;
    source.publish(ws, &prepared, &mut result).await;
    Ok(result)
}

/// `run_attempt` where nobody else can take the attempt (the local runner): a workspace that
/// cannot be prepared is tried again, within the same attempt, `PREPARE_TRIES` times in all
/// `PREPARE_RETRY_DELAY` apart; then the attempt fails saying why and after how many tries.
pub async fn run_attempt_retrying(
    d: &Dispatch,
    opts: &ExecOptions,
    cancel: impl Future<Output = ()>,
    output: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    source: &impl Source,
) -> TaskResult {
    let started = now_ms();
    let mut cancel = std::pin::pin!(cancel);
    let mut tries = 0;
    loop {
        tries += 1;
        match run_attempt(d, opts, cancel.as_mut(), output.clone(), source).await {
            Ok(result) => return result,
            Err(_) if tries < PREPARE_TRIES => tokio::time::sleep(PREPARE_RETRY_DELAY).await,
            Err(e) => {
                let why = format!("cannot make the attempt's worktree ({tries} tries): {e}");
                return TaskResult::new(d, opts.worker.clone(), Outcome::Failed, started, why);
            }
        }
    }
}

/// Runs an attempt in the worktree `prepared` made, then commits what it changed if it
/// succeeded: the middle of `run_attempt`.
async fn run_prepared(
    d: &Dispatch,
    ws: &Workspace,
    prepared: &Prepared,
    opts: &ExecOptions,
    mut cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
    output: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
) -> TaskResult {
    let mut local = d.clone();
    local.working_dir = Some(
        inside(
            &prepared.worktree,
            Path::new(&ws.repository),
            d.working_dir.as_deref(),
        )
        .display()
        .to_string(),
    );
    local.env.insert(
        ordo_proto::names::ENV_WORKSPACE.into(),
        prepared.worktree.display().to_string(),
    );
    let mut result = exec::run(&local, opts, cancel.as_mut(), output.clone()).await;
    // Markers left by a resolve round (whether or not they broke the verify command) send the
    // task back to the tip, spending no attempt.
    if matches!(result.outcome, Outcome::Succeeded | Outcome::VerifyFailed)
        && let Some(files) = &prepared.resolving
    {
        let left = markers_left(&prepared.worktree, files).await;
        if !left.is_empty() {
            result.outcome = Outcome::Failed;
            result.message = format!(
                "the resolve round left conflict markers in {}",
                left.join(", ")
            );
            result.workspace = Some(Box::new(WorkspaceResult {
                branch: ws.task_branch.clone(),
                base_commit: prepared.base_commit.clone(),
                head: String::new(),
                files: files.clone(),
                worktree: prepared.worktree.display().to_string(),
                unresolved: left,
                resolved: false,
                lines: Vec::new(),
            }));
            return result;
        }
    }
    if result.outcome.is_success() {
        let committer = Committer { d, ws, prepared };
        committer.commit(&mut result).await;
        let dir = PathBuf::from(local.working_dir.as_deref().unwrap_or_default());
        gate(
            &local,
            &dir,
            Some(&committer),
            opts,
            cancel,
            output,
            &mut result,
        )
        .await;
    }
    result
}

/// Commits an attempt's work in its worktree, after its run and after each round of its
/// stages.
struct Committer<'a> {
    d: &'a Dispatch,
    ws: &'a Workspace,
    prepared: &'a Prepared,
}

impl Commit for Committer<'_> {
    async fn commit(&self, result: &mut TaskResult) {
        let (d, ws, prepared) = (self.d, self.ws, self.prepared);
        let label = ordo_proto::task_label(d.task.as_str(), ws.title.as_deref());
        let mut message = format!("ordo: {label} (attempt {})", d.attempt);
        if result.rounds > 0 {
            message.push_str(&format!(", round {}", result.rounds + 1));
        }
        message.push_str(&format!("\n\njob {}", d.job));
        match commit(
            &prepared.worktree,
            &prepared.base_commit,
            &ws.task_branch,
            &message,
        )
        .await
        {
            Ok(mut w) => {
                w.resolved = prepared.resolving.is_some();
                result.workspace = Some(Box::new(w));
            }
            Err(e) => {
                result.outcome = Outcome::Failed;
                result.message = format!("cannot commit the task's changes: {e}");
            }
        }
    }
}

/// The directory to run in within `worktree`: a relative `working_dir` below it, one inside
/// `repository` at the same place below it, anything else (or none) its top.
fn inside(worktree: &Path, repository: &Path, working_dir: Option<&str>) -> PathBuf {
    let Some(dir) = working_dir.map(Path::new) else {
        return worktree.to_path_buf();
    };
    if dir.is_relative() {
        return worktree.join(dir);
    }
    let repository = std::path::absolute(repository).unwrap_or_else(|_| repository.into());
    match dir.strip_prefix(&repository) {
        Ok(rest) => worktree.join(rest),
        Err(_) => worktree.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Local;
    use crate::workspace::testkit::*;

    /// Proves the one attempt path runs a plain dispatch as it is, and a worktree dispatch in
    /// its worktree (`ORDO_WORKSPACE` set), committing what it wrote.
    #[tokio::test]
    async fn plain_and_worktree_attempts_go_through_one_function() {
        let fx = Fx::new();
        let local = Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();
        let plain = dispatch(&fx, None, 0, "t", "exit 0");
        let r = run_attempt(&plain, &opts, std::future::pending(), None, &local)
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert!(r.workspace.is_none());

        let ws = fx.ws(0, "t", 1);
        let d = dispatch(
            &fx,
            Some(ws.clone()),
            0,
            "t",
            "echo x > \"$ORDO_WORKSPACE/x.txt\"",
        );
        let r = run_attempt(&d, &opts, std::future::pending(), None, &local)
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded, "{}", r.message);
        let w = r.workspace.unwrap();
        assert_eq!(
            (w.branch.as_str(), w.files.as_slice()),
            (ws.task_branch.as_str(), &["x.txt".to_string()][..])
        );
        assert!(Path::new(&w.worktree).starts_with(fx.root.canonicalize().unwrap()));
    }

    /// Proves a workspace that cannot be prepared is `Err` from `run_attempt` (nothing ran),
    /// and `run_attempt_retrying` fails the attempt after `PREPARE_TRIES` tries, saying why.
    #[tokio::test]
    async fn an_unprepared_workspace_is_tried_again_then_fails_the_attempt() {
        let fx = Fx::new();
        let local = Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();
        let mut ws = fx.ws(0, "t", 1);
        ws.repository = fx.tmp.path().join("missing").display().to_string();
        let marker = fx.tmp.path().join("ran");
        let d = dispatch(
            &fx,
            Some(ws),
            0,
            "t",
            &format!("touch {}", marker.display()),
        );
        let e = run_attempt(&d, &opts, std::future::pending(), None, &local).await;
        assert!(matches!(e, Err(Error::Repository { .. })), "{e:?}");

        let started = std::time::Instant::now();
        let r = run_attempt_retrying(&d, &opts, std::future::pending(), None, &local).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(
            r.message.contains(&format!("({PREPARE_TRIES} tries)"))
                && r.message.contains("does not exist"),
            "{}",
            r.message
        );
        assert!(started.elapsed() >= PREPARE_RETRY_DELAY * (PREPARE_TRIES - 1));
        assert!(!marker.exists(), "the command never ran");
    }
}
