//! The user's repository as the source of attempts (the local runner): worktrees are made in
//! it (under `default_root`, its git directory), task branches stay in it, and the
//! integration branch moves with `git update-ref NEW OLD` (compare-and-swap). Also the check
//! of a worktree job's repository before the job is recorded (`resolve`).

use std::path::{Path, PathBuf};

use ordo_proto::wire::{Integrate, Integration, Workspace};
use ordo_proto::{Dispatch, TaskResult};

use super::git::{
    admin, check_branch, git, git_common_dir, list_worktrees, open_repository, read_ref,
    refuse_checked_out, resolve_commit,
};
use super::integrate::integrate_title;
use super::worktree::{DEFAULT_ROOT, remove};
use super::{Error, Prepared, Source, Target, default_root, prepare};

/// Attempts made in the user's repository, the one each dispatch names: worktrees under the
/// repository's `default_root`, or under one root given for all (`with_root`).
#[derive(Clone, Debug, Default)]
pub struct Local {
    root: Option<PathBuf>,
}

impl Local {
    /// Worktrees under each repository's `default_root`.
    pub fn new() -> Local {
        Local::default()
    }

    /// Worktrees (and scratch worktrees of integration verifies) under `root`.
    pub fn with_root(root: PathBuf) -> Local {
        Local { root: Some(root) }
    }
}

impl Source for Local {
    async fn prepare(&self, ws: &Workspace, d: &Dispatch) -> Result<Prepared, Error> {
        let root = match &self.root {
            Some(root) => root.clone(),
            None => default_root(&ws.repository).await?,
        };
        prepare(ws, &root, &d.job, d.index, d.attempt).await
    }

    /// The branch is in the repository already, the worktree stays until integrated.
    async fn publish(&self, _ws: &Workspace, _prepared: &Prepared, _result: &mut TaskResult) {}

    /// The repository itself; its integration branch must exist (the first attempt made it)
    /// and be checked out nowhere.
    async fn target(&self, req: &Integrate) -> Result<Target, Error> {
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
        let root = match &self.root {
            Some(root) => root.clone(),
            None => git_common_dir(&repo).await?.join(DEFAULT_ROOT),
        };
        Ok(Target {
            repo,
            root,
            expected: Some(tip.clone()),
            tip,
        })
    }

    async fn advance(&self, target: &Target, req: &Integrate, new: &str) -> Result<(), Error> {
        let expected = target.expected.as_deref().unwrap_or("");
        let reason = integrate_title(req);
        advance(
            &target.repo,
            &req.integration_branch,
            new,
            expected,
            &reason,
        )
        .await
    }

    /// Integrated: the worktree and branch go, with the branches of the task's earlier
    /// attempts. Not integrated, when the task will run again: the worktree goes, and the
    /// branch too unless it conflicted (its resolve round starts from it). After the task's
    /// last chance everything stays to be looked at.
    async fn tidy(&self, req: &Integrate, outcome: &Integration) {
        let Ok(repo) = open_repository(&req.repository).await else {
            return;
        };
        let worktree = Path::new(&req.worktree);
        match outcome {
            Integration::Merged { .. } | Integration::Unchanged { .. } => {
                remove(&repo, worktree, Some(&req.task_branch)).await;
                remove_earlier_branches(&repo, &req.task_branch).await;
            }
            _ if req.last => {}
            Integration::Conflict { .. } => remove(&repo, worktree, None).await,
            _ => remove(&repo, worktree, Some(&req.task_branch)).await,
        }
    }
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

/// Moves `refs/heads/<branch>` from `expected` to `new`, atomically; `Error::Moved` when it is
/// no longer at `expected`.
pub(super) async fn advance(
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

#[cfg(test)]
mod tests {
    use ordo_proto::wire::{Integration, WorkspaceResult};
    use ordo_proto::{Attempt, TaskIndex};

    use super::*;
    use crate::workspace::testkit::*;

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
        let out = fx.integrate(&fx.request(&ws, &r, 0, "in bare")).await;
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
        let Integration::Failed { message } = fx.integrate(&req).await else {
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
                lines: Vec::new(),
            };
            let Integration::Failed { message } = fx.integrate(&fx.request(&ws, &r, 0, "t")).await
            else {
                panic!("not failed");
            };
            assert!(
                message.contains(repository) && message.contains(says),
                "{message}"
            );
        }
    }
}
