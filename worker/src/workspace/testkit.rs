//! What the workspace tests share: a git runner that must succeed, a user's checkout with a
//! worktree root (`Fx`), and a fingerprint of everything a user could notice about their
//! checkout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_proto::names::{integration_branch, job_tag, task_branch};
use ordo_proto::wire::{Integrate, Integration, Workspace, WorkspaceResult};
use ordo_proto::{Attempt, Dispatch, JobId, Program, TaskIndex, TaskName, Verify};

use super::{Local, Prepared, commit, integrate, prepare};
use crate::exec::ExecOptions;

/// `git -C dir args`, which must succeed; stdout trimmed. Optional locks off, so reading
/// the user's checkout never rewrites its index.
pub(crate) fn g(dir: &Path, args: &[&str]) -> String {
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

pub(crate) fn g_code(dir: &Path, args: &[&str]) -> i32 {
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

pub(crate) fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A user's checkout on `main` with a configured identity, and a worktree root.
pub(crate) struct Fx {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) repo: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) job: JobId,
    pub(crate) branch: String,
}

impl Fx {
    pub(crate) fn new() -> Fx {
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

    pub(crate) fn ws(&self, index: u32, name: &str, attempt: u32) -> Workspace {
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
            revise: None,
            speculative: Vec::new(),
            discarded: Vec::new(),
        }
    }

    pub(crate) async fn prepare(
        &self,
        index: u32,
        name: &str,
        attempt: u32,
    ) -> (Workspace, Prepared) {
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
    pub(crate) async fn attempt(
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

    pub(crate) fn request(
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
            batch: Vec::new(),
            step: 0,
            onto: Vec::new(),
            verified: None,
        }
    }

    /// The same task as a member of a batch (or of `onto`), `last` as given.
    pub(crate) fn item(req: Integrate, last: bool) -> ordo_proto::BatchItem {
        ordo_proto::BatchItem {
            task: req.task,
            index: req.index,
            attempt: req.attempt,
            task_branch: req.task_branch,
            head: req.head,
            worktree: req.worktree,
            last,
            title: req.title,
        }
    }

    /// Integrates `req` from the user's repository, worktrees under `root`.
    pub(crate) async fn integrate(&self, req: &Integrate) -> Integration {
        let local = Local::with_root(self.root.clone());
        integrate(req, &local, &ExecOptions::default()).await
    }

    pub(crate) fn tip(&self) -> String {
        g(
            &self.repo,
            &["rev-parse", &format!("refs/heads/{}", self.branch)],
        )
    }

    /// A file's content on the integration branch.
    pub(crate) fn show(&self, path: &str) -> String {
        g(&self.repo, &["show", &format!("{}:{path}", self.branch)])
    }

    /// Paths of the repository's worktrees, its own checkout first.
    pub(crate) fn worktrees(&self) -> Vec<PathBuf> {
        g(&self.repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(PathBuf::from)
            .collect()
    }

    pub(crate) fn branch_exists(&self, branch: &str) -> bool {
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
    pub(crate) fn assert_clean(&self) {
        assert_eq!(self.worktrees(), vec![self.repo.canonicalize().unwrap()]);
        let prefix = format!("refs/heads/ordo/{}", job_tag(&self.job));
        assert_eq!(g(&self.repo, &["for-each-ref", &prefix]), "");
    }
}

/// Everything a user could notice about their checkout.
#[derive(Debug, PartialEq)]
pub(crate) struct Checkout {
    pub(crate) head: String,
    branch: String,
    status: String,
    staged: String,
    stash: String,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

pub(crate) fn checkout(repo: &Path) -> Checkout {
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
pub(crate) fn make_dirty(repo: &Path) {
    write(&repo.join("same.txt"), "one\ntwo (user, unstaged)\nthree\n");
    write(&repo.join("README.md"), "hello (user, staged)\n");
    g(repo, &["add", "README.md"]);
    write(&repo.join("notes.txt"), "user's notes\n");
    let status = g(repo, &["status", "--porcelain=v1"]);
    assert!(status.contains(" M same.txt") && status.contains("M  README.md"));
    assert!(status.contains("?? notes.txt"));
}

/// Attempt 1 of task `name` (index `index`) running `command`, in `ws` when given.
pub(crate) fn dispatch(
    fx: &Fx,
    ws: Option<Workspace>,
    index: u32,
    name: &str,
    command: &str,
) -> Dispatch {
    Dispatch {
        workspace: ws,
        ..Dispatch::new(
            fx.job,
            TaskName::new(name).unwrap(),
            TaskIndex(index),
            Attempt(1),
            Program::Shell(command.into()),
        )
    }
}

pub(crate) fn sh(command: &str) -> Option<Verify> {
    Some(Verify {
        command: command.into(),
        success_code: 0,
    })
}
