//! Agent workspaces across machines (docs/design.md, "Agent workspaces"): a worker never works
//! in the shared repository itself. It keeps one cache clone per repository under its own directory
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

use super::git::{check_branch, git, is_oid, read_ref, resolve_commit};
use super::{Error, Prepared, Resolved, Source, Target, default_root, prepare, remove, remove_job};

/// The name of the remote a cache clone fetches from and pushes to.
const ORIGIN: &str = "origin";
/// Longest repository name kept in a cache directory's name.
const MAX_NAME: usize = 40;

/// A worker's cache clones, one per repository, in a slot directory of `root` that no other
/// process uses.
///
/// Several workers (and their restarts) may be given one `root` (the default one, on one
/// host): each takes the first free slot `root/<n>`, free when no live process holds the lock
/// on `root/<n>.lock` (an advisory `flock`, released by the kernel when its holder exits, so a
/// killed worker's slot is free again and its clones are reused). Everything a worker does to
/// its clones (clone, fetch, worktrees, pushes) is then its own; within the process the locks
/// below order it.
pub struct Caches {
    root: PathBuf,
    /// The slot directory, taken on first use (a worker that never runs a worktree job never
    /// needs `root`), with its locked file, held as long as the worker lives.
    slot: tokio::sync::OnceCell<(PathBuf, std::fs::File)>,
    /// One lock per cache clone, held while it fetches or pushes: both update its
    /// remote-tracking refs, which a concurrent fetch of the same repository would fail to lock.
    locks: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Caches {
    pub fn new(root: PathBuf) -> Caches {
        Caches {
            root,
            slot: tokio::sync::OnceCell::new(),
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's slot directory under `root`, taken on first use (see `Caches`).
    pub async fn slot(&self) -> Result<&Path, Error> {
        let (dir, _) = self
            .slot
            .get_or_try_init(|| {
                let root = self.root.clone();
                async move {
                    tokio::task::spawn_blocking(move || take_slot(&root))
                        .await
                        .map_err(|e| Error::Io {
                            path: PathBuf::new(),
                            source: std::io::Error::other(e.to_string()),
                        })?
                }
            })
            .await?;
        Ok(dir)
    }

    /// The directory of `repository`'s cache clone in `slot`: its name and a hash of the whole
    /// address, so two repositories of the same name do not share one.
    pub fn dir_of(slot: &Path, repository: &str) -> PathBuf {
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
        slot.join(format!("{name}-{:016x}", fnv1a(repository.as_bytes())))
    }

    /// The directory of `repository`'s cache clone if this worker has one (nothing fetched).
    async fn clone_of(&self, repository: &str) -> Option<PathBuf> {
        let (slot, _) = self.slot.get()?;
        let dir = Caches::dir_of(slot, repository);
        tokio::fs::metadata(dir.join("HEAD")).await.ok()?;
        Some(dir)
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
        let slot = self.slot().await?;
        let dir = Caches::dir_of(slot, repository);
        let guard = self.lock(&dir).lock_owned().await;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if tokio::fs::metadata(dir.join("HEAD")).await.is_err() {
            // Made aside and renamed into place: a half-made clone is never taken for one.
            let aside = slot.join(format!(".new-{}", fnv1a(repository.as_bytes())));
            let _ = tokio::fs::remove_dir_all(&aside).await;
            git(slot)
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

    /// Pushes `branch` from the cache clone `cache` to the shared `repository`.
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

    /// Deletes the pushed task branch of an attempt (best effort). Once the task's change is on
    /// the integration branch (`integrated`: `Merged`, `Unchanged`), the branches its earlier
    /// attempts left there (a conflicted attempt's stays for its resolve round) go too.
    async fn delete_task_branch(&self, cache: &Path, req: &Integrate, integrated: bool) {
        let _guard = self.lock(cache).lock_owned().await;
        let mut branches = vec![format!("refs/heads/{}", req.task_branch)];
        if integrated
            && let Some((task, _attempt)) = req.task_branch.rsplit_once('/')
            && let Ok(out) = git(cache)
                .args(["ls-remote", ORIGIN])
                .arg(format!("refs/heads/{task}/*"))
                .output()
                .await
            && out.ok()
        {
            for name in out.text().lines().filter_map(|l| l.split_once('\t')) {
                if !branches.iter().any(|b| b == name.1) {
                    branches.push(name.1.to_string());
                }
            }
        }
        if let Ok(out) = git(cache)
            .args(["push", "--quiet", "--no-verify", ORIGIN, "--delete"])
            .args(&branches)
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

/// Attempts through this worker's cache clone of the shared repository (see the module
/// notes). A failed attempt keeps its worktree in the cache (the path is reported).
impl Source for Caches {
    /// Fetches, sets the cache's integration branch to the shared one (or removes it, so that
    /// `prepare` cuts it from `base`), and makes the attempt's worktree in the cache.
    async fn prepare(&self, ws: &Workspace, d: &Dispatch) -> Result<Prepared, Error> {
        let (cache, _guard) = self.sync(&ws.repository).await?;
        // The task's discarded speculative work goes from the shared repository too.
        let discarded: Vec<&str> = super::worktree::discarded_branches(ws).collect();
        if !discarded.is_empty() {
            let _ = git(&cache)
                .args(["push", "--quiet", "--no-verify", ORIGIN, "--delete"])
                .args(&discarded)
                .output()
                .await;
        }
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
        prepare(&in_cache, &root, &d.job, d.index, d.attempt).await
    }

    /// Pushes the task branch (when the attempt committed anything) and removes the worktree:
    /// the work is in the shared repository, and the result's `worktree` is empty.
    async fn publish(&self, ws: &Workspace, prepared: &Prepared, result: &mut TaskResult) {
        let Some(w) = result.workspace.as_mut() else {
            return;
        };
        if w.head != w.base_commit
            && let Err(e) = self
                .push_task_branch(&prepared.repository, &ws.repository, &w.branch)
                .await
        {
            result.outcome = Outcome::Failed;
            result.message = format!("cannot push the task branch {}: {e}", w.branch);
            result.workspace = None;
            return;
        }
        remove(
            &prepared.repository,
            Path::new(&w.worktree),
            Some(&w.branch),
        )
        .await;
        w.worktree.clear();
    }

    /// The cache clone, fetched; the tip is the shared integration branch's, or `base` before
    /// the first integration (the branch does not exist yet: `expected` is `None`).
    async fn target(&self, req: &Integrate) -> Result<Target, Error> {
        let (cache, guard) = self.sync(&req.repository).await?;
        drop(guard);
        check_branch(&cache, "integration branch", &req.integration_branch).await?;
        let expected = read_ref(&cache, &remote_ref(&req.integration_branch)).await?;
        let tip = match &expected {
            Some(tip) => tip.clone(),
            None => resolve_commit(&cache, &req.base)
                .await?
                .ok_or_else(|| Error::Invalid {
                    what: "base",
                    name: req.base.clone(),
                    reason: format!("is not a commit in {}", req.repository),
                })?,
        };
        let root = default_root(&cache.display().to_string()).await?;
        Ok(Target {
            repo: cache,
            root,
            tip,
            expected,
        })
    }

    async fn advance(&self, target: &Target, req: &Integrate, new: &str) -> Result<(), Error> {
        self.push_tip(&target.repo, req, new, target.expected.as_deref())
            .await
    }

    /// The shared task branch is deleted after `Merged` and `Unchanged` (with those of the
    /// task's earlier attempts), and after a failure when the task will run again; it stays
    /// after a conflict (the task's resolve round starts from it, on any worker) and when this
    /// was its last chance (the work is there to look at).
    async fn tidy(&self, req: &Integrate, outcome: &Integration) {
        let Some(cache) = self.clone_of(&req.repository).await else {
            return;
        };
        match outcome {
            Integration::Merged { .. } | Integration::Unchanged { .. } => {
                self.delete_task_branch(&cache, req, true).await;
            }
            Integration::Conflict { .. } => {}
            _ if req.last => {}
            _ => self.delete_task_branch(&cache, req, false).await,
        }
    }
}

impl Caches {
    /// Removes what job `job` left of `repository` (on `ordo.control.prune`): the worktrees
    /// and branches of its attempts in this worker's cache clone, and its task branches in the
    /// shared repository (those a last failed integration kept). Best effort; a worker without
    /// a clone of `repository` has nothing to remove.
    pub async fn prune_job(&self, repository: &str, job: &ordo_proto::JobId) {
        let Some(dir) = self.clone_of(repository).await else {
            return;
        };
        remove_job(&dir.display().to_string(), job).await;
        let _guard = self.lock(&dir).lock_owned().await;
        let listed = git(&dir)
            .args(["ls-remote", ORIGIN])
            .arg(format!(
                "refs/heads/ordo/{}/*",
                ordo_proto::names::job_tag(job)
            ))
            .output()
            .await;
        let Ok(listed) = listed else { return };
        for name in listed
            .text()
            .lines()
            .filter_map(|l| l.split_once('\t').map(|(_, n)| n.to_string()))
        {
            let out = git(&dir)
                .args(["push", "--quiet", "--no-verify", ORIGIN, "--delete", &name])
                .output()
                .await;
            if let Ok(out) = out
                && !out.ok()
                && !out.stderr_text().contains("remote ref does not exist")
            {
                tracing::warn!(branch = %name, error = %out.stderr_text(), "cannot delete a task branch");
            }
        }
    }
}

/// Checks a worktree job's shared repository given as a URL before anything is created: git
/// can reach it without asking anything, `base` (default `HEAD`; a commit id is taken as it
/// is) names a branch or tag there, and the integration branch (when named) is a valid branch
/// name. The errors name what is wrong; nothing is written.
pub async fn resolve_url(
    url: &str,
    base: Option<&str>,
    integration_branch: Option<&str>,
) -> Result<Resolved, Error> {
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
    let found = if is_oid(base_rev) {
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
    Ok(Resolved {
        repository: url.into(),
        base,
    })
}

/// Most slots under one cache root: more workers than this on one disk share nothing but
/// give up on worktree tasks with a message saying so.
const MAX_SLOTS: u32 = 256;

/// Takes the first slot of `root` whose lock no live process holds (blocking file I/O).
fn take_slot(root: &Path) -> Result<(PathBuf, std::fs::File), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    for n in 0..MAX_SLOTS {
        let lock = root.join(format!("{n}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(io(&lock))?;
        match file.try_lock() {
            Ok(()) => {
                let dir = root.join(n.to_string());
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                return Ok((dir, file));
            }
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(source)) => return Err(io(&lock)(source)),
        }
    }
    Err(Error::Io {
        path: root.to_path_buf(),
        source: std::io::Error::other(format!(
            "all {MAX_SLOTS} cache slots are taken by other processes"
        )),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ordo_proto::wire::Resolve;
    use ordo_proto::{Attempt, JobId, Program, TaskIndex, TaskName};

    use super::*;
    use crate::exec::ExecOptions;
    use crate::workspace::integrate;
    use crate::workspace::testkit::g;

    /// A shared bare repository on `main`, a scratch checkout to make task branches in, and
    /// two workers' cache roots.
    struct Fx {
        tmp: tempfile::TempDir,
        shared: String,
        work: PathBuf,
    }

    impl Fx {
        fn new() -> Fx {
            let tmp = tempfile::tempdir().unwrap();
            let work = tmp.path().join("work");
            std::fs::create_dir(&work).unwrap();
            g(&work, &["init", "-q", "-b", "main"]);
            g(&work, &["config", "user.name", "T"]);
            g(&work, &["config", "user.email", "t@ordo.invalid"]);
            std::fs::write(work.join("README.md"), "x\n").unwrap();
            g(&work, &["add", "-A"]);
            g(&work, &["commit", "-q", "-m", "base"]);
            g(tmp.path(), &["clone", "-q", "--bare", "work", "shared.git"]);
            g(&work, &["remote", "add", "shared", "../shared.git"]);
            let shared = tmp.path().join("shared.git").display().to_string();
            Fx { tmp, shared, work }
        }

        fn caches(&self, name: &str) -> Caches {
            Caches::new(self.tmp.path().join(name))
        }

        /// A task branch from `main` adding `file`, pushed to the shared repository.
        fn task_branch(&self, branch: &str, file: &str) -> String {
            g(&self.work, &["checkout", "-q", "-b", branch, "main"]);
            std::fs::write(self.work.join(file), format!("{file}\n")).unwrap();
            g(&self.work, &["add", "-A"]);
            g(&self.work, &["commit", "-q", "-m", file]);
            g(&self.work, &["push", "-q", "shared", branch]);
            g(&self.work, &["rev-parse", "HEAD"])
        }

        fn request(&self, index: u32, branch: &str, head: &str) -> Integrate {
            Integrate {
                job: JobId::new(),
                task: TaskName::new(format!("t{index}")).unwrap(),
                index: TaskIndex(index),
                attempt: Attempt(1),
                repository: self.shared.clone(),
                integration_branch: "it".into(),
                base: g(&self.work, &["rev-parse", "main"]),
                task_branch: branch.into(),
                head: head.into(),
                worktree: String::new(),
                verify: None,
                env: BTreeMap::new(),
                timeout: None,
                last: false,
                queue: "default".into(),
                title: None,
                batch: Vec::new(),
                step: 0,
                onto: Vec::new(),
                verified: None,
            }
        }

        fn tip(&self) -> String {
            g(Path::new(&self.shared), &["rev-parse", "refs/heads/it"])
        }
    }

    /// Proves an integration redone by another worker (the first one died after pushing,
    /// before reporting) reports the merge already on the shared branch, with its files,
    /// and moves nothing; the pushed task branches are deleted once integrated.
    #[tokio::test]
    async fn redone_integration_reports_the_merge_already_made() {
        let fx = Fx::new();
        let (one, two) = (fx.caches("w1"), fx.caches("w2"));
        let opts = ExecOptions::default();
        let a = fx.task_branch("ordo/t/0-a/1", "a.txt");
        let b = fx.task_branch("ordo/t/1-b/1", "b.txt");
        let first = integrate(&fx.request(0, "ordo/t/0-a/1", &a), &one, &opts).await;
        assert!(matches!(first, Integration::Merged { .. }), "{first:?}");
        let req = fx.request(1, "ordo/t/1-b/1", &b);
        let merged = integrate(&req, &one, &opts).await;
        let Integration::Merged { commit, files } = &merged else {
            panic!("{merged:?}");
        };
        assert_eq!(files, &["b.txt"]);
        assert_eq!(&fx.tip(), commit);
        let again = integrate(&req, &two, &opts).await;
        assert_eq!(again, merged, "the redone integration found its merge");
        assert_eq!(&fx.tip(), commit);
        let left = g(Path::new(&fx.shared), &["for-each-ref", "refs/heads/ordo/"]);
        assert_eq!(left, "", "task branches left: {left}");
    }

    /// Proves two integrators can never both advance the shared branch: pushing onto a tip
    /// another worker has moved meanwhile is `Moved`, and the branch keeps the other's value.
    #[tokio::test]
    async fn a_lost_lease_is_moved_and_changes_nothing() {
        let fx = Fx::new();
        let (one, two) = (fx.caches("w1"), fx.caches("w2"));
        let a = fx.task_branch("ordo/t/0-a/1", "a.txt");
        let b = fx.task_branch("ordo/t/1-b/1", "b.txt");
        let req = fx.request(0, "ordo/t/0-a/1", &a);
        let (c1, _g1) = one.sync(&fx.shared).await.unwrap();
        let (c2, _g2) = two.sync(&fx.shared).await.unwrap();
        drop((_g1, _g2));
        // Both saw no integration branch; the first creates it, the second must not.
        one.push_tip(&c1, &req, &a, None).await.unwrap();
        let lost = two.push_tip(&c2, &req, &b, None).await.unwrap_err();
        assert!(matches!(lost, Error::Moved { .. }), "{lost}");
        assert_eq!(fx.tip(), a);
        // And from a known tip: the first to push moves it, the other (who merged onto the
        // same tip) cannot.
        let base = req.base.clone();
        let moved = two.push_tip(&c2, &req, &base, Some(&a)).await;
        assert!(moved.is_ok(), "{moved:?}");
        let lost = one.push_tip(&c1, &req, &b, Some(&a)).await.unwrap_err();
        assert!(matches!(lost, Error::Moved { .. }), "{lost}");
        assert_eq!(fx.tip(), base);
    }

    /// Proves a cluster worker's speculative attempt finds its dependency's work: the task
    /// branch another worker pushed to the shared repository reaches this worker's cache clone
    /// (`sync` fetches every branch) and is merged onto the tip in the worktree.
    #[tokio::test]
    async fn a_pushed_dependency_is_merged_into_a_speculative_worktree() {
        let fx = Fx::new();
        let head = fx.task_branch("ordo/t/0-a/1", "a.txt");
        let ws = Workspace {
            repository: fx.shared.clone(),
            integration_branch: "it".into(),
            base: g(&fx.work, &["rev-parse", "main"]),
            task_branch: "ordo/t/1-b/1".into(),
            conflict: None,
            title: None,
            revise: None,
            speculative: vec![Resolve {
                branch: "ordo/t/0-a/1".into(),
                head: head.clone(),
            }],
            discarded: Vec::new(),
        };
        let name = TaskName::new("b").unwrap();
        let d = Dispatch::new(
            JobId::new(),
            name,
            TaskIndex(1),
            Attempt(1),
            Program::Shell("true".into()),
        );
        let p = fx.caches("w1").prepare(&ws, &d).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(p.worktree.join("a.txt")).unwrap(),
            "a.txt\n"
        );
        assert_eq!(g(&p.worktree, &["rev-parse", "HEAD"]), p.base_commit);
        assert_eq!(g(&p.worktree, &["rev-parse", "HEAD^2"]), head);
        assert_eq!(g(&p.worktree, &["rev-parse", "HEAD^1"]), ws.base);
    }

    /// Proves repositories that share a name get cache clones of their own.
    #[test]
    fn cache_directories_differ_per_repository() {
        let slot = Path::new("/cache/0");
        let a = Caches::dir_of(slot, "/srv/a/app.git");
        let b = Caches::dir_of(slot, "https://example.com/b/app.git");
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("app-"));
        assert_eq!(a, Caches::dir_of(slot, "/srv/a/app.git"));
    }
}
