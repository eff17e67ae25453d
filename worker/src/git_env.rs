//! The environment of every git process ordo starts (the workspace module's `git -C` calls and
//! its cleanup): no terminal prompt, none of the variables that would point git at another
//! repository, and only the transports a repository URL may use. `GIT_ALLOW_PROTOCOL`
//! overrides the user's own `protocol.*` configuration, so a repository named in a spec
//! (`ext::sh -c ...`) can never make git run a command, whatever the user's environment says.

use std::process::Command;

/// Transports git may use for a repository ordo is given: local paths and the network ones.
pub const ALLOWED_PROTOCOLS: &str = "file:git:ssh:http:https";

/// Variables that would make git work on another repository or index than the `-C` one.
const GIT_LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// Gives `cmd` (a git command) the environment described above.
pub fn confine(cmd: &mut Command) -> &mut Command {
    for var in GIT_LOCATION_VARS {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ext_repository_runs_nothing_even_when_the_user_allows_ext() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let url = format!("ext::sh -c touch% {}", canary.display());
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(dir.path())
            .args(["ls-remote", "--", &url]);
        // What the user's own environment says is overridden.
        cmd.env("GIT_ALLOW_PROTOCOL", "ext");
        let out = confine(&mut cmd).output().unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("transport 'ext' not allowed"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!canary.exists(), "ext:: ran a command");

        // Without the confinement the same call does run it: the test shows what is refused.
        let mut open = Command::new("git");
        open.arg("-C")
            .arg(dir.path())
            .args(["ls-remote", "--", &url]);
        let _ = open.env("GIT_ALLOW_PROTOCOL", "ext").output().unwrap();
        assert!(
            canary.exists(),
            "the unconfined call should have run the command"
        );
    }
}
