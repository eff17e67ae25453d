//! The one git runner of workspaces (`git -C <dir>`, stdin closed, `git_env`'s environment),
//! the lock that serialises worktree administration within and across processes, and the
//! plumbing reads every step shares: refs, commits, worktrees, branch names, identity.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use ordo_proto::wire::FileLines;

use super::Error;

/// Author and committer of ordo's commits in a repository that configures no `user.name` /
/// `user.email`.
pub const FALLBACK_NAME: &str = "ordo";
pub const FALLBACK_EMAIL: &str = "ordo@localhost";
/// Most bytes of git's stderr kept in an error.
const MAX_STDERR: usize = 2000;

/// Held by every git command of this process that reads or changes the worktrees of a
/// repository (`worktree add`, `list`, `remove`, `branch -D`). Git does not lock them: a
/// command reads every worktree's admin files, which a concurrent `worktree add` may be
/// half-way through writing, and then fails ("failed to read .git/worktrees/<id>/commondir").
/// One lock for all repositories: these commands take milliseconds. Other processes (`ordo
/// run`s side by side on one repository) are kept out by `ADMIN_LOCK_FILE` (see `admin`).
pub(super) static WORKTREE_ADMIN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The file in a repository's git directory that ordo processes `flock` while they read or
/// change its worktrees.
const ADMIN_LOCK_FILE: &str = "ordo-worktrees.lock";

/// `WORKTREE_ADMIN` and the repository's `ADMIN_LOCK_FILE`, held together.
pub(super) struct Admin {
    _file: Option<std::fs::File>,
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

/// Takes the worktree admin lock of `repo` for this process and then across processes. A
/// lock file that cannot be made (a read-only git directory) leaves only this process's
/// lock, which is what there was before.
pub(super) async fn admin(repo: &Path) -> Admin {
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

pub(super) async fn admin_lock_path(repo: &Path) -> Option<PathBuf> {
    git_common_dir(repo)
        .await
        .ok()
        .map(|d| d.join(ADMIN_LOCK_FILE))
}

/// Opens `path` and waits for its exclusive `flock` (blocking).
pub(super) fn lock_file(path: &Path) -> Option<std::fs::File> {
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

/// The git directory `repo`'s worktrees share (absolute).
pub(super) async fn git_common_dir(repo: &Path) -> Result<PathBuf, Error> {
    let out = git(repo)
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .run()
        .await?;
    Ok(PathBuf::from(out.text()))
}

/// Paths that differ between two commits (both sides of a rename), sorted.
pub(super) async fn changed_files(dir: &Path, from: &str, to: &str) -> Result<Vec<String>, Error> {
    let out = git(dir)
        .args(["diff", "--name-only", "-z", "--no-renames", from, to, "--"])
        .run()
        .await?;
    let mut files: Vec<String> = nul_fields(&out.stdout).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Lines added and removed per file between two commits (`git diff --numstat`, renames as a
/// deletion and an addition; a binary file counts none), sorted by path.
pub(super) async fn line_counts(dir: &Path, from: &str, to: &str) -> Result<Vec<FileLines>, Error> {
    let out = git(dir)
        .args(["diff", "--numstat", "-z", "--no-renames", from, to, "--"])
        .run()
        .await?;
    let mut lines: Vec<FileLines> = nul_fields(&out.stdout)
        .filter_map(|record| {
            let mut fields = record.splitn(3, '\t');
            let (added, removed, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some(FileLines {
                path: path.to_string(),
                added: added.parse().unwrap_or(0),
                removed: removed.parse().unwrap_or(0),
            })
        })
        .collect();
    lines.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(lines)
}

pub(super) fn nul_fields(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
}

pub(super) fn is_oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git merge-base --is-ancestor`: true also when `a == b`.
pub(super) async fn is_ancestor(repo: &Path, a: &str, b: &str) -> Result<bool, Error> {
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
pub(super) async fn read_ref(repo: &Path, refname: &str) -> Result<Option<String>, Error> {
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
pub(super) async fn resolve_commit(repo: &Path, rev: &str) -> Result<Option<String>, Error> {
    if rev.is_empty() || rev.starts_with('-') {
        return Ok(None);
    }
    read_ref(repo, &format!("{rev}^{{commit}}")).await
}

pub(super) fn refuse_checked_out(worktrees: &[WorktreeEntry], branch: &str) -> Result<(), Error> {
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

pub(super) struct WorktreeEntry {
    pub(super) path: PathBuf,
    /// `refs/heads/...`, none when detached or bare.
    pub(super) branch: Option<String>,
}

/// `git worktree list`; the first entry is the repository's own checkout or bare directory.
pub(super) async fn list_worktrees(repo: &Path) -> Result<Vec<WorktreeEntry>, Error> {
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
pub(super) async fn open_repository(repository: &str) -> Result<PathBuf, Error> {
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
pub(super) async fn open_worktree(worktree: &Path) -> Result<PathBuf, Error> {
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
pub(super) async fn ordo_root(root: &Path) -> Result<PathBuf, Error> {
    let io = |source| Error::Io {
        path: root.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(root).await.map_err(io)?;
    tokio::fs::canonicalize(root).await.map_err(io)
}

/// Refuses a branch name git would reject or that could be read as an option or as HEAD.
pub(super) async fn check_branch(repo: &Path, what: &'static str, name: &str) -> Result<(), Error> {
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
pub(super) async fn identity(dir: &Path) -> Result<Vec<String>, Error> {
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
pub(super) struct Git<'a> {
    dir: &'a Path,
    args: Vec<OsString>,
}

pub(super) fn git(dir: &Path) -> Git<'_> {
    Git {
        dir,
        args: Vec::new(),
    }
}

pub(super) struct Output {
    command: String,
    pub(super) code: Option<i32>,
    pub(super) stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    pub(super) fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as one trimmed line of text.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    pub(super) fn stderr_text(&self) -> String {
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

    pub(super) fn into_error(self) -> Error {
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
    pub(super) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub(super) fn args<I, S>(mut self, args: I) -> Self
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
    pub(super) async fn output(self) -> Result<Output, Error> {
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
    pub(super) async fn run(self) -> Result<Output, Error> {
        let out = self.output().await?;
        if out.ok() {
            Ok(out)
        } else {
            Err(out.into_error())
        }
    }

    /// Runs, requires exit 0 and returns stdout trimmed.
    pub(super) async fn text(self) -> Result<String, Error> {
        Ok(self.run().await?.text())
    }
}

/// Whether `repository` is a URL (`scheme://...`) rather than a path.
pub fn is_url(repository: &str) -> bool {
    repository.contains("://")
}

#[cfg(test)]
mod tests {
    use ordo_proto::names::{MAX_NAME_IN_BRANCH, integration_branch, job_tag, task_branch};
    use ordo_proto::{Attempt, JobId, TaskIndex, TaskName};

    use super::*;
    use crate::workspace::testkit::*;

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
}
