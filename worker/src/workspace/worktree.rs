//! Attempts' worktrees and branches in a repository (the user's, or a cache clone): made at
//! `<root>/<job tag>/<index>-<attempt>` on the task branch (the integration branch created at
//! `base` by the first attempt), found and removed again. Worktree administration holds the
//! repository's admin lock (`git::admin`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use ordo_proto::names::job_tag;
use ordo_proto::wire::{Resolve, Workspace};
use ordo_proto::{Attempt, JobId, TaskIndex};

use super::Error;
use super::conflict::{merge_for_resolve, unmerged_files};
use super::git::{
    WorktreeEntry, admin, check_branch, git, git_common_dir, identity, is_url, list_worktrees,
    open_repository, ordo_root, read_ref, refuse_checked_out, resolve_commit,
};

/// Where the worktrees of a repository's attempts go: `ordo-worktrees/` in its git directory,
/// out of its working tree (so `git status` never shows them) and kept across runs (a task
/// that failed keeps its worktree there).
pub async fn default_root(repository: &str) -> Result<PathBuf, Error> {
    let repo = open_repository(repository).await?;
    Ok(git_common_dir(&repo).await?.join(DEFAULT_ROOT))
}

/// The name of `default_root` in a repository's git directory.
pub(super) const DEFAULT_ROOT: &str = "ordo-worktrees";

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
    if is_url(repository) {
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

/// A worktree made for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The repository the worktree belongs to (absolute).
    pub repository: PathBuf,
    /// Absolute path of the worktree, on the task branch.
    pub worktree: PathBuf,
    /// The integration branch's tip the task branch was cut from (for a resolve round: the
    /// tip merged into the conflicted attempt's work; for a speculative attempt: the tip with
    /// its dependencies' work merged, so its change is its own).
    pub base_commit: String,
    /// A resolve round: the files the merge of the tip left conflict markers in.
    pub resolving: Option<Vec<String>>,
}

/// Makes the worktree of one attempt: `root/<job8>/<index>-<attempt>`, on a new branch
/// `ws.task_branch` cut from the tip of `ws.integration_branch`, which is created at `ws.base`
/// if it does not exist yet (atomically: when several attempts race to create it, one wins
/// and the others use its value).
///
/// A speculative attempt (`ws.speculative`, docs/design.md "Integration queue: speculation")
/// then merges its dependencies' heads, in order, onto the tip in the worktree; one that is not
/// in the repository or does not merge cleanly is `Error::Speculative`, and the worktree and
/// branch are removed again.
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
    remove_discarded(&repo, ws).await;
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
    // A revise round (an approval rejected to revise) starts from the task's work as it was;
    // a resolve round from the conflicted attempt's, with the tip merged in below.
    let resolve = ws.conflict.as_ref().and_then(|c| c.resolve.as_ref());
    let from = match (&ws.revise, resolve) {
        (Some(r), _) => Some((r, "revise round")),
        (None, Some(r)) => Some((r, "resolve round")),
        (None, None) => None,
    };
    let start = match from {
        Some((r, what)) => resolve_commit(&repo, &r.head)
            .await?
            .ok_or_else(|| Error::Invalid {
                what,
                name: r.branch.clone(),
                reason: format!("its commit {} is not in the repository", r.head),
            })?,
        None => base_commit.clone(),
    };
    let resolve = resolve.filter(|_| ws.revise.is_none());
    // Revise and resolve rounds start from the task's own work and are never speculative:
    // `speculative` is ignored for them (the engine never sends both).
    let speculative = match from {
        Some((_, what)) if !ws.speculative.is_empty() => {
            tracing::warn!(branch = %ws.task_branch, "a {what} is never speculative: its speculative base is ignored");
            &[][..]
        }
        Some(_) => &[][..],
        None => &ws.speculative[..],
    };
    git(&repo)
        .args(["worktree", "add", "-b", &ws.task_branch])
        .arg(&worktree)
        .arg(&start)
        .run()
        .await?;
    // A speculative attempt's change is counted from its base, the tip with its
    // dependencies' work merged: its files are its own.
    let base_commit = match speculative_base(&repo, &worktree, speculative).await {
        Ok(None) => base_commit,
        Ok(Some(head)) => head,
        Err(e) => {
            // Nothing of the attempt ran: its worktree and branch go.
            if let Err(e) = remove_worktree(&repo, &worktree, true).await {
                tracing::warn!(worktree = %worktree.display(), error = %e, "cannot remove worktree");
            }
            let _ = git(&repo)
                .args(["branch", "-D", &ws.task_branch])
                .output()
                .await;
            return Err(e);
        }
    };
    let resolving = match resolve {
        Some(_) => Some(merge_for_resolve(&worktree, &base_commit).await?),
        None => None,
    };
    // A revise round's change is counted from where its work was cut (the tip may have
    // moved since): its files are its own, and integration merges it as any other.
    let base_commit = match &ws.revise {
        Some(_) => {
            let out = git(&repo)
                .args(["merge-base", &base_commit, &start])
                .run()
                .await?;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
        None => base_commit,
    };
    Ok(Prepared {
        repository: repo,
        worktree,
        base_commit,
        resolving,
    })
}

/// Makes a speculative attempt's base in `worktree` (just made at the integration tip): merges
/// each dependency's head, in order, with a merge commit of its own (ordo's identity, no
/// hooks; the repository's merge drivers apply), and returns the worktree's HEAD after them
/// (`None` when there is nothing to merge). A head not in `repo`, or a merge that does not go
/// cleanly (aborted, so the worktree is never left half-merged), is `Error::Speculative`
/// naming the dependency's branch (and the files in conflict).
async fn speculative_base(
    repo: &Path,
    worktree: &Path,
    speculative: &[Resolve],
) -> Result<Option<String>, Error> {
    if speculative.is_empty() {
        return Ok(None);
    }
    let identity = identity(worktree).await?;
    for dep in speculative {
        let failed = |reason: String| Error::Speculative {
            branch: dep.branch.clone(),
            reason,
        };
        let Some(head) = resolve_commit(repo, &dep.head).await? else {
            return Err(failed(format!(
                "its commit {} is not in the repository {}",
                dep.head,
                repo.display()
            )));
        };
        let out = git(worktree)
            .args(&identity)
            .args([
                "merge",
                "--no-ff",
                "--no-edit",
                "--no-verify",
                "--quiet",
                "-m",
            ])
            .arg(format!("ordo: speculative base: {}", dep.branch))
            .arg(&head)
            .output()
            .await?;
        if out.ok() {
            continue;
        }
        let files = unmerged_files(worktree).await.unwrap_or_default();
        let _ = git(worktree).args(["merge", "--abort"]).output().await;
        let short = &head[..head.len().min(12)];
        return Err(failed(if files.is_empty() {
            format!(
                "its commit {short} does not merge onto the integration tip: {}",
                out.stderr_text()
            )
        } else {
            format!(
                "its commit {short} conflicts with the integration tip in {}",
                files.join(", ")
            )
        }));
    }
    let head = git(worktree)
        .args(["rev-parse", "--verify", "HEAD^{commit}"])
        .text()
        .await?;
    Ok(Some(head))
}

/// The task's branches of `ws.discarded` (its speculative run's work, discarded), with the
/// worktree that has one checked out: removed before the next attempt starts. Only branches
/// of the same task (`ordo/<job>/<index>-<name>/<attempt>`) are touched. Best effort.
async fn remove_discarded(repo: &Path, ws: &Workspace) {
    if ws.discarded.is_empty() {
        return;
    }
    let listed = list_worktrees(repo).await.unwrap_or_default();
    for branch in discarded_branches(ws) {
        let full = format!("refs/heads/{branch}");
        match listed
            .iter()
            .skip(1)
            .find(|w| w.branch.as_deref() == Some(&full))
        {
            Some(w) => remove(repo, &w.path, Some(branch)).await,
            None => {
                let _ = git(repo).args(["branch", "-D", branch]).output().await;
            }
        }
    }
}

/// The branches of `ws.discarded` that are this task's own (its task branch's siblings).
pub(super) fn discarded_branches(ws: &Workspace) -> impl Iterator<Item = &str> {
    let task = ws.task_branch.rsplit_once('/').map(|(t, _)| t);
    ws.discarded
        .iter()
        .map(|d| d.branch.as_str())
        .filter(move |b| {
            task.is_some_and(|t| b.rsplit_once('/').is_some_and(|(p, _)| p == t))
                && *b != ws.task_branch
        })
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
pub(super) async fn remove_worktree(
    repo: &Path,
    path: &Path,
    may_delete: bool,
) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    use ordo_proto::Outcome;
    use ordo_proto::wire::{Integration, WorkspaceResult};

    use super::*;
    use crate::exec::ExecOptions;
    use crate::workspace::testkit::*;
    use crate::workspace::{Local, commit, run_attempt};

    /// A dependency's work, as a speculative attempt names it.
    fn dep(ws: &Workspace, r: &WorkspaceResult) -> Resolve {
        Resolve {
            branch: ws.task_branch.clone(),
            head: r.head.clone(),
        }
    }

    /// Proves a speculative attempt starts on the tip with its dependencies' work merged, in
    /// order, a merge commit each, the integration branch unmoved; and that its result counts
    /// its change from there: `files`, `lines` and `base_commit` are its own change only.
    #[tokio::test]
    async fn a_speculative_attempt_starts_on_its_dependencies_work_and_reports_its_own() {
        let fx = Fx::new();
        let (ws_a, a) = fx
            .attempt(0, "a", 1, |wt| write(&wt.join("a.txt"), "a\n"))
            .await;
        let (ws_b, b) = fx
            .attempt(1, "b", 1, |wt| write(&wt.join("b.txt"), "b\n"))
            .await;
        let tip = fx.tip();
        let mut ws = fx.ws(2, "c", 1);
        ws.speculative = vec![dep(&ws_a, &a), dep(&ws_b, &b)];
        let command = "test -f a.txt && test -f b.txt && echo c > c.txt";
        let d = dispatch(&fx, Some(ws), 2, "c", command);
        let local = Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();
        let r = run_attempt(&d, &opts, std::future::pending(), None, &local)
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded, "{}", r.message);
        let w = r.workspace.unwrap();
        assert_eq!(w.files, ["c.txt"]);
        let lines: Vec<&str> = w.lines.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(lines, ["c.txt"]);
        let rev = |r: String| g(&fx.repo, &["rev-parse", &r]);
        let base = &w.base_commit;
        assert_eq!(rev(format!("{base}^1^1")), tip, "a merged onto the tip");
        assert_eq!(rev(format!("{base}^1^2")), a.head);
        assert_eq!(rev(format!("{base}^2")), b.head, "then b");
        assert_eq!(
            rev(format!("{}^", w.head)),
            *base,
            "the task's commit on it"
        );
        let subject = g(&fx.repo, &["log", "-1", "--format=%s", base]);
        assert_eq!(
            subject,
            format!("ordo: speculative base: {}", ws_b.task_branch)
        );
        assert_eq!(fx.tip(), tip, "the integration branch did not move");

        // Kept: once its dependencies integrate, it merges onto the real tip, its own file.
        for (i, name, ws, r) in [(0, "a", &ws_a, &a), (1, "b", &ws_b, &b)] {
            let merged = fx.integrate(&fx.request(ws, r, i, name)).await;
            assert!(matches!(merged, Integration::Merged { .. }), "{merged:?}");
        }
        let ws_c = fx.ws(2, "c", 1);
        let merged = fx.integrate(&fx.request(&ws_c, &w, 2, "c")).await;
        let Integration::Merged { files, .. } = &merged else {
            panic!("{merged:?}");
        };
        assert_eq!(files, &["c.txt"]);
        assert_eq!(fx.show("c.txt"), "c");
        assert_eq!(fx.show("a.txt"), "a");
    }

    /// Proves a dependency whose work conflicts with the tip, or is not in the repository,
    /// makes no speculative base: the error names its branch (and the file in conflict), the
    /// worktree and task branch are gone (nothing left half-merged), the integration branch
    /// is unmoved; through `run_attempt` the attempt fails with that message, its command not
    /// run (not an unprepared workspace, which would be tried again).
    #[tokio::test]
    async fn a_dependency_that_does_not_merge_makes_no_speculative_base() {
        let fx = Fx::new();
        let (ws_a, a) = fx
            .attempt(0, "a", 1, |wt| write(&wt.join("a.txt"), "a\n"))
            .await;
        let (ws_b, b) = fx
            .attempt(1, "b", 1, |wt| {
                write(&wt.join("same.txt"), "one\nb\nthree\n")
            })
            .await;
        // x changes the same line and integrates first: b no longer merges onto the tip.
        let (ws_x, x) = fx
            .attempt(2, "x", 1, |wt| {
                write(&wt.join("same.txt"), "one\nx\nthree\n")
            })
            .await;
        let req = fx.request(&ws_x, &x, 2, "x");
        let merged = fx.integrate(&req).await;
        assert!(matches!(merged, Integration::Merged { .. }), "{merged:?}");
        let tip = fx.tip();

        let mut ws = fx.ws(3, "c", 1);
        ws.speculative = vec![dep(&ws_a, &a), dep(&ws_b, &b)];
        let fx = &fx;
        let prepare_c = |ws: Workspace| async move {
            prepare(&ws, &fx.root, &fx.job, TaskIndex(3), Attempt(1)).await
        };
        let e = prepare_c(ws.clone()).await.unwrap_err();
        assert!(matches!(e, Error::Speculative { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("the speculative base could not be made")
                && e.contains(&ws_b.task_branch)
                && e.contains("conflicts with the integration tip in same.txt"),
            "{e}"
        );
        let worktree = fx.root.join(job_tag(&fx.job)).join("3-1");
        assert!(!worktree.exists(), "the worktree is left");
        assert!(
            !fx.worktrees().iter().any(|w| w.ends_with("3-1")),
            "{:?}",
            fx.worktrees()
        );
        assert!(!fx.branch_exists(&ws.task_branch));
        assert_eq!(fx.tip(), tip);

        let gone = Resolve {
            branch: "ordo/gone/0-z/1".into(),
            head: "0".repeat(40),
        };
        ws.speculative = vec![gone];
        let e = prepare_c(ws.clone()).await.unwrap_err().to_string();
        assert!(
            e.contains("ordo/gone/0-z/1") && e.contains("is not in the repository"),
            "{e}"
        );
        assert!(!worktree.exists());

        ws.speculative = vec![dep(&ws_b, &b)];
        let marker = fx.tmp.path().join("ran");
        let command = format!("touch {}", marker.display());
        let d = dispatch(fx, Some(ws.clone()), 3, "c", &command);
        let local = Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();
        let r = run_attempt(&d, &opts, std::future::pending(), None, &local)
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains(&ws_b.task_branch), "{}", r.message);
        assert!(r.workspace.is_none());
        assert!(!marker.exists(), "the command ran");
        assert!(!fx.branch_exists(&ws.task_branch));
        assert_eq!(fx.tip(), tip);
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
            fx.integrate(&req).await,
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
