//! A worktree job's workspace settings made definite where the job is submitted from: the
//! repository is found from the working directory of the submitting process (not of the
//! process that runs the job, which may be a dashboard or a coordinator elsewhere).

use ordo_proto::JobSpec;
use ordo_worker::workspace::{self, cache};

/// Makes a worktree job's workspace settings definite before it is submitted (docs/design.md,
/// "Agent workspaces"): the repository (default: the one the working directory is in) as its
/// top directory, and `base` as the commit it names now. `label` (the spec's file) starts each error, which names the
/// setting; nothing is written anywhere. For a cluster (`shared`) the repository may also be a
/// URL, which must be reachable from here; on one machine it must be a local path.
pub async fn settle_workspace(spec: &mut JobSpec, label: &str, shared: bool) -> Result<(), String> {
    if !spec.uses_worktrees() {
        return Ok(());
    }
    let s = &spec.settings;
    let dir = match &s.working_directory {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::current_dir().map_err(|e| format!("{label}: {e}"))?,
    };
    let resolved = match s.repository.as_deref() {
        Some(url) if workspace::is_url(url) => {
            if !shared {
                return Err(format!(
                    "{label}: settings.repository: {url}: a repository given by URL needs a \
                     cluster (`ordo submit`); `ordo run` works in a local repository (a path)"
                ));
            }
            cache::resolve_url(url, s.base.as_deref(), s.target_branch.as_deref()).await
        }
        repository => {
            workspace::resolve(
                repository,
                &dir,
                s.base.as_deref(),
                s.target_branch.as_deref(),
            )
            .await
        }
    };
    let resolved = resolved.map_err(|e| {
        let setting = match &e {
            workspace::Error::Invalid { what, .. } => (*what).to_string(),
            _ => "repository".into(),
        };
        format!("{label}: settings.{setting}: {e}")
    })?;
    spec.settings.repository = Some(resolved.repository.display().to_string());
    spec.settings.base = Some(resolved.base);
    Ok(())
}
