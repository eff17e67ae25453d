//! Git I/O for agent workspaces (DESIGN §10): each attempt runs in a fresh `git worktree` on
//! its own branch cut from the job's integration branch; afterwards its changes are committed,
//! and one at a time each attempt is integrated into the integration branch (pre-flight with
//! `git merge-tree`, merge commit with `git commit-tree`, verify at the merge in a scratch
//! worktree, then a compare-and-swap `git update-ref`).
//!
//! Every git call runs `git -C <dir>` with stdin closed in the environment of `git_env`
//! (no prompt, no variable pointing git at another repository, only the allowed transports). The user's own checkout is never changed: nothing here runs checkout, switch,
//! reset, stash, add or commit in it, and its index is never written; only refs under the
//! names ordo is given and the `worktrees/` admin area of its git directory change. An
//! integration branch that is checked out somewhere is refused rather than moved under that
//! checkout (git refuses the same for `fetch` and `push`).
//!
//! Here the repository is a local path (a checkout or a bare repository) and the worktrees
//! are made in it: the local runner's way. Workers of a cluster go through a cache clone of
//! their own instead (`cache`), with the same plan, verify and commit steps.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ordo_proto::names::job_tag;
use ordo_proto::wire::{Integrate, Integration, Workspace, WorkspaceResult};
use ordo_proto::{Attempt, Dispatch, JobId, Outcome, Program, TaskIndex, Verify};
use tokio::process::Command;

use crate::exec::{self, ExecOptions};

pub mod cache;

/// Bytes of output a failed integration verify keeps in `VerifyFailed::output_tail`.
pub const VERIFY_TAIL_BYTES: usize = 4096;
/// Author and committer of ordo's commits in a repository that configures no `user.name` /
/// `user.email`.
pub const FALLBACK_NAME: &str = "ordo";
pub const FALLBACK_EMAIL: &str = "ordo@localhost";
/// Longest sanitised task or job name inside a branch name, in bytes.
/// Most bytes of git's stderr kept in an error.
const MAX_STDERR: usize = 2000;
/// Directory under the worktree root that holds the scratch worktrees of integration verifies.
const INTEGRATE_DIR: &str = "integrate";

/// Held by every git command of this process that reads or changes the worktrees of a
/// repository (`worktree add`, `list`, `remove`, `branch -D`). Git does not lock them: a
/// command reads every worktree's admin files, which a concurrent `worktree add` may be
/// half-way through writing, and then fails ("failed to read .git/worktrees/<id>/commondir").
/// One lock for all repositories: these commands take milliseconds. Other processes (`ordo
/// run`s side by side on one repository) are kept out by `ADMIN_LOCK_FILE` (see `admin`).
static WORKTREE_ADMIN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The file in a repository's git directory that ordo processes `flock` while they read or
/// change its worktrees.
const ADMIN_LOCK_FILE: &str = "ordo-worktrees.lock";

/// `WORKTREE_ADMIN` and the repository's `ADMIN_LOCK_FILE`, held together.
struct Admin {
    _file: Option<std::fs::File>,
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

/// Takes the worktree admin lock of `repo` for this process and then across processes. A
/// lock file that cannot be made (a read-only git directory) leaves only this process's
/// lock, which is what there was before.
async fn admin(repo: &Path) -> Admin {
    let guard = WORKTREE_ADMIN.lock().await;
    let file = match admin_lock_path(repo).await {
        Some(path) => tokio::task::spawn_blocking(move || lock_file(&path))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    Admin {
        _file: file,
        _guard: guard,
    }
}

async fn admin_lock_path(repo: &Path) -> Option<PathBuf> {
    git_common_dir(repo)
        .await
        .ok()
        .map(|d| d.join(ADMIN_LOCK_FILE))
}

/// Opens `path` and waits for its exclusive `flock` (blocking).
fn lock_file(path: &Path) -> Option<std::fs::File> {
    let locked = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .and_then(|f| f.lock().map(|()| f));
    match locked {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot lock; this process's lock only");
            None
        }
    }
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

/// A job's workspace settings as they will be used, found before it runs (`resolve`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The repository's top directory (a checkout) or its path (a bare repository).
    pub repository: PathBuf,
    /// The commit `base` named when the job was submitted: the integration branch starts
    /// there, whatever the repository's HEAD does afterwards.
    pub base: String,
}

/// Checks a worktree job's repository before anything is created: it exists and is a git
/// repository (`repository`, else the repository `dir` is in), `base` (default `HEAD`) names a
/// commit, and the integration branch (when named) is a valid branch that no worktree has
/// checked out. The errors name what is wrong; nothing is written.
pub async fn resolve(
    repository: Option<&str>,
    dir: &Path,
    base: Option<&str>,
    integration_branch: Option<&str>,
) -> Result<Resolved, Error> {
    let given = match repository {
        Some(r) => r.to_string(),
        None => dir.display().to_string(),
    };
    let path = open_repository(&given).await?;
    let top = git(&path)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .await?;
    let repository = if top.ok() && !top.text().is_empty() {
        PathBuf::from(top.text())
    } else {
        path
    };
    let base_rev = base.unwrap_or("HEAD");
    let base = resolve_commit(&repository, base_rev)
        .await?
        .ok_or_else(|| Error::Invalid {
            what: "base",
            name: base_rev.to_string(),
            reason: format!("names no commit in {}", repository.display()),
        })?;
    if let Some(branch) = integration_branch {
        check_branch(&repository, "target_branch", branch).await?;
        let worktrees = {
            let _admin = admin(&repository).await;
            list_worktrees(&repository).await?
        };
        // Named after the setting, as the other errors here are.
        refuse_checked_out(&worktrees, branch).map_err(|e| match e {
            Error::Invalid { name, reason, .. } => Error::Invalid {
                what: "target_branch",
                name,
                reason,
            },
            e => e,
        })?;
    }
    Ok(Resolved { repository, base })
}

/// Where the worktrees of a repository's attempts go: `ordo-worktrees/` in its git directory,
/// out of its working tree (so `git status` never shows them) and kept across runs (a task
/// that failed keeps its worktree there).
pub async fn default_root(repository: &str) -> Result<PathBuf, Error> {
    let repo = open_repository(repository).await?;
    Ok(git_common_dir(&repo).await?.join("ordo-worktrees"))
}

/// The git directory `repo`'s worktrees share (absolute).
async fn git_common_dir(repo: &Path) -> Result<PathBuf, Error> {
    let out = git(repo)
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .run()
        .await?;
    Ok(PathBuf::from(out.text()))
}

/// Runs one attempt of a worktree job where its dispatch says: makes its worktree (under
/// `default_root`), runs the program and its verify command there (`ORDO_WORKSPACE` set, a
/// relative `working_dir` taken inside it, one inside the repository moved into it), and when
/// they succeed commits what the task changed: the result then carries the `WorkspaceResult`.
/// Changes that cannot be committed fail the attempt with the reason. A dispatch without a
/// workspace runs as `exec::run` does.
///
/// `Err` when the worktree cannot be made: the command never ran, which is not the task's
/// failure (the caller runs the attempt again, or gives up saying why).
pub async fn run_attempt(
    d: &Dispatch,
    opts: &ExecOptions,
    cancel: impl std::future::Future<Output = ()>,
    output: Option<tokio::sync::mpsc::Sender<exec::OutputChunk>>,
) -> Result<ordo_proto::TaskResult, Error> {
    let Some(ws) = &d.workspace else {
        return Ok(exec::run(d, opts, cancel, output).await);
    };
    let root = default_root(&ws.repository).await?;
    let prepared = prepare(ws, &root, &d.job, d.index, d.attempt).await?;
    Ok(run_prepared(d, ws, prepared, opts, cancel, output).await)
}

/// Runs an attempt in the worktree `prepared` made, then commits what it changed if it
/// succeeded: the second half of `run_attempt`, and of an attempt run through a cache clone
/// (`cache`).
async fn run_prepared(
    d: &Dispatch,
    ws: &Workspace,
    prepared: Prepared,
    opts: &ExecOptions,
    cancel: impl std::future::Future<Output = ()>,
    output: Option<tokio::sync::mpsc::Sender<exec::OutputChunk>>,
) -> ordo_proto::TaskResult {
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
    let mut result = exec::run(&local, opts, cancel, output).await;
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
            }));
            return result;
        }
    }
    if result.outcome.is_success() {
        let label = ordo_proto::task_label(d.task.as_str(), ws.title.as_deref());
        let message = format!("ordo: {label} (attempt {})\n\njob {}", d.attempt, d.job);
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
    result
}

/// Removes every worktree a job's tasks left in `repository` (kept after failures) and their
/// task branches (`ordo/<job tag>/...`); the integration branch stays. Best effort: what
/// cannot be removed is logged.
pub async fn remove_job(repository: &str, job: &JobId) {
    let Ok(repo) = open_repository(repository).await else {
        return;
    };
    let tag = job_tag(job);
    if let Ok(root) = default_root(repository).await {
        let dir = root.join(&tag);
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                remove(&repo, &e.path(), None).await;
            }
        }
        let _ = tokio::fs::remove_dir(&dir).await;
    }
    let listed = git(&repo)
        .args(["for-each-ref", "--format=%(refname:short)"])
        .arg(format!("refs/heads/ordo/{tag}/"))
        .output()
        .await;
    if let Ok(out) = listed {
        for branch in String::from_utf8_lossy(&out.stdout).lines() {
            if let Err(e) = git(&repo).args(["branch", "-D", branch]).run().await {
                tracing::warn!(branch, error = %e, "cannot delete task branch");
            }
        }
    }
}

/// What a job's attempts left in a repository: the worktrees failed attempts kept and the
/// task branches (`ordo/<job tag>/...`), which `remove_job` removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub worktrees: Vec<PathBuf>,
    pub branches: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.worktrees.is_empty() && self.branches.is_empty()
    }
}

/// The worktrees and task branches job `job` left in `repository` (a path: both; a URL: the
/// branches git can list there), sorted. Nothing when the repository cannot be read.
pub async fn leftovers(repository: &str, job: &JobId) -> Leftovers {
    let tag = job_tag(job);
    let prefix = format!("refs/heads/ordo/{tag}/");
    let mut found = Leftovers::default();
    if cache::is_url(repository) {
        let scratch = std::env::temp_dir();
        if let Ok(out) = git(&scratch)
            .args(["ls-remote", "--", repository])
            .arg(format!("{prefix}*"))
            .output()
            .await
            && out.ok()
        {
            found.branches = out
                .text()
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .filter_map(|(_, name)| name.strip_prefix("refs/heads/"))
                .map(str::to_string)
                .collect();
        }
        found.branches.sort();
        return found;
    }
    let Ok(repo) = open_repository(repository).await else {
        return found;
    };
    if let Ok(root) = default_root(repository).await
        && let Ok(mut entries) = tokio::fs::read_dir(root.join(&tag)).await
    {
        while let Ok(Some(e)) = entries.next_entry().await {
            found.worktrees.push(e.path());
        }
    }
    if let Ok(out) = git(&repo)
        .args(["for-each-ref", "--format=%(refname:short)", &prefix])
        .output()
        .await
    {
        found.branches = out.text().lines().map(str::to_string).collect();
    }
    found.worktrees.sort();
    found.branches.sort();
    found
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

/// A worktree made for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Absolute path of the worktree, on the task branch.
    pub worktree: PathBuf,
    /// The integration branch's tip the task branch was cut from (for a resolve round: the
    /// tip merged into the conflicted attempt's work).
    pub base_commit: String,
    /// A resolve round: the files the merge of the tip left conflict markers in.
    pub resolving: Option<Vec<String>>,
}

/// Makes the worktree of one attempt: `root/<job8>/<index>-<attempt>`, on a new branch
/// `ws.task_branch` cut from the tip of `ws.integration_branch`, which is created at `ws.base`
/// if it does not exist yet (atomically: when several attempts race to create it, one wins
/// and the others use its value).
///
/// Idempotent for a redelivered attempt: a worktree at that path or on that branch, and the
/// branch itself, left by an earlier try are removed first, so the attempt always starts from
/// the current tip with a clean tree.
///
/// `ws.repository` must be a local path to a checkout or a bare repository; a path that does
/// not exist or is not a repository is an `Error::Repository` naming it. The repository's
/// own checkout (HEAD, index, working tree, current branch) is left exactly as it is. An
/// integration branch that is checked out in any worktree is refused (ordo would otherwise
/// move it under that checkout).
pub async fn prepare(
    ws: &Workspace,
    root: &Path,
    job: &JobId,
    index: TaskIndex,
    attempt: Attempt,
) -> Result<Prepared, Error> {
    let repo = open_repository(&ws.repository).await?;
    check_branch(&repo, "integration branch", &ws.integration_branch).await?;
    check_branch(&repo, "task branch", &ws.task_branch).await?;
    if ws.task_branch == ws.integration_branch {
        return Err(Error::Invalid {
            what: "task branch",
            name: ws.task_branch.clone(),
            reason: "is the integration branch".into(),
        });
    }
    let _admin = admin(&repo).await;
    let worktrees = list_worktrees(&repo).await?;
    refuse_checked_out(&worktrees, &ws.integration_branch)?;
    let base_commit = ensure_branch(&repo, &ws.integration_branch, &ws.base).await?;

    let root = ordo_root(root).await?;
    let worktree = root
        .join(job_tag(job))
        .join(format!("{}-{}", index.0, attempt.0));
    if worktree.to_str().is_none() {
        return Err(Error::Invalid {
            what: "worktree path",
            name: worktree.display().to_string(),
            reason: "is not valid UTF-8".into(),
        });
    }
    clear_previous(&repo, &worktrees, &worktree, &ws.task_branch).await?;
    if let Some(parent) = worktree.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    let resolve = ws.conflict.as_ref().and_then(|c| c.resolve.as_ref());
    let start = match resolve {
        Some(r) => resolve_commit(&repo, &r.head)
            .await?
            .ok_or_else(|| Error::Invalid {
                what: "resolve round",
                name: r.branch.clone(),
                reason: format!("its commit {} is not in the repository", r.head),
            })?,
        None => base_commit.clone(),
    };
    git(&repo)
        .args(["worktree", "add", "-b", &ws.task_branch])
        .arg(&worktree)
        .arg(&start)
        .run()
        .await?;
    let resolving = match resolve {
        Some(_) => Some(merge_for_resolve(&worktree, &base_commit).await?),
        None => None,
    };
    Ok(Prepared {
        worktree,
        base_commit,
        resolving,
    })
}

/// A resolve round's start: merges the integration tip into the conflicted attempt's work in
/// its worktree without committing, leaving conflict markers where the two disagree (the
/// repository's merge drivers apply); the files left unmerged.
async fn merge_for_resolve(worktree: &Path, tip: &str) -> Result<Vec<String>, Error> {
    // A merge needs an identity even when it commits nothing (bare cache clones have none).
    let out = git(worktree)
        .args(identity(worktree).await?)
        .args(["merge", "--no-ff", "--no-commit", "--no-edit", tip])
        .output()
        .await?;
    if !matches!(out.code, Some(0 | 1)) {
        return Err(out.into_error());
    }
    let unmerged = git(worktree)
        .args(["diff", "--name-only", "--diff-filter=U", "-z"])
        .output()
        .await?;
    let mut files: Vec<String> = nul_fields(&unmerged.stdout).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// The files among `files` in `worktree` that still hold a conflict: an opening marker line
/// followed, later, by a closing one (a lone `=======`, a heading underline, is no marker).
async fn markers_left(worktree: &Path, files: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for f in files {
        let Ok(text) = tokio::fs::read(worktree.join(f)).await else {
            continue;
        };
        if has_conflict(&String::from_utf8_lossy(&text)) {
            left.push(f.clone());
        }
    }
    left
}

fn has_conflict(text: &str) -> bool {
    let mut open = false;
    for l in text.lines() {
        if l.starts_with("<<<<<<< ") || l == "<<<<<<<" {
            open = true;
        } else if open && (l.starts_with(">>>>>>> ") || l == ">>>>>>>") {
            return true;
        }
    }
    false
}

/// Commits what the task changed in `worktree` (everything, `git add -A`, ignored files
/// excepted) if anything, and reports the attempt's branch, head and changed files. A task
/// that committed itself is fine: `head` is whatever the branch points at then. A task that
/// changed nothing gives `head == base_commit` and no files.
///
/// `files` are the paths that differ between `base_commit` and `head` (renames as a deletion
/// and an addition), sorted.
///
/// Commits run without hooks (`--no-verify`; the task's verify command is the check) as the
/// repository's configured `user.name` / `user.email`, or `ordo <ordo@localhost>` for
/// whichever is not configured.
///
/// Errors (naming the worktree) when the worktree is gone, its `.git` was deleted (git would
/// otherwise find an enclosing repository and commit there), or its HEAD is no longer on
/// `branch` (the task checked out something else): the work cannot be attributed safely.
pub async fn commit(
    worktree: &Path,
    base_commit: &str,
    branch: &str,
    message: &str,
) -> Result<WorkspaceResult, Error> {
    let wt = open_worktree(worktree).await?;
    let expected = format!("refs/heads/{branch}");
    let head_ref = git(&wt)
        .args(["symbolic-ref", "--quiet", "HEAD"])
        .output()
        .await?;
    match head_ref.code {
        Some(0) if head_ref.text() == expected => {}
        Some(0) => {
            return Err(Error::Worktree {
                worktree: wt,
                reason: format!(
                    "is on {}, not on branch {branch}: the task switched branches, so its \
                     work is not committed; the worktree is kept as it is",
                    head_ref.text()
                ),
            });
        }
        Some(1) => {
            return Err(Error::Worktree {
                worktree: wt,
                reason: format!(
                    "HEAD is detached, not on branch {branch}: the task checked out something \
                     else, so its work is not committed; the worktree is kept as it is"
                ),
            });
        }
        _ => return Err(head_ref.into_error()),
    }

    git(&wt).args(["add", "-A"]).run().await?;
    let staged = git(&wt)
        .args(["diff", "--cached", "--quiet"])
        .output()
        .await?;
    // A resolve round's merge is committed even when it changed nothing of the task's own
    // tree: its second parent (the tip) is what makes the integration merge clean.
    let merging = git(&wt)
        .args(["rev-parse", "--quiet", "--verify", "MERGE_HEAD"])
        .output()
        .await?
        .ok();
    match staged.code {
        Some(0) if !merging => {}
        Some(0 | 1) => {
            let message = if message.trim().is_empty() {
                "ordo: task changes"
            } else {
                message
            };
            git(&wt)
                .args(identity(&wt).await?)
                .args(["commit", "--quiet", "--no-verify", "-m", message])
                .run()
                .await?;
        }
        _ => return Err(staged.into_error()),
    }
    let head = git(&wt)
        .args(["rev-parse", "--verify", "HEAD^{commit}"])
        .text()
        .await?;
    let files = changed_files(&wt, base_commit, &head).await?;
    Ok(WorkspaceResult {
        branch: branch.to_string(),
        base_commit: base_commit.to_string(),
        head,
        files,
        worktree: wt.to_string_lossy().into_owned(),
        unresolved: Vec::new(),
        resolved: false,
    })
}

/// Integrates one attempt (DESIGN §10) with default execution options for the verify command;
/// see `integrate_with`.
pub async fn integrate(req: &Integrate, root: &Path) -> Integration {
    integrate_with(req, root, &ExecOptions::default()).await
}

/// Integrates `req.head` into `req.integration_branch`. Never panics and never errors: every
/// failure is an `Integration` value, and the branch moves only for `Merged`.
///
/// - `head` already on the branch (an ancestor of the tip, or the tip): `Merged` with the merge
///   that brought it there when there is one (this integration was made before and is being
///   redone), else `Unchanged`.
/// - `git merge-tree` pre-flight against the tip (unless `head` descends from it): conflicts
///   give `Conflict` with the files (sorted); nothing changes (the task's worktree stays for
///   the caller to `remove`).
/// - Clean: the new commit is `head` itself when it descends from the tip (fast-forward),
///   else a merge commit of the tip and `head` (tip first), message
///   `ordo: integrate <task> (attempt N)` and the job id, identity as in `commit`.
/// - `req.verify`, if any, runs (`sh -c`, with `req.env`, within `req.timeout`; passes on its
///   success code) in a detached scratch worktree at the new commit,
///   `root/integrate/<job8>-<index>-<attempt>`, removed afterwards whatever happens; a failure
///   is `VerifyFailed` with the exit code (none when it timed out or was killed) and the last
///   `VERIFY_TAIL_BYTES` of its output.
/// - The branch moves by compare-and-swap from the tip the merge was made on; if another
///   integrator moved it meanwhile, `Failed` with "the integration branch moved while
///   integrating; ..." and the branch is left as that integrator set it.
/// - `Merged` gives the new tip and the files it changed on the branch (sorted).
///
/// After `Merged` and `Unchanged` the task's worktree and branch are removed (best effort);
/// after anything else they are kept.
pub async fn integrate_with(req: &Integrate, root: &Path, opts: &ExecOptions) -> Integration {
    match try_integrate(req, root, opts).await {
        Ok(outcome) => outcome,
        Err(e) => Integration::Failed {
            message: e.to_string(),
        },
    }
}

/// Removes an attempt's worktree (`git worktree remove --force --force`) and deletes the task
/// branch when given. Best effort: failures are logged, never returned.
///
/// Only this worktree's entry is dropped: no `git worktree prune`, which would also drop the
/// entries of the user's own worktrees that happen to be missing (on an unmounted disk, say).
/// A worktree whose `.git` the task deleted is no longer one for git; its directory is
/// deleted only if the repository lists it as one of its worktrees or its path has the shape
/// `prepare` gives (`<8 hex>/<index>-<attempt>`), so a wrong path can never make this delete
/// an unrelated directory.
pub async fn remove(repository: &Path, worktree: &Path, branch: Option<&str>) {
    // Absolute: git would take a relative path from the repository, and matches a worktree
    // by the end of its path.
    let path = match tokio::fs::canonicalize(worktree).await {
        Ok(path) => path,
        Err(_) => std::path::absolute(worktree).unwrap_or_else(|_| worktree.to_path_buf()),
    };
    let _admin = admin(repository).await;
    let listed = match list_worktrees(repository).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(repository = %repository.display(), error = %e, "cannot list worktrees");
            Vec::new()
        }
    };
    // The first entry is the repository's own checkout (or the bare repository).
    let may_delete = listed.iter().skip(1).any(|w| w.path == path) || is_attempt_path(&path);
    if let Err(e) = remove_worktree(repository, &path, may_delete).await {
        tracing::warn!(worktree = %path.display(), error = %e, "cannot remove worktree");
    }
    // The job's directory goes with its last worktree (only an empty directory is removed).
    if may_delete && let Some(job_dir) = path.parent() {
        let _ = tokio::fs::remove_dir(job_dir).await;
    }
    let Some(branch) = branch else { return };
    if branch.is_empty() || branch.starts_with('-') {
        tracing::warn!(branch, "not deleting a branch with an invalid name");
        return;
    }
    match read_ref(repository, &format!("refs/heads/{branch}")).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            if let Err(e) = git(repository).args(["branch", "-D", branch]).run().await {
                tracing::warn!(branch, error = %e, "cannot delete task branch");
            }
        }
        Err(e) => tracing::warn!(branch, error = %e, "cannot read task branch"),
    }
}

/// Removes the worktree at `path` and git's entry for it, and nobody else's. With
/// `may_delete`, a directory git no longer takes for a worktree (its `.git` deleted) is
/// deleted too.
async fn remove_worktree(repo: &Path, path: &Path, may_delete: bool) -> Result<(), Error> {
    let remove_entry = || {
        git(repo)
            .args(["worktree", "remove", "--force", "--force"])
            .arg(path)
    };
    let out = remove_entry().output().await?;
    if out.ok() {
        return Ok(());
    }
    // For a missing directory git drops the entry and succeeds; failing, it had none.
    if tokio::fs::symlink_metadata(path).await.is_err() {
        return Ok(());
    }
    let gitless = tokio::fs::symlink_metadata(path.join(".git"))
        .await
        .is_err();
    if !(may_delete && gitless) {
        return Err(out.into_error());
    }
    tokio::fs::remove_dir_all(path)
        .await
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    // Its entry, if git still has one, now names a missing directory: this drops it.
    let _ = remove_entry().output().await;
    Ok(())
}

/// True for a path `prepare` makes: `.../<job tag>/<index>-<attempt>` (`names::job_tag`: 8 hex
/// digits, `-`, 4 hex digits).
fn is_attempt_path(path: &Path) -> bool {
    fn name(p: Option<&Path>) -> Option<&str> {
        p.and_then(Path::file_name).and_then(OsStr::to_str)
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let tag_ok = name(path.parent()).is_some_and(|t| {
        t.len() == 13
            && t.bytes().enumerate().all(|(i, b)| {
                if i == 8 {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    });
    let leaf_ok = name(Some(path))
        .and_then(|n| n.split_once('-'))
        .is_some_and(|(i, a)| digits(i) && digits(a));
    tag_ok && leaf_ok
}

async fn try_integrate(
    req: &Integrate,
    root: &Path,
    opts: &ExecOptions,
) -> Result<Integration, Error> {
    let repo = open_repository(&req.repository).await?;
    check_branch(&repo, "integration branch", &req.integration_branch).await?;
    let worktrees = {
        let _admin = admin(&repo).await;
        list_worktrees(&repo).await?
    };
    refuse_checked_out(&worktrees, &req.integration_branch)?;
    let refname = format!("refs/heads/{}", req.integration_branch);
    let tip = read_ref(&repo, &refname)
        .await?
        .ok_or_else(|| Error::Invalid {
            what: "integration branch",
            name: req.integration_branch.clone(),
            reason: format!("does not exist in {}", repo.display()),
        })?;
    let head = resolve_commit(&repo, &req.head)
        .await?
        .ok_or_else(|| Error::Invalid {
            what: "task head",
            name: req.head.clone(),
            reason: format!(
                "is not a commit in {} (task branch {})",
                repo.display(),
                req.task_branch
            ),
        })?;

    let new = match plan(&repo, req, &tip, &head).await? {
        Plan::Ended(outcome) => {
            if !matches!(outcome, Integration::Conflict { .. }) {
                remove(&repo, Path::new(&req.worktree), Some(&req.task_branch)).await;
            }
            if matches!(
                outcome,
                Integration::Unchanged { .. } | Integration::Merged { .. }
            ) {
                remove_earlier_branches(&repo, &req.task_branch).await;
            }
            return Ok(outcome);
        }
        Plan::Commit(new) => new,
    };
    if let Some(verify) = &req.verify
        && let Some(failed) = verify_at(&repo, root, req, verify, &new, opts).await?
    {
        return Ok(failed);
    }
    let title = integrate_title(req);
    advance(&repo, &req.integration_branch, &new, &tip, &title).await?;
    let files = changed_files(&repo, &tip, &new).await?;
    remove(&repo, Path::new(&req.worktree), Some(&req.task_branch)).await;
    remove_earlier_branches(&repo, &req.task_branch).await;
    Ok(Integration::Merged { commit: new, files })
}

/// Once a task is integrated, the branches its earlier attempts kept for a resolve round
/// (`ordo/<job>/<index>-<name>/<attempt>`) go too. Best effort: a branch a kept worktree has
/// checked out stays with it.
async fn remove_earlier_branches(repo: &Path, task_branch: &str) {
    let Some((prefix, _)) = task_branch.rsplit_once('/') else {
        return;
    };
    let Ok(out) = git(repo)
        .args(["for-each-ref", "--format=%(refname:short)"])
        .arg(format!("refs/heads/{prefix}/"))
        .output()
        .await
    else {
        return;
    };
    for branch in String::from_utf8_lossy(&out.stdout).lines() {
        if branch != task_branch {
            let _ = git(repo).args(["branch", "-D", branch]).output().await;
        }
    }
}

/// What integrating `head` onto `tip` comes to before anything is verified or moved.
enum Plan {
    /// Nothing to merge (already there) or nothing that can be merged (a conflict).
    Ended(Integration),
    /// The commit the integration branch moves to once verified: `head` itself (a
    /// fast-forward) or a merge commit of `tip` and `head`.
    Commit(String),
}

fn integrate_title(req: &Integrate) -> String {
    let label = ordo_proto::task_label(req.task.as_str(), req.title.as_deref());
    format!("ordo: integrate {label} (attempt {})", req.attempt.0)
}

/// Plans the integration of `head` onto `tip` in `repo` (which has both): `head` already on
/// the branch is `Merged` with the commit that brought it (a redone integration finds its own
/// earlier merge) or `Unchanged`; a `git merge-tree` pre-flight with conflicts is `Conflict`
/// with the files (sorted); else the commit to move to.
async fn plan(repo: &Path, req: &Integrate, tip: &str, head: &str) -> Result<Plan, Error> {
    if is_ancestor(repo, head, tip).await? {
        return Ok(Plan::Ended(already_integrated(repo, tip, head).await?));
    }
    if is_ancestor(repo, tip, head).await? {
        // Nothing landed since the task was cut: a fast-forward, no merge to check.
        return Ok(Plan::Commit(head.to_string()));
    }
    let tree = match merge_tree(repo, tip, head).await? {
        Merge::Clean(tree) => tree,
        Merge::Conflict(files) => return Ok(Plan::Ended(Integration::Conflict { files })),
    };
    let message = format!(
        "{}\n\nJob {}, task branch {}.",
        integrate_title(req),
        req.job,
        req.task_branch
    );
    let commit = git(repo)
        .args(identity(repo).await?)
        .args(["commit-tree", &tree, "-p", tip, "-p", head, "-m", &message])
        .text()
        .await?;
    Ok(Plan::Commit(commit))
}

/// `head` is an ancestor of `tip`: the merge on the branch's first-parent line whose second
/// parent is `head` (an integration of this attempt made before, by a process that did not
/// live to report it), as `Merged` with the files it changed; otherwise `Unchanged` (the task
/// changed nothing, or its change came some other way).
async fn already_integrated(repo: &Path, tip: &str, head: &str) -> Result<Integration, Error> {
    let out = git(repo)
        .args(["rev-list", "--first-parent", "--parents", tip])
        .arg(format!("^{head}"))
        .run()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in text.lines() {
        let mut ids = line.split_whitespace();
        let (Some(commit), Some(first), Some(second)) = (ids.next(), ids.next(), ids.next()) else {
            continue;
        };
        if second == head {
            let files = changed_files(repo, first, commit).await?;
            return Ok(Integration::Merged {
                commit: commit.to_string(),
                files,
            });
        }
    }
    Ok(Integration::Unchanged {
        commit: tip.to_string(),
    })
}

/// Runs the integration verify command at `commit` in a scratch worktree; `Some` when it
/// failed.
async fn verify_at(
    repo: &Path,
    root: &Path,
    req: &Integrate,
    verify: &Verify,
    commit: &str,
    opts: &ExecOptions,
) -> Result<Option<Integration>, Error> {
    let root = ordo_root(root).await?;
    let dir = root.join(INTEGRATE_DIR).join(format!(
        "{}-{}-{}",
        job_tag(&req.job),
        req.index.0,
        req.attempt.0
    ));
    let Some(dir_str) = dir.to_str().map(str::to_string) else {
        return Err(Error::Invalid {
            what: "worktree path",
            name: dir.display().to_string(),
            reason: "is not valid UTF-8".into(),
        });
    };
    // Left by an integration of this attempt that was interrupted.
    remove_scratch(repo, &dir).await;
    let lock = admin_lock_path(repo).await;
    let held = admin(repo).await;
    tokio::fs::create_dir_all(root.join(INTEGRATE_DIR))
        .await
        .map_err(|source| Error::Io {
            path: root.join(INTEGRATE_DIR),
            source,
        })?;
    git(repo)
        .args(["worktree", "add", "--detach"])
        .arg(&dir)
        .arg(commit)
        .run()
        .await?;
    drop(held);
    let scratch = Scratch {
        repo: repo.to_path_buf(),
        dir,
        lock,
        armed: true,
    };
    let d = Dispatch {
        env: req.env.clone(),
        working_dir: Some(dir_str),
        timeout: req.timeout,
        ..Dispatch::new(
            req.job,
            req.task.clone(),
            req.index,
            req.attempt,
            Program::Shell(verify.command.clone()),
        )
    };
    let opts = ExecOptions {
        tail_bytes: VERIFY_TAIL_BYTES,
        ..opts.clone()
    };
    let r = exec::run(&d, &opts, std::future::pending(), None).await;
    scratch.remove().await;
    // `Failed` is the executor's word for any exit code but 0: the success code decides.
    let ran = matches!(r.outcome, Outcome::Succeeded | Outcome::Failed);
    if ran && r.exit_code == Some(verify.success_code) {
        return Ok(None);
    }
    let mut output_tail = r.output_tail;
    if r.exit_code.is_none() {
        // Timed out, killed or not started: the output does not say so.
        if !output_tail.is_empty() && !output_tail.ends_with('\n') {
            output_tail.push('\n');
        }
        output_tail.push_str(&format!("[ordo: integration verify {}]", r.message));
    }
    Ok(Some(Integration::VerifyFailed {
        exit_code: r.exit_code,
        output_tail,
    }))
}

/// The scratch worktree of an integration verify: removed by `remove`, or, if the integration
/// is dropped half-way (cancelled), by a thread started on drop.
struct Scratch {
    repo: PathBuf,
    dir: PathBuf,
    /// The repository's `ADMIN_LOCK_FILE`.
    lock: Option<PathBuf>,
    armed: bool,
}

impl Scratch {
    async fn remove(mut self) {
        self.armed = false;
        remove_scratch(&self.repo, &self.dir).await;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (repo, dir, lock) = (self.repo.clone(), self.dir.clone(), self.lock.clone());
        let _ = std::thread::Builder::new()
            .name("ordo-scratch-worktree".into())
            .spawn(move || {
                let _admin = WORKTREE_ADMIN.blocking_lock();
                let _file = lock.as_deref().and_then(lock_file);
                let git = |args: &[&OsStr]| {
                    let mut cmd = std::process::Command::new("git");
                    cmd.arg("-C").arg(&repo).args(args);
                    let _ = crate::git_env::confine(&mut cmd)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                };
                let force = OsStr::new("--force");
                git(&[
                    OsStr::new("worktree"),
                    OsStr::new("remove"),
                    force,
                    force,
                    dir.as_os_str(),
                ]);
                let _ = std::fs::remove_dir_all(&dir);
                // The entry now names a missing directory, if git kept it: this drops it.
                git(&[
                    OsStr::new("worktree"),
                    OsStr::new("remove"),
                    force,
                    force,
                    dir.as_os_str(),
                ]);
            });
    }
}

/// Removes a scratch worktree (ordo's own directory, so deleted even if git no longer knows
/// it).
async fn remove_scratch(repo: &Path, dir: &Path) {
    let _admin = admin(repo).await;
    if let Err(e) = remove_worktree(repo, dir, true).await {
        tracing::warn!(worktree = %dir.display(), error = %e, "cannot remove scratch worktree");
        if let Err(e) = tokio::fs::remove_dir_all(dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(worktree = %dir.display(), error = %e, "cannot delete scratch worktree");
        }
    }
}

/// Moves `refs/heads/<branch>` from `expected` to `new`, atomically; `Error::Moved` when it is
/// no longer at `expected`.
async fn advance(
    repo: &Path,
    branch: &str,
    new: &str,
    expected: &str,
    reason: &str,
) -> Result<(), Error> {
    let refname = format!("refs/heads/{branch}");
    let out = git(repo)
        .args(["update-ref", "-m", reason, &refname, new, expected])
        .output()
        .await?;
    if out.ok() {
        return Ok(());
    }
    match read_ref(repo, &refname).await? {
        Some(now) if now == expected => Err(out.into_error()),
        found => Err(Error::Moved {
            branch: branch.to_string(),
            expected: expected.to_string(),
            found,
        }),
    }
}

enum Merge {
    /// The merged tree.
    Clean(String),
    /// The conflicted paths, sorted and deduplicated.
    Conflict(Vec<String>),
}

/// Whether this machine's git reads attributes from a commit (`--attr-source`, git 2.41+):
/// asked once.
async fn attr_source_supported() -> bool {
    static SUPPORTED: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *SUPPORTED
        .get_or_init(|| async {
            let probe = tokio::process::Command::new("git")
                .args(["--attr-source=HEAD", "version"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            probe.is_ok_and(|s| s.success())
        })
        .await
}

/// `git merge-tree --write-tree` of two commits, without touching any index or worktree. The
/// merge drivers the repository declares in `ours`' `.gitattributes` (e.g. `merge=union` for a
/// changelog) apply, as they would to `git merge`: attributes are read from that commit, not
/// from a checkout (a cache clone is bare; the user's checkout may be on another branch).
async fn merge_tree(repo: &Path, ours: &str, theirs: &str) -> Result<Merge, Error> {
    // `--attr-source` came with git 2.41; an older git merges without the drivers.
    let attr_source = match attr_source_supported().await {
        true => vec![format!("--attr-source={ours}")],
        false => Vec::new(),
    };
    let out = git(repo)
        .args(attr_source)
        .args([
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            ours,
            theirs,
        ])
        .output()
        .await?;
    // Exit 1 means conflicts only when a tree was written (bad arguments also exit 1).
    let mut fields: Vec<String> = nul_fields(&out.stdout).collect();
    let tree_written = fields.first().is_some_and(|t| is_oid(t));
    match out.code {
        Some(0) if tree_written => Ok(Merge::Clean(fields.swap_remove(0))),
        Some(1) if tree_written => {
            let mut files = fields.split_off(1);
            files.sort();
            files.dedup();
            Ok(Merge::Conflict(files))
        }
        _ => Err(out.into_error()),
    }
}

/// Paths that differ between two commits (both sides of a rename), sorted.
async fn changed_files(dir: &Path, from: &str, to: &str) -> Result<Vec<String>, Error> {
    let out = git(dir)
        .args(["diff", "--name-only", "-z", "--no-renames", from, to, "--"])
        .run()
        .await?;
    let mut files: Vec<String> = nul_fields(&out.stdout).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn nul_fields(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
}

fn is_oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git merge-base --is-ancestor`: true also when `a == b`.
async fn is_ancestor(repo: &Path, a: &str, b: &str) -> Result<bool, Error> {
    let out = git(repo)
        .args(["merge-base", "--is-ancestor", a, b])
        .output()
        .await?;
    match out.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(out.into_error()),
    }
}

/// The value of a ref, `None` if it does not exist.
async fn read_ref(repo: &Path, refname: &str) -> Result<Option<String>, Error> {
    let out = git(repo)
        .args(["rev-parse", "--verify", "--quiet", refname])
        .output()
        .await?;
    match out.code {
        Some(0) => Ok(Some(out.text())),
        Some(1) if out.stdout.is_empty() => Ok(None),
        _ => Err(out.into_error()),
    }
}

/// The commit `rev` names, `None` if it names none.
async fn resolve_commit(repo: &Path, rev: &str) -> Result<Option<String>, Error> {
    if rev.is_empty() || rev.starts_with('-') {
        return Ok(None);
    }
    read_ref(repo, &format!("{rev}^{{commit}}")).await
}

/// The tip of `refs/heads/<branch>`, which is created at `base` if it does not exist.
async fn ensure_branch(repo: &Path, branch: &str, base: &str) -> Result<String, Error> {
    let refname = format!("refs/heads/{branch}");
    if let Some(tip) = read_ref(repo, &refname).await? {
        return Ok(tip);
    }
    let oid = resolve_commit(repo, base)
        .await?
        .ok_or_else(|| Error::Invalid {
            what: "base",
            name: base.to_string(),
            reason: format!("is not a commit in {}", repo.display()),
        })?;
    let message = format!("ordo: integration branch from {base}");
    // The empty old value: create only if it does not exist.
    let created = git(repo)
        .args(["update-ref", "-m", &message, &refname, &oid, ""])
        .output()
        .await?;
    if created.ok() {
        return Ok(oid);
    }
    // Another attempt created it meanwhile: its value wins.
    match read_ref(repo, &refname).await? {
        Some(tip) => Ok(tip),
        None => Err(created.into_error()),
    }
}

/// Removes whatever an earlier try of this attempt left: a worktree at `worktree` or on the
/// task branch, the directory, and the branch.
async fn clear_previous(
    repo: &Path,
    worktrees: &[WorktreeEntry],
    worktree: &Path,
    branch: &str,
) -> Result<(), Error> {
    let refname = format!("refs/heads/{branch}");
    if let Some(main) = worktrees.first()
        && main.branch.as_deref() == Some(refname.as_str())
    {
        return Err(Error::Invalid {
            what: "task branch",
            name: branch.to_string(),
            reason: format!("is checked out in {}", main.path.display()),
        });
    }
    for w in worktrees.iter().skip(1) {
        if w.path == worktree || w.branch.as_deref() == Some(refname.as_str()) {
            remove_worktree(repo, &w.path, true).await?;
        }
    }
    if tokio::fs::symlink_metadata(worktree).await.is_ok() {
        // Our own path under the worktree root, unknown to git: a leftover.
        tokio::fs::remove_dir_all(worktree)
            .await
            .map_err(|source| Error::Io {
                path: worktree.to_path_buf(),
                source,
            })?;
    }
    if read_ref(repo, &refname).await?.is_some() {
        git(repo).args(["branch", "-D", branch]).run().await?;
    }
    Ok(())
}

fn refuse_checked_out(worktrees: &[WorktreeEntry], branch: &str) -> Result<(), Error> {
    let refname = format!("refs/heads/{branch}");
    match worktrees
        .iter()
        .find(|w| w.branch.as_deref() == Some(refname.as_str()))
    {
        Some(w) => Err(Error::Invalid {
            what: "integration branch",
            name: branch.to_string(),
            reason: format!(
                "is checked out in {}: ordo moves it and would leave that checkout out of \
                 date; check out another branch there or choose another target_branch",
                w.path.display()
            ),
        }),
        None => Ok(()),
    }
}

struct WorktreeEntry {
    path: PathBuf,
    /// `refs/heads/...`, none when detached or bare.
    branch: Option<String>,
}

/// `git worktree list`; the first entry is the repository's own checkout or bare directory.
async fn list_worktrees(repo: &Path) -> Result<Vec<WorktreeEntry>, Error> {
    let out = git(repo)
        .args(["worktree", "list", "--porcelain", "-z"])
        .run()
        .await?;
    let mut list = Vec::new();
    for field in out.stdout.split(|&b| b == 0) {
        if let Some(path) = field.strip_prefix(b"worktree ") {
            list.push(WorktreeEntry {
                path: PathBuf::from(OsStr::from_bytes(path)),
                branch: None,
            });
        } else if let Some(branch) = field.strip_prefix(b"branch ")
            && let Some(w) = list.last_mut()
        {
            w.branch = Some(String::from_utf8_lossy(branch).into_owned());
        }
    }
    Ok(list)
}

/// Checks `repository` is a local path to a git repository; returns it absolute.
async fn open_repository(repository: &str) -> Result<PathBuf, Error> {
    let fail = |path: PathBuf, reason: String| Error::Repository { path, reason };
    if repository.is_empty() {
        return Err(fail(PathBuf::new(), "no repository given".into()));
    }
    if repository.contains("://") {
        return Err(fail(
            repository.into(),
            "remote repositories are not supported yet: give a local path".into(),
        ));
    }
    let path =
        std::path::absolute(repository).map_err(|e| fail(repository.into(), e.to_string()))?;
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(fail(path, "is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(path, "does not exist".into()));
        }
        Err(e) => return Err(fail(path, e.to_string())),
    }
    let out = git(&path).args(["rev-parse", "--git-dir"]).output().await?;
    if !out.ok() {
        let reason = format!("is not a git repository ({})", out.stderr_text());
        return Err(fail(path, reason));
    }
    Ok(path)
}

/// Checks `worktree` is still the top of a git worktree and returns it canonical. Its `.git`
/// is checked first: without it git would find an enclosing repository (the worktree root may
/// be inside the user's checkout) and work there.
async fn open_worktree(worktree: &Path) -> Result<PathBuf, Error> {
    let fail = |reason: String| Error::Worktree {
        worktree: worktree.to_path_buf(),
        reason,
    };
    let dir = match tokio::fs::canonicalize(worktree).await {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail("does not exist".into()));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    match tokio::fs::symlink_metadata(dir.join(".git")).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                "its .git is gone (the task deleted it?): its changes cannot be committed; the \
                 directory is kept as it is"
                    .into(),
            ));
        }
        Err(e) => return Err(fail(format!(".git: {e}"))),
    }
    let top = git(&dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .await?;
    if !top.ok() {
        return Err(fail(format!(
            "is not a git worktree any more ({})",
            top.stderr_text()
        )));
    }
    let found = tokio::fs::canonicalize(top.text())
        .await
        .unwrap_or_else(|_| PathBuf::from(top.text()));
    if found != dir {
        return Err(fail(format!(
            "is not the top of a git worktree (git finds {})",
            found.display()
        )));
    }
    Ok(dir)
}

/// The worktree root, created and canonical (git records worktree paths canonical, so
/// comparisons with `git worktree list` hold).
async fn ordo_root(root: &Path) -> Result<PathBuf, Error> {
    let io = |source| Error::Io {
        path: root.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(root).await.map_err(io)?;
    tokio::fs::canonicalize(root).await.map_err(io)
}

/// Refuses a branch name git would reject or that could be read as an option or as HEAD.
async fn check_branch(repo: &Path, what: &'static str, name: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::Invalid {
        what,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("is empty"));
    }
    if name.starts_with('-') || name == "HEAD" || name.chars().any(char::is_control) {
        return Err(invalid("is not a valid branch name"));
    }
    let out = git(repo)
        .args(["check-ref-format", &format!("refs/heads/{name}")])
        .output()
        .await?;
    if !out.ok() {
        return Err(invalid("is not a valid branch name"));
    }
    Ok(())
}

/// `-c user.name=… -c user.email=…` for whichever the repository does not configure.
async fn identity(dir: &Path) -> Result<Vec<String>, Error> {
    let name = config_value(dir, "user.name").await?;
    let email = config_value(dir, "user.email").await?;
    Ok(identity_overrides(name.as_deref(), email.as_deref()))
}

fn identity_overrides(name: Option<&str>, email: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    if name.is_none_or(|n| n.trim().is_empty()) {
        args.extend(["-c".to_string(), format!("user.name={FALLBACK_NAME}")]);
    }
    if email.is_none_or(|e| e.trim().is_empty()) {
        args.extend(["-c".to_string(), format!("user.email={FALLBACK_EMAIL}")]);
    }
    args
}

async fn config_value(dir: &Path, key: &str) -> Result<Option<String>, Error> {
    let out = git(dir).args(["config", "--get", key]).output().await?;
    match out.code {
        Some(0) => Ok(Some(out.text())),
        Some(1) => Ok(None),
        _ => Err(out.into_error()),
    }
}

/// One `git -C <dir> ...` invocation.
struct Git<'a> {
    dir: &'a Path,
    args: Vec<OsString>,
}

fn git(dir: &Path) -> Git<'_> {
    Git {
        dir,
        args: Vec::new(),
    }
}

struct Output {
    command: String,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as one trimmed line of text.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    fn stderr_text(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let s = s.trim();
        if s.len() <= MAX_STDERR {
            return s.to_string();
        }
        let mut cut = MAX_STDERR;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    }

    fn into_error(self) -> Error {
        Error::Git {
            status: match self.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            },
            stderr: self.stderr_text(),
            command: self.command,
        }
    }
}

impl Git<'_> {
    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    fn display(&self) -> String {
        let quote = |s: &OsStr| {
            let s = s.to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("{s:?}")
            } else {
                s.into_owned()
            }
        };
        let mut line = format!("git -C {}", quote(self.dir.as_os_str()));
        for a in &self.args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        line
    }

    /// Runs to the end whatever the exit code; `Err` only if git could not be run.
    async fn output(self) -> Result<Output, Error> {
        let command = self.display();
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(self.dir).args(&self.args);
        crate::git_env::confine(cmd.as_std_mut())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.output().await {
            Ok(out) => Ok(Output {
                command,
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(source) => Err(Error::Spawn { command, source }),
        }
    }

    /// Runs and requires exit 0.
    async fn run(self) -> Result<Output, Error> {
        let out = self.output().await?;
        if out.ok() {
            Ok(out)
        } else {
            Err(out.into_error())
        }
    }

    /// Runs, requires exit 0 and returns stdout trimmed.
    async fn text(self) -> Result<String, Error> {
        Ok(self.run().await?.text())
    }
}

#[cfg(test)]
mod marker_tests {
    use super::has_conflict;

    #[test]
    fn only_an_opened_and_closed_block_is_a_conflict() {
        assert!(has_conflict(
            "a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> tip\nb\n"
        ));
        assert!(
            !has_conflict("History\n=======\n\n1.0\n---\n"),
            "a heading underline"
        );
        assert!(!has_conflict("<<<<<<< alone\n"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use ordo_proto::TaskName;
    use ordo_proto::names::{MAX_NAME_IN_BRANCH, integration_branch, task_branch};

    use super::*;

    /// `git -C dir args`, which must succeed; stdout trimmed. Optional locks off, so reading
    /// the user's checkout never rewrites its index.
    fn g(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn g_code(dir: &Path, args: &[&str]) -> i32 {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .unwrap()
            .status
            .code()
            .unwrap()
    }

    fn write(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// A user's checkout on `main` with a configured identity, and a worktree root.
    struct Fx {
        tmp: tempfile::TempDir,
        repo: PathBuf,
        root: PathBuf,
        job: JobId,
        branch: String,
    }

    impl Fx {
        fn new() -> Fx {
            let tmp = tempfile::tempdir().unwrap();
            let repo = tmp.path().join("user");
            std::fs::create_dir(&repo).unwrap();
            g(&repo, &["init", "-q", "-b", "main"]);
            g(&repo, &["config", "user.name", "Test User"]);
            g(&repo, &["config", "user.email", "test@example.com"]);
            write(&repo.join("same.txt"), "one\ntwo\nthree\n");
            write(&repo.join("README.md"), "hello\n");
            write(&repo.join(".gitignore"), "/.ordo/\n");
            g(&repo, &["add", "-A"]);
            g(&repo, &["commit", "-q", "-m", "initial"]);
            let root = tmp.path().join("worktrees");
            let job = JobId::new();
            let branch = integration_branch("demo job", &job);
            Fx {
                tmp,
                repo,
                root,
                job,
                branch,
            }
        }

        fn ws(&self, index: u32, name: &str, attempt: u32) -> Workspace {
            Workspace {
                repository: self.repo.to_str().unwrap().to_string(),
                integration_branch: self.branch.clone(),
                base: "HEAD".into(),
                task_branch: task_branch(
                    &self.job,
                    TaskIndex(index),
                    &TaskName::new(name).unwrap(),
                    Attempt(attempt),
                ),
                conflict: None,
                title: None,
            }
        }

        async fn prepare(&self, index: u32, name: &str, attempt: u32) -> (Workspace, Prepared) {
            let ws = self.ws(index, name, attempt);
            let p = prepare(
                &ws,
                &self.root,
                &self.job,
                TaskIndex(index),
                Attempt(attempt),
            )
            .await
            .unwrap();
            (ws, p)
        }

        /// One attempt: prepare, let `edit` play the task in the worktree, commit.
        async fn attempt(
            &self,
            index: u32,
            name: &str,
            attempt: u32,
            edit: impl FnOnce(&Path),
        ) -> (Workspace, WorkspaceResult) {
            let (ws, p) = self.prepare(index, name, attempt).await;
            edit(&p.worktree);
            let r = commit(&p.worktree, &p.base_commit, &ws.task_branch, "task work")
                .await
                .unwrap();
            (ws, r)
        }

        fn request(
            &self,
            ws: &Workspace,
            r: &WorkspaceResult,
            index: u32,
            name: &str,
        ) -> Integrate {
            let attempt: u32 = ws.task_branch.rsplit('/').next().unwrap().parse().unwrap();
            Integrate {
                job: self.job,
                task: TaskName::new(name).unwrap(),
                index: TaskIndex(index),
                attempt: Attempt(attempt),
                repository: ws.repository.clone(),
                integration_branch: ws.integration_branch.clone(),
                base: ws.base.clone(),
                task_branch: ws.task_branch.clone(),
                head: r.head.clone(),
                worktree: r.worktree.clone(),
                verify: None,
                env: BTreeMap::new(),
                timeout: Some(Duration::from_secs(60)),
                last: false,
                queue: "default".into(),
                title: None,
            }
        }

        fn tip(&self) -> String {
            g(
                &self.repo,
                &["rev-parse", &format!("refs/heads/{}", self.branch)],
            )
        }

        /// A file's content on the integration branch.
        fn show(&self, path: &str) -> String {
            g(&self.repo, &["show", &format!("{}:{path}", self.branch)])
        }

        /// Paths of the repository's worktrees, its own checkout first.
        fn worktrees(&self) -> Vec<PathBuf> {
            g(&self.repo, &["worktree", "list", "--porcelain"])
                .lines()
                .filter_map(|l| l.strip_prefix("worktree "))
                .map(PathBuf::from)
                .collect()
        }

        fn branch_exists(&self, branch: &str) -> bool {
            g_code(
                &self.repo,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{branch}"),
                ],
            ) == 0
        }

        /// The repository's own checkout is the only worktree, and no task branch is left.
        fn assert_clean(&self) {
            assert_eq!(self.worktrees(), vec![self.repo.canonicalize().unwrap()]);
            let prefix = format!("refs/heads/ordo/{}", job_tag(&self.job));
            assert_eq!(g(&self.repo, &["for-each-ref", &prefix]), "");
        }
    }

    /// Everything a user could notice about their checkout.
    #[derive(Debug, PartialEq)]
    struct Checkout {
        head: String,
        branch: String,
        status: String,
        staged: String,
        stash: String,
        files: BTreeMap<PathBuf, Vec<u8>>,
    }

    fn checkout(repo: &Path) -> Checkout {
        fn walk(dir: &Path, base: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                if rel == Path::new(".git") || rel == Path::new(".ordo") {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, base, files);
                } else {
                    files.insert(rel, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(repo, repo, &mut files);
        Checkout {
            head: g(repo, &["rev-parse", "HEAD"]),
            branch: g(repo, &["symbolic-ref", "HEAD"]),
            status: g(repo, &["status", "--porcelain=v1", "--untracked-files=all"]),
            staged: g(repo, &["ls-files", "--stage"]),
            stash: g(repo, &["stash", "list"]),
            files,
        }
    }

    /// An unstaged change, a staged change and an untracked file.
    fn make_dirty(repo: &Path) {
        write(&repo.join("same.txt"), "one\ntwo (user, unstaged)\nthree\n");
        write(&repo.join("README.md"), "hello (user, staged)\n");
        g(repo, &["add", "README.md"]);
        write(&repo.join("notes.txt"), "user's notes\n");
        let status = g(repo, &["status", "--porcelain=v1"]);
        assert!(status.contains(" M same.txt") && status.contains("M  README.md"));
        assert!(status.contains("?? notes.txt"));
    }

    fn sh(command: &str) -> Option<Verify> {
        Some(Verify {
            command: command.into(),
            success_code: 0,
        })
    }

    /// Proves the whole path (prepare, a task writing a file, commit, integrate with a verify
    /// at the result) lands the file on the integration branch, removes the worktree and task
    /// branch, and leaves the user's dirty checkout on `main` byte for byte as it was: HEAD,
    /// branch, status, index, stash and every file.
    #[tokio::test]
    async fn task_is_merged_and_the_users_checkout_is_untouched() {
        let fx = Fx::new();
        make_dirty(&fx.repo);
        let before = checkout(&fx.repo);

        let (ws, r) = fx
            .attempt(0, "add feature", 1, |wt| {
                // Cut from a commit: none of the user's uncommitted changes are here.
                assert_eq!(
                    std::fs::read_to_string(wt.join("README.md")).unwrap(),
                    "hello\n"
                );
                assert!(!wt.join("notes.txt").exists());
                write(&wt.join("src/feature.txt"), "feature\n");
            })
            .await;
        assert_eq!(
            r.base_commit, before.head,
            "the branch starts at base = HEAD"
        );
        assert_ne!(r.head, r.base_commit);
        assert_eq!(r.files, vec!["src/feature.txt"]);
        assert_eq!(r.branch, ws.task_branch);
        assert!(
            r.worktree
                .starts_with(fx.root.canonicalize().unwrap().to_str().unwrap())
        );
        assert_eq!(
            g(&fx.repo, &["log", "-1", "--format=%an <%ae>|%s", &r.head]),
            "Test User <test@example.com>|task work"
        );

        let mut req = fx.request(&ws, &r, 0, "add feature");
        req.verify = sh("test -f src/feature.txt && test \"$(cat README.md)\" = hello");
        let out = integrate(&req, &fx.root).await;
        // Nothing else landed meanwhile: a fast-forward to the task's own commit.
        assert_eq!(
            out,
            Integration::Merged {
                commit: r.head.clone(),
                files: vec!["src/feature.txt".into()],
            }
        );
        assert_eq!(fx.tip(), r.head);
        assert_eq!(fx.show("src/feature.txt"), "feature");
        assert_eq!(fx.show("README.md"), "hello");
        assert!(!Path::new(&r.worktree).exists());
        fx.assert_clean();
        // Removing again is harmless.
        remove(&fx.repo, Path::new(&r.worktree), Some(&ws.task_branch)).await;
        fx.assert_clean();
        assert_eq!(checkout(&fx.repo), before);
    }

    /// Proves two attempts cut concurrently from the same tip (racing to create the
    /// integration branch) both integrate in order: the first fast-forwards, the second is a
    /// real merge commit (tip first, then the task's head) as the repository's identity, its
    /// verify runs at the merge (seeing both files), and both files are on the branch.
    #[tokio::test]
    async fn attempts_on_different_files_both_integrate() {
        let fx = Fx::new();
        let ((ws_a, a), (ws_b, b)) = tokio::join!(
            fx.attempt(0, "a", 1, |wt| write(&wt.join("a.txt"), "a\n")),
            fx.attempt(1, "b", 1, |wt| write(&wt.join("b.txt"), "b\n")),
        );
        assert_eq!(a.base_commit, b.base_commit);

        let out = integrate(&fx.request(&ws_a, &a, 0, "a"), &fx.root).await;
        assert_eq!(
            out,
            Integration::Merged {
                commit: a.head.clone(),
                files: vec!["a.txt".into()],
            }
        );

        let mut req = fx.request(&ws_b, &b, 1, "b");
        req.verify = sh("test -f a.txt && test -f b.txt");
        let Integration::Merged { commit, files } = integrate(&req, &fx.root).await else {
            panic!("not merged");
        };
        assert_eq!(files, vec!["b.txt"]);
        assert_eq!(fx.tip(), commit);
        assert_eq!(
            g(&fx.repo, &["rev-list", "--parents", "-n", "1", &commit]),
            format!("{commit} {} {}", a.head, b.head)
        );
        let log = g(
            &fx.repo,
            &["log", "-1", "--format=%an <%ae>|%cn|%B", &commit],
        );
        assert!(
            log.starts_with("Test User <test@example.com>|Test User|ordo: integrate b (attempt 1)"),
            "{log}"
        );
        assert!(log.contains(&fx.job.to_string()), "{log}");
        assert_eq!(fx.show("a.txt"), "a");
        assert_eq!(fx.show("b.txt"), "b");
        fx.assert_clean();
    }

    /// Proves an attempt editing the line another one already integrated gets
    /// `Conflict { files: ["same.txt"] }` with the branch unchanged and its worktree kept; a
    /// new attempt cut from the new tip then merges, and no conflict marker reaches the branch.
    #[tokio::test]
    async fn same_line_conflicts_then_merges_from_the_new_tip() {
        let fx = Fx::new();
        let edit = |to: &'static str| {
            move |wt: &Path| {
                let text = std::fs::read_to_string(wt.join("same.txt")).unwrap();
                let line = text.lines().nth(1).unwrap().to_string();
                write(&wt.join("same.txt"), &text.replacen(&line, to, 1));
            }
        };
        let (ws_a, a) = fx.attempt(0, "a", 1, edit("two (a)")).await;
        let (ws_b, b) = fx.attempt(1, "b", 1, edit("two (b)")).await;
        assert!(matches!(
            integrate(&fx.request(&ws_a, &a, 0, "a"), &fx.root).await,
            Integration::Merged { .. }
        ));
        let tip = fx.tip();

        let out = integrate(&fx.request(&ws_b, &b, 1, "b"), &fx.root).await;
        assert_eq!(
            out,
            Integration::Conflict {
                files: vec!["same.txt".into()]
            }
        );
        assert_eq!(fx.tip(), tip);
        assert!(Path::new(&b.worktree).join("same.txt").exists());
        remove(&fx.repo, Path::new(&b.worktree), Some(&ws_b.task_branch)).await;
        assert!(!Path::new(&b.worktree).exists());
        assert!(!fx.branch_exists(&ws_b.task_branch));

        let (ws_b2, b2) = fx
            .attempt(1, "b", 2, |wt| {
                assert!(
                    std::fs::read_to_string(wt.join("same.txt"))
                        .unwrap()
                        .contains("two (a)")
                );
                edit("two (b)")(wt);
            })
            .await;
        assert_eq!(b2.base_commit, tip);
        let out = integrate(&fx.request(&ws_b2, &b2, 1, "b"), &fx.root).await;
        assert_eq!(
            out,
            Integration::Merged {
                commit: b2.head.clone(),
                files: vec!["same.txt".into()],
            }
        );
        assert_eq!(fx.show("same.txt"), "one\ntwo (b)\nthree");
        let markers = [
            "grep",
            "-n",
            "-e",
            "<<<<<<<",
            "-e",
            ">>>>>>>",
            "-e",
            "^=======$",
        ];
        let mut args = markers.to_vec();
        args.push(&fx.branch);
        assert_eq!(
            g_code(&fx.repo, &args),
            1,
            "no conflict markers on the branch"
        );
        fx.assert_clean();
    }

    /// Proves a task that changed nothing commits nothing (head is its base, no files) and
    /// integrates as `Unchanged` at the current tip, its worktree and branch removed.
    #[tokio::test]
    async fn task_that_changed_nothing_is_unchanged() {
        let fx = Fx::new();
        let (ws, r) = fx.attempt(0, "noop", 1, |_| {}).await;
        assert_eq!(r.head, r.base_commit);
        assert!(r.files.is_empty());
        let tip = fx.tip();
        let out = integrate(&fx.request(&ws, &r, 0, "noop"), &fx.root).await;
        assert_eq!(
            out,
            Integration::Unchanged {
                commit: tip.clone()
            }
        );
        assert_eq!(fx.tip(), tip);
        fx.assert_clean();
    }

    /// Proves a task that committed its work itself is reported as such: ordo adds no commit
    /// of its own and `files` covers everything since the base.
    #[tokio::test]
    async fn task_that_committed_itself_is_taken_as_it_is() {
        let fx = Fx::new();
        let (ws, p) = fx.prepare(0, "self", 1).await;
        write(&p.worktree.join("x.txt"), "x\n");
        g(&p.worktree, &["add", "x.txt"]);
        g(&p.worktree, &["commit", "-q", "-m", "by the task"]);
        let own = g(&p.worktree, &["rev-parse", "HEAD"]);
        let r = commit(&p.worktree, &p.base_commit, &ws.task_branch, "task work")
            .await
            .unwrap();
        assert_eq!(r.head, own);
        assert_eq!(r.files, vec!["x.txt"]);
    }

    /// Proves a failing integration verify gives `VerifyFailed` with its exit code and output
    /// (exit code none and the reason on a timeout), never moves the branch, and leaves no
    /// scratch worktree; the task worktree is kept. A verify returning its non-zero success
    /// code passes.
    #[tokio::test]
    async fn failed_verify_leaves_the_branch_and_no_scratch_worktree() {
        let fx = Fx::new();
        let (ws, r) = fx
            .attempt(0, "v", 1, |wt| write(&wt.join("v.txt"), "v\n"))
            .await;
        let tip = fx.tip();
        let mut req = fx.request(&ws, &r, 0, "v");
        req.verify = sh("echo verify said no; echo \"on stderr $VERIFY_VAR\" >&2; exit 3");
        req.env.insert("VERIFY_VAR".into(), "from env".into());
        let Integration::VerifyFailed {
            exit_code,
            output_tail,
        } = integrate(&req, &fx.root).await
        else {
            panic!("verify did not fail");
        };
        assert_eq!(exit_code, Some(3));
        assert!(output_tail.contains("verify said no"), "{output_tail}");
        assert!(output_tail.contains("on stderr from env"), "{output_tail}");
        assert_eq!(fx.tip(), tip);
        let task_worktree = PathBuf::from(&r.worktree);
        assert_eq!(fx.worktrees()[1..], *std::slice::from_ref(&task_worktree));
        let scratch = fx.root.join(INTEGRATE_DIR);
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

        req.verify = sh("sleep 30");
        req.timeout = Some(Duration::from_millis(200));
        let Integration::VerifyFailed {
            exit_code,
            output_tail,
        } = integrate(&req, &fx.root).await
        else {
            panic!("verify did not time out");
        };
        assert_eq!(exit_code, None);
        assert!(output_tail.contains("timed out"), "{output_tail}");
        assert_eq!(fx.tip(), tip);
        assert_eq!(fx.worktrees()[1..], [task_worktree]);
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

        req.verify = Some(Verify {
            command: "exit 7".into(),
            success_code: 7,
        });
        req.timeout = None;
        assert!(matches!(
            integrate(&req, &fx.root).await,
            Integration::Merged { .. }
        ));
        fx.assert_clean();
    }

    /// Proves the branch moves by compare-and-swap: when another integrator moves it between
    /// the pre-flight and the update (here the verify command does), the result is `Failed`
    /// with the "moved" message and the other integrator's commit stays; the CAS step alone
    /// refuses a stale expected tip the same way.
    #[tokio::test]
    async fn branch_moved_meanwhile_is_not_overwritten() {
        let fx = Fx::new();
        let (ws, r) = fx
            .attempt(0, "cas", 1, |wt| write(&wt.join("c.txt"), "c\n"))
            .await;
        let tip = fx.tip();
        let racer_file = fx.tmp.path().join("racer");
        let mut req = fx.request(&ws, &r, 0, "cas");
        req.verify = sh(&format!(
            "set -e; c=$(git commit-tree {tip}^{{tree}} -p {tip} -m racer); \
             git update-ref refs/heads/{} \"$c\"; printf %s \"$c\" > {}",
            fx.branch,
            racer_file.display()
        ));
        let Integration::Failed { message } = integrate(&req, &fx.root).await else {
            panic!("not failed");
        };
        assert!(
            message.starts_with("the integration branch moved while integrating;"),
            "{message}"
        );
        let racer = std::fs::read_to_string(&racer_file).unwrap();
        assert_eq!(fx.tip(), racer);
        assert!(Path::new(&r.worktree).exists(), "kept for a retry");

        let e = advance(&fx.repo, &fx.branch, &r.head, &tip, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Moved { ref found, .. } if found.as_deref() == Some(racer.as_str()))
        );
        assert_eq!(fx.tip(), racer);
    }

    /// Proves `commit` refuses, with a message naming the worktree, a task that switched its
    /// worktree to another branch or detached it, or deleted the worktree's `.git` (with the
    /// worktree root inside the user's checkout, so git would otherwise have committed there);
    /// the user's checkout is unchanged, `git fsck` and `git worktree prune` pass, and
    /// `remove` cleans up all of them.
    #[tokio::test]
    async fn misbehaving_tasks_are_refused_and_the_repository_stays_intact() {
        let mut fx = Fx::new();
        fx.root = fx.repo.join(".ordo/worktrees");
        make_dirty(&fx.repo);
        let before = checkout(&fx.repo);

        let (ws_a, a) = fx.prepare(0, "switcher", 1).await;
        write(&a.worktree.join("a.txt"), "a\n");
        g(&a.worktree, &["checkout", "-q", "-b", "other"]);
        let e = commit(&a.worktree, &a.base_commit, &ws_a.task_branch, "m")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(a.worktree.to_str().unwrap()), "{e}");
        assert!(e.contains("refs/heads/other, not on branch"), "{e}");

        let (ws_d, d) = fx.prepare(1, "detacher", 1).await;
        g(&d.worktree, &["checkout", "-q", "--detach"]);
        let e = commit(&d.worktree, &d.base_commit, &ws_d.task_branch, "m")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("HEAD is detached"), "{e}");

        let (ws_b, b) = fx.prepare(2, "deleter", 1).await;
        write(&b.worktree.join("b.txt"), "b\n");
        std::fs::remove_file(b.worktree.join(".git")).unwrap();
        let e = commit(&b.worktree, &b.base_commit, &ws_b.task_branch, "m")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Worktree { .. }));
        let e = e.to_string();
        assert!(e.contains(b.worktree.to_str().unwrap()), "{e}");
        assert!(e.contains(".git is gone"), "{e}");

        assert_eq!(checkout(&fx.repo), before);
        g(&fx.repo, &["fsck", "--no-progress"]);
        g(&fx.repo, &["worktree", "prune"]);
        for (ws, p) in [(&ws_a, &a), (&ws_d, &d), (&ws_b, &b)] {
            remove(&fx.repo, &p.worktree, Some(&ws.task_branch)).await;
            assert!(!p.worktree.exists(), "{}", p.worktree.display());
        }
        fx.assert_clean();
        assert_eq!(checkout(&fx.repo), before);
    }

    /// Proves ordo drops only its own worktree entries: a user's worktree whose directory is
    /// missing for now (moved away, an unmounted disk) is still registered after a merge with
    /// a verify, a redelivered prepare and the removal of a worktree whose `.git` was deleted
    /// (all of which would have used `git worktree prune`).
    #[tokio::test]
    async fn users_missing_worktrees_are_not_pruned() {
        let fx = Fx::new();
        let away = fx.tmp.path().join("user-side");
        g(
            &fx.repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "side",
                away.to_str().unwrap(),
            ],
        );
        std::fs::rename(&away, fx.tmp.path().join("elsewhere")).unwrap();
        let registered = || {
            g(&fx.repo, &["worktree", "list", "--porcelain"])
                .contains(&format!("worktree {}", away.display()))
        };
        assert!(registered());

        let (ws, r) = fx
            .attempt(0, "a", 1, |wt| write(&wt.join("a.txt"), "a\n"))
            .await;
        let mut req = fx.request(&ws, &r, 0, "a");
        req.verify = sh("true");
        assert!(matches!(
            integrate(&req, &fx.root).await,
            Integration::Merged { .. }
        ));
        fx.prepare(1, "b", 1).await;
        let (ws, p) = fx.prepare(1, "b", 1).await;
        std::fs::remove_file(p.worktree.join(".git")).unwrap();
        remove(&fx.repo, &p.worktree, Some(&ws.task_branch)).await;
        assert!(!p.worktree.exists());
        assert!(!fx.branch_exists(&ws.task_branch));
        assert!(registered(), "the user's worktree entry was pruned");
        assert_eq!(fx.worktrees().len(), 2, "{:?}", fx.worktrees());
    }

    /// Proves a redelivered attempt gets a fresh worktree at the same path on a branch re-cut
    /// from the tip, whatever the earlier try left (files, commits), and no second worktree.
    #[tokio::test]
    async fn prepare_again_starts_over() {
        let fx = Fx::new();
        let (ws, first) = fx.prepare(0, "again", 1).await;
        write(&first.worktree.join("junk.txt"), "junk\n");
        g(&first.worktree, &["add", "-A"]);
        g(&first.worktree, &["commit", "-q", "-m", "junk"]);
        write(&first.worktree.join("untracked.txt"), "x\n");

        let (_, second) = fx.prepare(0, "again", 1).await;
        assert_eq!(second, first);
        assert!(!second.worktree.join("junk.txt").exists());
        assert!(!second.worktree.join("untracked.txt").exists());
        assert_eq!(
            g(
                &fx.repo,
                &["rev-parse", &format!("refs/heads/{}", ws.task_branch)]
            ),
            second.base_commit
        );
        assert_eq!(fx.worktrees().len(), 2);

        // Its directory deleted behind git's back: prepared again all the same.
        std::fs::remove_dir_all(&second.worktree).unwrap();
        let (_, third) = fx.prepare(0, "again", 1).await;
        assert_eq!(third, first);
        assert_eq!(fx.worktrees().len(), 2);
    }

    /// Proves a bare repository works the same: worktrees are made from it and the
    /// integration branch in it gets the file.
    #[tokio::test]
    async fn bare_repository() {
        let mut fx = Fx::new();
        let bare = fx.tmp.path().join("bare.git");
        g(
            fx.tmp.path(),
            &[
                "clone",
                "-q",
                "--bare",
                fx.repo.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        fx.repo = bare;
        let (ws, r) = fx
            .attempt(0, "in bare", 1, |wt| write(&wt.join("f.txt"), "f\n"))
            .await;
        let out = integrate(&fx.request(&ws, &r, 0, "in bare"), &fx.root).await;
        assert!(matches!(out, Integration::Merged { .. }), "{out:?}");
        assert_eq!(fx.show("f.txt"), "f");
        fx.assert_clean();
    }

    /// Proves an integration branch that is checked out (here the user's own `main`) is
    /// refused by `prepare` and `integrate` instead of being moved under that checkout.
    #[tokio::test]
    async fn checked_out_integration_branch_is_refused() {
        let fx = Fx::new();
        let main = g(&fx.repo, &["rev-parse", "main"]);
        let mut ws = fx.ws(0, "t", 1);
        ws.integration_branch = "main".into();
        let e = prepare(&ws, &fx.root, &fx.job, TaskIndex(0), Attempt(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"main\": is checked out in"), "{e}");

        let (ws, r) = fx
            .attempt(0, "t", 1, |wt| write(&wt.join("t.txt"), "t\n"))
            .await;
        let mut req = fx.request(&ws, &r, 0, "t");
        req.integration_branch = "main".into();
        let Integration::Failed { message } = integrate(&req, &fx.root).await else {
            panic!("not refused");
        };
        assert!(message.contains("is checked out in"), "{message}");
        assert_eq!(g(&fx.repo, &["rev-parse", "main"]), main);
    }

    /// Proves a path that does not exist, a directory that is not a repository and a URL are
    /// clear errors naming them, from `prepare` and from `integrate`.
    #[tokio::test]
    async fn not_a_repository() {
        let fx = Fx::new();
        let plain = fx.tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let missing = fx.tmp.path().join("missing");
        for (repository, says) in [
            (plain.to_str().unwrap(), "is not a git repository"),
            (missing.to_str().unwrap(), "does not exist"),
            ("https://example.com/r.git", "not supported yet"),
        ] {
            let mut ws = fx.ws(0, "t", 1);
            ws.repository = repository.into();
            let e = prepare(&ws, &fx.root, &fx.job, TaskIndex(0), Attempt(1))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::Repository { .. }));
            let e = e.to_string();
            assert!(e.contains(repository) && e.contains(says), "{e}");

            let r = WorkspaceResult {
                branch: ws.task_branch.clone(),
                base_commit: "0".repeat(40),
                head: "0".repeat(40),
                files: Vec::new(),
                worktree: String::new(),
                unresolved: Vec::new(),
                resolved: false,
            };
            let Integration::Failed { message } =
                integrate(&fx.request(&ws, &r, 0, "t"), &fx.root).await
            else {
                panic!("not failed");
            };
            assert!(
                message.contains(repository) && message.contains(says),
                "{message}"
            );
        }
    }

    /// Proves both branch helpers give names `git check-ref-format --branch` accepts for
    /// hostile task and job names, with the documented shape, and that the checks `prepare`
    /// applies reject invalid names.
    #[tokio::test]
    async fn branch_names_are_valid_for_any_name() {
        let tmp = tempfile::tempdir().unwrap();
        let job = JobId::new();
        let j8 = job_tag(&job);
        let hostile = [
            "build",
            "a b",
            "..",
            "a..b",
            "...",
            "@{u}",
            "x@{1}",
            "@",
            "~^:?*[\\",
            "ends.lock",
            ".lock",
            "x.lock.",
            "a.lock/b",
            "-leading",
            ".hidden",
            "trailing/",
            "/",
            "a//b",
            "refs/heads/x",
            "HEAD",
            "ünïcödé",
            "日本語タスク",
            "emoji 🚀",
            "a.-.b",
            "$(rm -rf /)",
            "'quoted\"",
            &"long-name ".repeat(19),
            &"é".repeat(60),
        ];
        let check = |b: &str| {
            assert_eq!(
                g_code(tmp.path(), &["check-ref-format", "--branch", b]),
                0,
                "invalid branch {b:?}"
            );
        };
        for name in hostile {
            let b = task_branch(
                &job,
                TaskIndex(12),
                &TaskName::new(name).unwrap(),
                Attempt(3),
            );
            check(&b);
            let middle = b
                .strip_prefix(&format!("ordo/{j8}/12-"))
                .and_then(|m| m.strip_suffix("/3"))
                .unwrap_or_else(|| panic!("shape of {b:?}"));
            assert!(
                !middle.is_empty() && middle.len() <= MAX_NAME_IN_BRANCH,
                "{b:?}"
            );
            check(&integration_branch(name, &job));
        }
        for control in ["tab\there", "nul\0x", "esc\u{1b}[2J", "\n", "del\u{7f}"] {
            let b = integration_branch(control, &job);
            check(&b);
        }
        let tb = |n: &str| task_branch(&job, TaskIndex(1), &TaskName::new(n).unwrap(), Attempt(2));
        assert_eq!(tb("a b"), format!("ordo/{j8}/1-a-b/2"));
        assert_eq!(tb("  a   b  "), format!("ordo/{j8}/1-a-b/2"));
        assert_eq!(tb("2.1"), format!("ordo/{j8}/1-2.1/2"));
        assert_eq!(tb("??"), format!("ordo/{j8}/1-task/2"));
        assert_eq!(tb("ends.lock"), format!("ordo/{j8}/1-ends-lock/2"));
        assert_eq!(tb("a..b"), format!("ordo/{j8}/1-a.b/2"));
        assert_eq!(
            integration_branch("my job", &job),
            format!("ordo/my-job-{j8}")
        );
        assert_eq!(integration_branch("", &job), format!("ordo/job-{j8}"));
        assert_eq!(j8.len(), 13);

        for bad in [
            "", "-x", "HEAD", "a..b", "x.lock", "a b", "@{u}", "a\nb", "/x", "x/",
        ] {
            assert!(
                check_branch(tmp.path(), "task branch", bad).await.is_err(),
                "{bad:?} accepted"
            );
        }
        for good in ["main", "ordo/x-1", &tb("a b")] {
            check_branch(tmp.path(), "task branch", good).await.unwrap();
        }
    }

    /// Proves the identity rule: the configured user.name / user.email are used, and ordo's
    /// own fills in whichever is missing or empty.
    #[test]
    fn identity_fills_in_what_is_missing() {
        assert!(identity_overrides(Some("A"), Some("a@b")).is_empty());
        assert_eq!(
            identity_overrides(None, None),
            ["-c", "user.name=ordo", "-c", "user.email=ordo@localhost"]
        );
        assert_eq!(
            identity_overrides(Some(""), Some("a@b")),
            ["-c", "user.name=ordo"]
        );
        assert_eq!(
            identity_overrides(Some("A"), None),
            ["-c", "user.email=ordo@localhost"]
        );
    }

    /// Proves many attempts can make and remove their worktrees at the same moment (as the
    /// slots of one runner do): `git worktree add`, `list`, `remove` and `branch -D` read every
    /// worktree's admin files, which a concurrent `worktree add` may be half-way through
    /// writing, and then fail ("failed to read .git/worktrees/<id>/commondir"). Without the
    /// lock that serialises them, some of these ten concurrent attempts fail in every round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_worktrees_made_and_removed_at_once() {
        let fx = Fx::new();
        for attempt in 1..=3u32 {
            let runs = (0..10u32).map(|i| {
                let fx = &fx;
                async move {
                    let ws = fx.ws(i, &format!("t{i}"), attempt);
                    let p = prepare(&ws, &fx.root, &fx.job, TaskIndex(i), Attempt(attempt))
                        .await
                        .map_err(|e| format!("attempt {attempt} of t{i}: {e}"))?;
                    write(&p.worktree.join(format!("t{i}.txt")), "x\n");
                    commit(&p.worktree, &p.base_commit, &ws.task_branch, "work")
                        .await
                        .map_err(|e| format!("attempt {attempt} of t{i}: {e}"))?;
                    remove(&fx.repo, &p.worktree, Some(&ws.task_branch)).await;
                    Ok::<_, String>(())
                }
            });
            let failed: Vec<String> = futures::future::join_all(runs)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            assert!(failed.is_empty(), "{failed:#?}");
        }
        fx.assert_clean();
    }
}
