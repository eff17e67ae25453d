//! Resolve rounds: after a text conflict, a task's next attempt starts from its conflicted
//! work with the integration tip merged in and conflict markers left where the two disagree;
//! the agent resolves them, and a marker left refuses the result.

use std::path::Path;

use super::Error;
use super::git::{git, identity, nul_fields};

/// A resolve round's start: merges the integration tip into the conflicted attempt's work in
/// its worktree without committing, leaving conflict markers where the two disagree (the
/// repository's merge drivers apply); the files left unmerged.
pub(super) async fn merge_for_resolve(worktree: &Path, tip: &str) -> Result<Vec<String>, Error> {
    // A merge needs an identity even when it commits nothing (bare cache clones have none).
    let out = git(worktree)
        .args(identity(worktree).await?)
        .args(["merge", "--no-ff", "--no-commit", "--no-edit", tip])
        .output()
        .await?;
    if !matches!(out.code, Some(0 | 1)) {
        return Err(out.into_error());
    }
    unmerged_files(worktree).await
}

/// The files a merge in progress in `worktree` left unmerged, sorted.
pub(super) async fn unmerged_files(worktree: &Path) -> Result<Vec<String>, Error> {
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
pub(super) async fn markers_left(worktree: &Path, files: &[String]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
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
