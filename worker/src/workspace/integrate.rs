//! Integrating one attempt into the integration branch, whatever the source: plan the merge
//! with `git merge-tree` (a conflict changes nothing; the repository's merge drivers apply),
//! build it with `git commit-tree`, run the integration verify in a scratch worktree at it,
//! and have the source move the branch by compare-and-swap (`Source::advance`). A redone
//! integration finds its own earlier merge on the branch and reports it again. A batch
//! (`integrate_batch`) merges its tasks in turn and does the rest once for all of them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ordo_proto::names::job_tag;
use ordo_proto::wire::{Integrate, Integration, ItemOutcome};
use ordo_proto::{Dispatch, Outcome, Program, Verify};

use super::git::{
    WORKTREE_ADMIN, admin, admin_lock_path, changed_files, git, identity, is_ancestor, is_oid,
    lock_file, nul_fields, ordo_root, resolve_commit,
};
use super::worktree::remove_worktree;
use super::{Error, Source};
use crate::exec::{self, ExecOptions};

/// Bytes of output a failed integration verify keeps in `VerifyFailed::output_tail`.
pub const VERIFY_TAIL_BYTES: usize = 4096;
/// Directory under the worktree root that holds the scratch worktrees of integration verifies.
const INTEGRATE_DIR: &str = "integrate";

/// Integrates `req.head` into `req.integration_branch` in the repository `source` gives
/// (`Source::target`). Never panics and never errors: every failure is an `Integration`
/// value, and the branch moves only for `Merged`.
///
/// - `head` already on the branch (an ancestor of the tip, or the tip): `Merged` with the merge
///   that brought it there when there is one (this integration was made before and is being
///   redone), else `Unchanged`.
/// - `git merge-tree` pre-flight against the tip (unless `head` descends from it): conflicts
///   give `Conflict` with the files (sorted); nothing changes.
/// - Clean: the new commit is `head` itself when it descends from the tip (fast-forward),
///   else a merge commit of the tip and `head` (tip first), message
///   `ordo: integrate <task> (attempt N)` and the job id, identity as in `commit`.
/// - `req.verify`, if any, runs (`sh -c`, with `req.env`, within `req.timeout`; passes on its
///   success code) in a detached scratch worktree at the new commit,
///   `<root>/integrate/<job tag>-<index>-<attempt>` (with the step, and `-stacked` for a
///   stacked integration), removed afterwards whatever happens; a
///   failure is `VerifyFailed` with the exit code (none when it timed out or was killed) and
///   the last `VERIFY_TAIL_BYTES` of its output.
/// - The branch moves by compare-and-swap from the tip the merge was made on
///   (`Source::advance`); if another integrator moved it meanwhile, `Failed` with "the
///   integration branch moved while integrating; ..." and the branch is left as that
///   integrator set it. A branch that does not exist yet is created by the first integration,
///   changed or not.
/// - `Merged` gives the new tip and the files it changed on the branch (sorted).
///
/// Then the source tidies up after the outcome (`Source::tidy`): the attempt's worktree and
/// branch go once integrated, or when the task will run again; a conflicted attempt's branch
/// stays for its resolve round; everything stays after the task's last chance (`req.last`).
pub async fn integrate(req: &Integrate, source: &impl Source, opts: &ExecOptions) -> Integration {
    let (mut outcomes, tidy) = integrate_batch(req, source, opts).await;
    tidy.run(source).await;
    outcomes.swap_remove(0).outcome
}

/// What an integration leaves to tidy once its outcome is reported: each task's worktree and
/// branch, as `Source::tidy` decides. Done after the report, it stays off the integration
/// queue's path (the next integration need not wait for it); the caller runs it.
#[must_use = "the worktrees and branches stay until the tidy runs"]
pub struct Tidy(Vec<(Integrate, Integration)>);

impl Tidy {
    pub async fn run(self, source: &impl Source) {
        for (item, outcome) in &self.0 {
            source.tidy(item, outcome).await;
        }
    }
}

/// Integrates every task of `req` (docs/design.md, "Integration queue: batches"): each is
/// merged in turn onto the result of the ones before (as `integrate` does for one; a task that
/// conflicts is left out and reported `Conflict`), the integration verify runs once at the
/// result, and the branch moves once. Pass: each merged task is `Merged` with its own merge
/// commit; fail: each merged task is `VerifyFailed` (the engine bisects). The outcomes are in
/// the batch's order, the first task's first; a failure of the whole (git, the branch moved)
/// is every task's. Tidying (`Tidy`, for the caller to run once it reported the outcomes) is
/// each task's as for one (`Source::tidy`), except that tasks whose verify failed together
/// keep everything: they are integrated again, in halves.
///
/// A stacked integration (`Integrate::onto`; docs/design.md, "Integration queue: batches",
/// halves verified at once) merges the tasks ahead first, then its own, and runs the verify at
/// the result without moving the branch: each of its merged tasks is `Verified` with the tree (or `VerifyFailed`),
/// and nothing is tidied (every task is integrated later). An integration given the tree a
/// stacked one verified (`Integrate::verified`) does not run the verify when its merge comes
/// to that tree.
pub async fn integrate_batch(
    req: &Integrate,
    source: &impl Source,
    opts: &ExecOptions,
) -> (Vec<ItemOutcome>, Tidy) {
    let items = req.items();
    let outcomes = match try_integrate(req, &items, source, opts).await {
        Ok(outcomes) => outcomes,
        Err(e) => vec![
            Integration::Failed {
                message: e.to_string(),
            };
            items.len()
        ],
    };
    // A verify failed with several tasks merged: the engine bisects them, so their worktrees
    // and branches stay for the integrations to come.
    let bisected = outcomes
        .iter()
        .filter(|o| matches!(o, Integration::VerifyFailed { .. }))
        .count()
        > 1;
    let mut out = Vec::with_capacity(items.len());
    let mut tidy = Vec::with_capacity(items.len());
    for (item, outcome) in items.into_iter().zip(outcomes) {
        out.push(ItemOutcome {
            index: item.index,
            attempt: item.attempt,
            outcome: outcome.clone(),
        });
        // A stacked integration integrated nothing: every task is integrated later.
        if !(req.stacked() || bisected && matches!(outcome, Integration::VerifyFailed { .. })) {
            tidy.push((item, outcome));
        }
    }
    (out, Tidy(tidy))
}

async fn try_integrate(
    req: &Integrate,
    items: &[Integrate],
    source: &impl Source,
    opts: &ExecOptions,
) -> Result<Vec<Integration>, Error> {
    let target = source.target(req).await?;
    let repo = &target.repo;
    // Stacked: the tasks ahead first, as their own integration merges them (one that does not
    // merge is left out there too).
    let mut new = target.tip.clone();
    for item in req.onto_items() {
        if let Plan::Commit(commit) = plan(repo, &item, &new, &head_of(repo, &item).await?).await? {
            new = commit;
        }
    }
    // Per task: its outcome, or (merged onto `new`, not verified yet) the commit before it.
    let mut outcomes: Vec<Result<Integration, (String, String)>> = Vec::new();
    for item in items {
        match plan(repo, item, &new, &head_of(repo, item).await?).await? {
            Plan::Ended(outcome) => outcomes.push(Ok(outcome)),
            Plan::Commit(commit) => {
                outcomes.push(Err((new.clone(), commit.clone())));
                new = commit;
            }
        }
    }
    if req.stacked() {
        return stacked(repo, &target.root, req, outcomes, &new, opts).await;
    }
    if outcomes.iter().all(Result::is_ok) {
        if target.expected.is_none()
            && outcomes
                .iter()
                .any(|o| !matches!(o, Ok(Integration::Conflict { .. })))
        {
            // The branch exists from the first integration on, changed or not.
            source.advance(&target, req, &target.tip).await?;
        }
        return Ok(outcomes.into_iter().flatten().collect());
    }
    // Verified before on top of the integration ahead (`Integrate::verified`), and the merge
    // came to the same tree: nothing new to verify.
    let verified = match &req.verified {
        Some(tree) => tree_of(repo, &new).await? == *tree,
        None => false,
    };
    if let Some(verify) = req.verify.as_ref().filter(|_| !verified)
        && let Some(failed) = verify_at(repo, &target.root, req, verify, &new, opts).await?
    {
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|_| failed.clone()))
            .collect());
    }
    source.advance(&target, req, &new).await?;
    let mut done = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        done.push(match o {
            Ok(outcome) => outcome,
            Err((before, commit)) => {
                let files = changed_files(repo, &before, &commit).await?;
                Integration::Merged { commit, files }
            }
        });
    }
    Ok(done)
}

/// A stacked integration's outcomes once its tasks are merged on top of the ones ahead
/// (`outcomes`, as in `try_integrate`, the last merge `new`): the verify runs at `new`; pass:
/// each merged task is `Verified` with the tree, fail: `VerifyFailed`. Nothing moves.
async fn stacked(
    repo: &Path,
    root: &Path,
    req: &Integrate,
    outcomes: Vec<Result<Integration, (String, String)>>,
    new: &str,
    opts: &ExecOptions,
) -> Result<Vec<Integration>, Error> {
    let merged = match &req.verify {
        Some(verify) if outcomes.iter().any(Result::is_err) => {
            verify_at(repo, root, req, verify, new, opts).await?
        }
        _ => None,
    };
    let merged = match merged {
        Some(failed) => failed,
        None => Integration::Verified {
            tree: tree_of(repo, new).await?,
        },
    };
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|_| merged.clone()))
        .collect())
}

/// The commit `item.head` names in `repo`.
async fn head_of(repo: &Path, item: &Integrate) -> Result<String, Error> {
    resolve_commit(repo, &item.head)
        .await?
        .ok_or_else(|| Error::Invalid {
            what: "task head",
            name: item.head.clone(),
            reason: format!(
                "is not a commit in {} (task branch {})",
                item.repository, item.task_branch
            ),
        })
}

/// The tree of `commit`.
async fn tree_of(repo: &Path, commit: &str) -> Result<String, Error> {
    git(repo)
        .args(["rev-parse", &format!("{commit}^{{tree}}")])
        .text()
        .await
}

/// What integrating `head` onto `tip` comes to before anything is verified or moved.
enum Plan {
    /// Nothing to merge (already there) or nothing that can be merged (a conflict).
    Ended(Integration),
    /// The commit the integration branch moves to once verified: `head` itself (a
    /// fast-forward) or a merge commit of `tip` and `head`.
    Commit(String),
}

pub(super) fn integrate_title(req: &Integrate) -> String {
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
    // A stacked integration and the one after it of the same tasks may overlap: the step
    // (and the mark of a stacked one) keeps their directories apart.
    let dir = root.join(INTEGRATE_DIR).join(format!(
        "{}-{}-{}{}{}",
        job_tag(&req.job),
        req.index.0,
        req.attempt.0,
        ordo_proto::names::step_suffix(req.step),
        if req.stacked() { "-stacked" } else { "" }
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use ordo_proto::Verify;
    use ordo_proto::wire::Integration;

    use super::*;
    use crate::workspace::local::advance;
    use crate::workspace::remove;
    use crate::workspace::testkit::*;

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
        let out = fx.integrate(&req).await;
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

        let out = fx.integrate(&fx.request(&ws_a, &a, 0, "a")).await;
        assert_eq!(
            out,
            Integration::Merged {
                commit: a.head.clone(),
                files: vec!["a.txt".into()],
            }
        );

        let mut req = fx.request(&ws_b, &b, 1, "b");
        req.verify = sh("test -f a.txt && test -f b.txt");
        let Integration::Merged { commit, files } = fx.integrate(&req).await else {
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
    /// `Conflict { files: ["same.txt"] }` with the branch unchanged, its worktree removed and
    /// its task branch kept (for a resolve round); a new attempt cut from the new tip then
    /// merges, no conflict marker reaches the branch, and the earlier attempt's branch goes.
    /// A batch: each task merged onto the one before (a conflicting one left out), one verify
    /// at the result, the branch moved once to the last merge; a failed verify fails every
    /// merged task and moves nothing.
    #[tokio::test]
    async fn a_batch_merges_in_turn_verifies_once_and_moves_once() {
        let fx = Fx::new();
        let (ws_z, z) = fx
            .attempt(0, "z", 1, |wt| write(&wt.join("same.txt"), "z\n"))
            .await;
        let (ws_a, a) = fx
            .attempt(1, "a", 1, |wt| write(&wt.join("a.txt"), "a\n"))
            .await;
        let (ws_c, c) = fx
            .attempt(2, "c", 1, |wt| write(&wt.join("same.txt"), "c\n"))
            .await;
        let (ws_b, b) = fx
            .attempt(3, "b", 1, |wt| write(&wt.join("b.txt"), "b\n"))
            .await;
        assert!(matches!(
            fx.integrate(&fx.request(&ws_z, &z, 0, "z")).await,
            Integration::Merged { .. }
        ));
        let before = fx.tip();
        let batch = |verify: &str| {
            let mut req = fx.request(&ws_a, &a, 1, "a");
            req.verify = sh(verify);
            for (ws, r, i, name) in [(&ws_c, &c, 2, "c"), (&ws_b, &b, 3, "b")] {
                req.batch.push(Fx::item(fx.request(ws, r, i, name), true));
            }
            req
        };
        let local = crate::workspace::Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();

        let (failed, tidy) = integrate_batch(&batch("false"), &local, &opts).await;
        tidy.run(&local).await;
        let names: Vec<&str> = failed.iter().map(|o| o.outcome.name()).collect();
        assert_eq!(names, ["verify_failed", "conflict", "verify_failed"]);
        assert_eq!(fx.tip(), before, "a failed batch moves nothing");
        assert!(
            fx.branch_exists(&ws_a.task_branch),
            "kept to be integrated again"
        );

        let (passed, tidy) =
            integrate_batch(&batch("test -f a.txt && test -f b.txt"), &local, &opts).await;
        tidy.run(&local).await;
        let [a_out, c_out, b_out] = &passed[..] else {
            panic!("{passed:?}");
        };
        assert!(matches!(c_out.outcome, Integration::Conflict { .. }));
        let (
            Integration::Merged {
                commit: ma,
                files: fa,
            },
            Integration::Merged {
                commit: mb,
                files: fb,
            },
        ) = (&a_out.outcome, &b_out.outcome)
        else {
            panic!("{passed:?}");
        };
        assert_eq!(
            (fa.as_slice(), fb.as_slice()),
            (&["a.txt".to_string()][..], &["b.txt".to_string()][..])
        );
        assert_eq!(&fx.tip(), mb, "the branch moved to the last merge");
        assert_eq!(
            g(&fx.repo, &["rev-list", "--parents", "-n", "1", mb]),
            format!("{mb} {ma} {}", b.head),
            "b merged onto a's merge"
        );
        assert_eq!(
            g(&fx.repo, &["rev-list", "--parents", "-n", "1", ma]),
            format!("{ma} {before} {}", a.head)
        );
    }

    /// Proves a stacked integration merges the task ahead, then its own, and runs the verify
    /// at the result (where both files are) without moving the branch or tidying anything;
    /// and that its task's later integration, once the one ahead landed, does not run the
    /// verify again when the merge comes to the tree verified (here a verify that would fail),
    /// while one given another tree runs it.
    #[tokio::test]
    async fn a_stacked_integration_verifies_on_top_and_its_landing_skips_the_verify() {
        let fx = Fx::new();
        let (ws_z, z) = fx
            .attempt(0, "z", 1, |wt| write(&wt.join("z.txt"), "z\n"))
            .await;
        let (ws_a, a) = fx
            .attempt(1, "a", 1, |wt| write(&wt.join("a.txt"), "a\n"))
            .await;
        let (ws_b, b) = fx
            .attempt(2, "b", 1, |wt| write(&wt.join("b.txt"), "b\n"))
            .await;
        assert!(matches!(
            fx.integrate(&fx.request(&ws_z, &z, 0, "z")).await,
            Integration::Merged { .. }
        ));
        let before = fx.tip();
        let ahead = fx.request(&ws_a, &a, 1, "a");
        let mut stacked = fx.request(&ws_b, &b, 2, "b");
        stacked.verify = sh("test -f a.txt && test -f b.txt");
        stacked.onto.push(Fx::item(ahead.clone(), false));
        let local = crate::workspace::Local::with_root(fx.root.clone());
        let opts = ExecOptions::default();
        let (out, tidy) = integrate_batch(&stacked, &local, &opts).await;
        tidy.run(&local).await;
        let Integration::Verified { tree } = out[0].outcome.clone() else {
            panic!("{out:?}");
        };
        assert_eq!(fx.tip(), before, "a stacked integration moves nothing");
        assert!(fx.branch_exists(&ws_b.task_branch), "kept to land");
        assert!(fx.branch_exists(&ws_a.task_branch));

        assert!(matches!(
            fx.integrate(&ahead).await,
            Integration::Merged { .. }
        ));
        let mut landing = fx.request(&ws_b, &b, 2, "b");
        landing.verify = sh("false");
        landing.verified = Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into());
        assert!(
            matches!(
                fx.integrate(&landing).await,
                Integration::VerifyFailed { .. }
            ),
            "another tree is verified"
        );
        landing.verified = Some(tree.clone());
        let Integration::Merged { commit, .. } = fx.integrate(&landing).await else {
            panic!("the tree verified lands unverified");
        };
        assert_eq!(fx.tip(), commit);
        assert_eq!(
            g(&fx.repo, &["rev-parse", &format!("{commit}^{{tree}}")]),
            tree
        );
    }

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
            fx.integrate(&fx.request(&ws_a, &a, 0, "a")).await,
            Integration::Merged { .. }
        ));
        let tip = fx.tip();

        let out = fx.integrate(&fx.request(&ws_b, &b, 1, "b")).await;
        assert_eq!(
            out,
            Integration::Conflict {
                files: vec!["same.txt".into()]
            }
        );
        assert_eq!(fx.tip(), tip);
        assert!(!Path::new(&b.worktree).exists(), "the task runs again");
        assert!(
            fx.branch_exists(&ws_b.task_branch),
            "kept: a resolve round starts from it"
        );

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
        let out = fx.integrate(&fx.request(&ws_b2, &b2, 1, "b")).await;
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
        let out = fx.integrate(&fx.request(&ws, &r, 0, "noop")).await;
        assert_eq!(
            out,
            Integration::Unchanged {
                commit: tip.clone()
            }
        );
        assert_eq!(fx.tip(), tip);
        fx.assert_clean();
    }

    /// Proves a failing integration verify gives `VerifyFailed` with its exit code and output
    /// (exit code none and the reason on a timeout), never moves the branch, and leaves no
    /// scratch worktree; the task worktree and branch are kept after the task's last chance
    /// and removed when it will run again. A verify returning its non-zero success code
    /// passes.
    #[tokio::test]
    async fn failed_verify_leaves_the_branch_and_no_scratch_worktree() {
        let fx = Fx::new();
        let (ws, r) = fx
            .attempt(0, "v", 1, |wt| write(&wt.join("v.txt"), "v\n"))
            .await;
        let tip = fx.tip();
        let mut req = fx.request(&ws, &r, 0, "v");
        req.last = true;
        req.verify = sh("echo verify said no; echo \"on stderr $VERIFY_VAR\" >&2; exit 3");
        req.env.insert("VERIFY_VAR".into(), "from env".into());
        let Integration::VerifyFailed {
            exit_code,
            output_tail,
        } = fx.integrate(&req).await
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
        } = fx.integrate(&req).await
        else {
            panic!("verify did not time out");
        };
        assert_eq!(exit_code, None);
        assert!(output_tail.contains("timed out"), "{output_tail}");
        assert_eq!(fx.tip(), tip);
        assert_eq!(fx.worktrees()[1..], *std::slice::from_ref(&task_worktree));
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

        req.last = false;
        req.verify = sh("exit 1");
        let out = fx.integrate(&req).await;
        assert!(matches!(out, Integration::VerifyFailed { .. }), "{out:?}");
        assert!(
            !task_worktree.exists(),
            "the task runs again: its worktree goes"
        );
        assert!(!fx.branch_exists(&ws.task_branch));

        req.verify = Some(Verify {
            command: "exit 7".into(),
            success_code: 7,
        });
        req.timeout = None;
        assert!(matches!(
            fx.integrate(&req).await,
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
        let Integration::Failed { message } = fx.integrate(&req).await else {
            panic!("not failed");
        };
        assert!(
            message.starts_with("the integration branch moved while integrating;"),
            "{message}"
        );
        let racer = std::fs::read_to_string(&racer_file).unwrap();
        assert_eq!(fx.tip(), racer);
        assert!(
            !Path::new(&r.worktree).exists() && !fx.branch_exists(&ws.task_branch),
            "the task runs again from the new tip: its worktree and branch go"
        );

        let e = advance(&fx.repo, &fx.branch, &r.head, &tip, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Moved { ref found, .. } if found.as_deref() == Some(racer.as_str()))
        );
        assert_eq!(fx.tip(), racer);
    }
}
