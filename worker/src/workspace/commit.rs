//! Committing what an attempt changed in its worktree, refusing work that cannot be
//! attributed safely (the task switched branches, detached HEAD or deleted the `.git`).

use std::path::Path;

use ordo_proto::wire::WorkspaceResult;

use super::Error;
use super::git::{changed_files, git, identity, line_counts, open_worktree};

/// Commits what the task changed in `worktree` (everything, `git add -A`, ignored files
/// excepted) if anything, and reports the attempt's branch, head and changed files. A task
/// that committed itself is fine: `head` is whatever the branch points at then. A task that
/// changed nothing gives `head == base_commit` and no files.
///
/// `files` are the paths that differ between `base_commit` and `head` (renames as a deletion
/// and an addition), sorted; `lines` their lines added and removed.
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
    let lines = line_counts(&wt, base_commit, &head).await?;
    Ok(WorkspaceResult {
        branch: branch.to_string(),
        base_commit: base_commit.to_string(),
        head,
        files,
        worktree: wt.to_string_lossy().into_owned(),
        unresolved: Vec::new(),
        resolved: false,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::remove;
    use crate::workspace::testkit::*;

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
}
