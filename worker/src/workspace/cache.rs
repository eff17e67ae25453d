//! Agent workspaces across machines (DESIGN §10, distributed): a worker never works in the
//! shared repository itself. It keeps one cache clone per repository under its own directory
//! (a bare repository, cloned once and then only fetched), makes each attempt's worktree
//! there, and pushes the task branch back. An integration it is sent merges in its cache (the
//! same plan, verify and merge commit as on one machine) and moves the shared integration
//! branch with `git push --force-with-lease` on the tip it merged onto: two integrators can
//! never both advance it, and the one that loses the race reports `Failed` ("moved"), which the
//! engine retries from the new tip like a conflict. A redone integration (its worker died
//! after pushing) finds its own merge on the branch and reports it again.
//!
//! The repository is a path or a URL that git can fetch from and push to without asking
//! anything (`GIT_TERMINAL_PROMPT=0`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ordo_proto::wire::{Integrate, Integration, Workspace};
use ordo_proto::{Dispatch, Outcome, TaskResult};

use super::{
    Error, Plan, changed_files, check_branch, default_root, git, plan, prepare, read_ref, remove,
    resolve_commit, run_prepared, verify_at,
};
use crate::exec::{self, ExecOptions, OutputChunk};

/// The name of the remote a cache clone fetches from and pushes to.
const ORIGIN: &str = "origin";
/// Longest repository name kept in a cache directory's name.
const MAX_NAME: usize = 40;

/// A worker's cache clones, one per repository, under `root`.
pub struct Caches {
    root: PathBuf,
    /// One lock per cache clone, held while it fetches or pushes: both update its
    /// remote-tracking refs, which a concurrent fetch of the same repository would fail to lock.
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Caches {
    pub fn new(root: PathBuf) -> Caches {
        Caches {
            root,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `repository`'s cache clone: its name and a hash of the whole address,
    /// so two repositories of the same name do not share one.
    pub fn dir_of(&self, repository: &str) -> PathBuf {
        let trimmed = repository.trim_end_matches('/');
        let last = trimmed.rsplit(['/', ':']).next().unwrap_or("");
        let last = last.strip_suffix(".git").unwrap_or(last);
        let mut name: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(MAX_NAME)
            .collect();
        if name.is_empty() {
            name.push_str("repo");
        }
        self.root
            .join(format!("{name}-{:016x}", fnv1a(repository.as_bytes())))
    }

    fn lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    /// The cache clone of `repository`, made if missing, then fetched (every branch; pruned).
    /// Returns its directory and its lock, held: the caller may move refs before releasing it.
    async fn sync(
        &self,
        repository: &str,
    ) -> Result<(PathBuf, tokio::sync::OwnedMutexGuard<()>), Error> {
        let dir = self.dir_of(repository);
        let guard = self.lock(&dir).lock_owned().await;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if tokio::fs::metadata(dir.join("HEAD")).await.is_err() {
            tokio::fs::create_dir_all(&self.root)
                .await
                .map_err(io(&self.root))?;
            // Made aside and renamed into place: a half-made clone is never taken for one.
            let aside = self.root.join(format!(
                ".new-{}-{}",
                std::process::id(),
                fnv1a(repository.as_bytes())
            ));
            let _ = tokio::fs::remove_dir_all(&aside).await;
            git(&self.root)
                .args(["init", "--quiet", "--bare"])
                .arg(&aside)
                .run()
                .await?;
            git(&aside)
                .args(["remote", "add", ORIGIN, repository])
                .run()
                .await?;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            tokio::fs::rename(&aside, &dir).await.map_err(io(&dir))?;
        }
        let fetched = git(&dir)
            .args(["fetch", "--quiet", "--prune", "--no-tags", ORIGIN])
            .output()
            .await?;
        if !fetched.ok() {
            return Err(Error::Repository {
                path: repository.into(),
                reason: format!("cannot fetch from it: {}", fetched.stderr_text()),
            });
        }
        Ok((dir, guard))
    }

    /// Runs one attempt of a worktree job through the cache clone of its repository: fetches,
    /// cuts the task branch from the shared integration branch as it stands (from `base` when
    /// it does not exist yet), runs and commits as on one machine, then pushes the task branch
    /// and removes the worktree (the work is in the shared repository; the result's `worktree`
    /// is empty). A failed attempt keeps its worktree in the cache (the path is reported). A
    /// dispatch without a workspace runs as `exec::run` does.
    pub async fn run_attempt(
        &self,
        d: &Dispatch,
        opts: &ExecOptions,
        cancel: impl std::future::Future<Output = ()>,
        output: Option<tokio::sync::mpsc::Sender<OutputChunk>>,
    ) -> TaskResult {
        let Some(ws) = &d.workspace else {
            return exec::run(d, opts, cancel, output).await;
        };
        let started = ordo_proto::now_ms();
        let made = self.prepare(ws, d).await;
        let cache = made.as_ref().ok().map(|(cache, _)| cache.clone());
        let prepared = made.map(|(_, p)| p);
        let mut result = run_prepared(d, ws, prepared, started, opts, cancel, output).await;
        let (Some(cache), Some(w)) = (cache, result.workspace.as_mut()) else {
            return result;
        };
        if w.head != w.base_commit
            && let Err(e) = self
                .push_task_branch(&cache, &ws.repository, &w.branch)
                .await
        {
            result.outcome = Outcome::Failed;
            result.message = format!("cannot push the task branch {}: {e}", w.branch);
            result.workspace = None;
            return result;
        }
        remove(&cache, Path::new(&w.worktree), Some(&w.branch)).await;
        w.worktree.clear();
        result
    }

    /// Fetches, sets the cache's integration branch to the shared one (or removes it, so that
    /// `prepare` cuts it from `base`), and makes the attempt's worktree in the cache.
    async fn prepare(
        &self,
        ws: &Workspace,
        d: &Dispatch,
    ) -> Result<(PathBuf, super::Prepared), Error> {
        let (cache, _guard) = self.sync(&ws.repository).await?;
        check_branch(&cache, "integration branch", &ws.integration_branch).await?;
        let local = format!("refs/heads/{}", ws.integration_branch);
        match read_ref(&cache, &remote_ref(&ws.integration_branch)).await? {
            Some(tip) => {
                git(&cache).args(["update-ref", &local, &tip]).run().await?;
            }
            None => {
                let _ = git(&cache)
                    .args(["update-ref", "-d", &local])
                    .output()
                    .await;
            }
        }
        let in_cache = Workspace {
            repository: cache.display().to_string(),
            ..ws.clone()
        };
        let root = default_root(&in_cache.repository).await?;
        let prepared = prepare(&in_cache, &root, &d.job, d.index, d.attempt).await?;
        Ok((cache, prepared))
    }

    async fn push_task_branch(
        &self,
        cache: &Path,
        repository: &str,
        branch: &str,
    ) -> Result<(), Error> {
        let _guard = self.lock(cache).lock_owned().await;
        let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        let out = git(cache)
            .args(["push", "--quiet", "--no-verify", ORIGIN, &spec])
            .output()
            .await?;
        if out.ok() {
            return Ok(());
        }
        Err(Error::Repository {
            path: repository.into(),
            reason: format!("push refused: {}", out.stderr_text()),
        })
    }

    /// Integrates an attempt whose task branch was pushed to the shared repository (see the
    /// module notes). Never panics and never errors: every failure is an `Integration` value.
    /// The shared task branch is deleted after `Merged` and `Unchanged`, and after any other
    /// outcome when the task will run again; it stays when this was its last chance (the work
    /// is there to look at).
    pub async fn integrate(&self, req: &Integrate, opts: &ExecOptions) -> Integration {
        match self.try_integrate(req, opts).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if !req.last
                    && let Ok((cache, guard)) = self.sync(&req.repository).await
                {
                    drop(guard);
                    self.delete_task_branch(&cache, req).await;
                }
                Integration::Failed {
                    message: e.to_string(),
                }
            }
        }
    }

    async fn try_integrate(
        &self,
        req: &Integrate,
        opts: &ExecOptions,
    ) -> Result<Integration, Error> {
        let (cache, guard) = self.sync(&req.repository).await?;
        drop(guard);
        check_branch(&cache, "integration branch", &req.integration_branch).await?;
        let shared_tip = read_ref(&cache, &remote_ref(&req.integration_branch)).await?;
        let tip = match &shared_tip {
            Some(tip) => tip.clone(),
            None => resolve_commit(&cache, &req.base)
                .await?
                .ok_or_else(|| Error::Invalid {
                    what: "base",
                    name: req.base.clone(),
                    reason: format!("is not a commit in {}", req.repository),
                })?,
        };
        let head = resolve_commit(&cache, &req.head)
            .await?
            .ok_or_else(|| Error::Invalid {
                what: "task head",
                name: req.head.clone(),
                reason: format!(
                    "is not in {} (task branch {} was not pushed?)",
                    req.repository, req.task_branch
                ),
            })?;
        let new = match plan(&cache, req, &tip, &head).await? {
            Plan::Ended(outcome) => {
                let conflict = matches!(outcome, Integration::Conflict { .. });
                if !conflict && shared_tip.is_none() {
                    // The branch exists from the first integration on, changed or not.
                    self.push_tip(&cache, req, &tip, None).await?;
                }
                if !conflict || !req.last {
                    self.delete_task_branch(&cache, req).await;
                }
                return Ok(outcome);
            }
            Plan::Commit(new) => new,
        };
        if let Some(verify) = &req.verify {
            let root = default_root(&cache.display().to_string()).await?;
            if let Some(failed) = verify_at(&cache, &root, req, verify, &new, opts).await? {
                if !req.last {
                    self.delete_task_branch(&cache, req).await;
                }
                return Ok(failed);
            }
        }
        self.push_tip(&cache, req, &new, shared_tip.as_deref())
            .await?;
        let files = changed_files(&cache, &tip, &new).await?;
        self.delete_task_branch(&cache, req).await;
        Ok(Integration::Merged { commit: new, files })
    }

    /// Moves the shared integration branch to `new` if it is still at `expected` (`None`: if
    /// it does not exist yet); `Error::Moved` when another integrator moved it first.
    async fn push_tip(
        &self,
        cache: &Path,
        req: &Integrate,
        new: &str,
        expected: Option<&str>,
    ) -> Result<(), Error> {
        let _guard = self.lock(cache).lock_owned().await;
        let branch = format!("refs/heads/{}", req.integration_branch);
        let lease = format!("--force-with-lease={branch}:{}", expected.unwrap_or(""));
        let out = git(cache)
            .args(["push", "--quiet", "--no-verify", &lease, ORIGIN])
            .arg(format!("{new}:{branch}"))
            .output()
            .await?;
        if out.ok() {
            return Ok(());
        }
        let now = git(cache)
            .args(["ls-remote", ORIGIN, &branch])
            .output()
            .await?;
        let found = now
            .ok()
            .then(|| now.text())
            .and_then(|line| line.split_whitespace().next().map(str::to_string));
        if found.as_deref() == expected || !now.ok() {
            return Err(Error::Repository {
                path: req.repository.clone().into(),
                reason: format!(
                    "cannot push the integration branch {}: {}",
                    req.integration_branch,
                    out.stderr_text()
                ),
            });
        }
        Err(Error::Moved {
            branch: req.integration_branch.clone(),
            expected: expected.unwrap_or("(none)").to_string(),
            found,
        })
    }

    /// Deletes the pushed task branch of an integrated attempt (best effort).
    async fn delete_task_branch(&self, cache: &Path, req: &Integrate) {
        let _guard = self.lock(cache).lock_owned().await;
        let branch = format!("refs/heads/{}", req.task_branch);
        if let Ok(out) = git(cache)
            .args([
                "push",
                "--quiet",
                "--no-verify",
                ORIGIN,
                "--delete",
                &branch,
            ])
            .output()
            .await
            && !out.ok()
            && !out.stderr_text().contains("remote ref does not exist")
        {
            tracing::warn!(branch = %req.task_branch, error = %out.stderr_text(), "cannot delete the task branch");
        }
        let _ = git(cache)
            .args(["branch", "-D", &req.task_branch])
            .output()
            .await;
    }
}

/// Whether `repository` is a URL (`scheme://...`) rather than a path.
pub fn is_url(repository: &str) -> bool {
    repository.contains("://")
}

/// Checks a worktree job's shared repository given as a URL before anything is created: git
/// can reach it without asking anything, `base` (default `HEAD`; a commit id is taken as it
/// is) names a branch or tag there, and the integration branch (when named) is a valid branch
/// name. The errors name what is wrong; nothing is written.
pub async fn resolve_url(
    url: &str,
    base: Option<&str>,
    integration_branch: Option<&str>,
) -> Result<super::Resolved, Error> {
    let scratch = std::env::temp_dir();
    if let Some(branch) = integration_branch {
        check_branch(&scratch, "target_branch", branch).await?;
    }
    let listed = git(&scratch)
        .args(["ls-remote", "--", url])
        .output()
        .await?;
    if !listed.ok() {
        return Err(Error::Repository {
            path: url.into(),
            reason: format!("cannot be reached: {}", listed.stderr_text()),
        });
    }
    let base_rev = base.unwrap_or("HEAD");
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    let found = if super::is_oid(base_rev) {
        Some(base_rev.to_string())
    } else {
        let wanted = [
            base_rev.to_string(),
            format!("refs/heads/{base_rev}"),
            format!("refs/tags/{base_rev}^{{}}"),
            format!("refs/tags/{base_rev}"),
        ];
        wanted.iter().find_map(|w| {
            text.lines().find_map(|line| {
                let (oid, name) = line.split_once('\t')?;
                (name == w).then(|| oid.to_string())
            })
        })
    };
    let base = found.ok_or_else(|| Error::Invalid {
        what: "base",
        name: base_rev.to_string(),
        reason: format!("names no branch or tag in {url}"),
    })?;
    Ok(super::Resolved {
        repository: url.into(),
        base,
    })
}

/// Where a cache clone keeps the shared repository's `branch`.
fn remote_ref(branch: &str) -> String {
    format!("refs/remotes/{ORIGIN}/{branch}")
}

/// FNV-1a, 64 bits: a stable hash for directory names (std's hasher may change between
/// releases, which would orphan every cache clone).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
