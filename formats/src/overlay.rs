//! The settings overlay: `--with FILE` (a TOML file holding `[settings]`, `[[stages]]` and
//! `[[notify]]`) and the common flags `--workspace`, `--max-cost-usd` and `--max-tokens`, laid
//! over a loaded spec so that formats which cannot carry ordo's settings or quality gates
//! (TaskMaster, subtasks JSON, Markdown, Prompter's TOML) get them without edits. The overlay
//! wins over the spec's own settings; maps (`env`, `pools`, `models`) merge key by key; stages
//! and hooks are appended to the spec's. Laid by `prepare`, for every command that loads a
//! spec, MCP and the dashboard.

use std::path::Path;

use ordo_proto::gates::{NotifySpec, StageSpec};
use ordo_proto::{JobSpec, Settings, WorkspaceMode};
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, LineIndex, Pos};

/// Largest overlay file read.
const MAX_OVERLAY_BYTES: u64 = 1024 * 1024;

/// What is laid over a spec's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlay {
    /// The `[settings]` of `--with FILE`, as a TOML table (only the keys it sets).
    pub settings: toml::Table,
    /// The `[[stages]]` of `--with FILE`, appended to the spec's.
    pub stages: Vec<StageSpec>,
    /// Where each of `stages` is defined: the file and its `name`'s position.
    pub stage_positions: Vec<(String, Option<Pos>)>,
    /// The `[[notify]]` of `--with FILE`, appended to the spec's.
    pub notify: Vec<NotifySpec>,
    pub workspace: Option<WorkspaceMode>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
}

/// The shape of a `--with` file: unknown tables and keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithFile {
    #[serde(default)]
    settings: Option<toml::Table>,
    #[serde(default)]
    stages: Vec<StageSpec>,
    #[serde(default)]
    notify: Vec<NotifySpec>,
}

/// The stage names of a `--with` file, with their spans.
#[derive(Deserialize)]
struct StageNames {
    #[serde(default)]
    stages: Vec<StageName>,
}

#[derive(Deserialize)]
struct StageName {
    name: toml::Spanned<String>,
}

impl Overlay {
    /// Reads `--with FILE` (its settings, stages and hooks; the rest of the overlay unset);
    /// errors name the file, line and column.
    pub fn read(path: &Path) -> Result<Overlay, Diagnostic> {
        let label = path.display().to_string();
        let err = |pos, msg: String| Diagnostic::new(&label, pos, msg);
        let meta = std::fs::metadata(path).map_err(|e| err(None, format!("cannot open: {e}")))?;
        if !meta.is_file() {
            return Err(err(None, "not a regular file".into()));
        }
        if meta.len() > MAX_OVERLAY_BYTES {
            return Err(err(
                None,
                format!("larger than {MAX_OVERLAY_BYTES} bytes: not a settings file"),
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(None, format!("cannot read: {e}")))?;
        Overlay::parse(&label, &text)
    }

    /// Parses the text of a settings overlay; `label` names it in errors and where its stages
    /// are defined.
    pub fn parse(label: &str, text: &str) -> Result<Overlay, Diagnostic> {
        let err = |pos, msg: String| Diagnostic::new(label, pos, msg);
        let lines = LineIndex::new(text);
        let parsed: WithFile = toml::from_str(text).map_err(|e| {
            let pos = e.span().map(|s| lines.pos_at(text, s.start));
            err(pos, e.message().trim().to_string())
        })?;
        let settings = parsed.settings.unwrap_or_default();
        // Each key must be a setting ordo knows, with a value of its type.
        if let Err(e) = Settings::deserialize(toml::Value::Table(settings.clone())) {
            return Err(err(None, format!("[settings]: {}", e.message())));
        }
        let names = match parsed.stages.is_empty() {
            true => Vec::new(),
            false => toml::from_str::<StageNames>(text)
                .map(|n| n.stages)
                .unwrap_or_default(),
        };
        let stage_positions = (0..parsed.stages.len())
            .map(|i| {
                let pos = names
                    .get(i)
                    .map(|n| lines.pos_at(text, n.name.span().start));
                (label.to_string(), pos)
            })
            .collect();
        Ok(Overlay {
            settings,
            stages: parsed.stages,
            stage_positions,
            notify: parsed.notify,
            ..Overlay::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Overlay::default()
    }

    /// Lays the overlay over `spec`'s settings and appends its stages and hooks; `label`
    /// names the spec in errors.
    pub fn apply(&self, spec: &mut JobSpec, label: &str) -> Result<(), Diagnostic> {
        if self.is_empty() {
            return Ok(());
        }
        spec.stages.extend(self.stages.iter().cloned());
        spec.notify.extend(self.notify.iter().cloned());
        let err = |msg: String| Diagnostic::new(label, None, msg);
        if !self.settings.is_empty() {
            let mut merged = toml::Table::try_from(&spec.settings)
                .map_err(|e| err(format!("cannot merge the settings overlay: {e}")))?;
            for (key, value) in &self.settings {
                match (merged.get_mut(key), value) {
                    (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
                        for (k, v) in theirs {
                            mine.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
            spec.settings = Settings::deserialize(toml::Value::Table(merged)).map_err(|e| {
                err(format!(
                    "the settings overlay does not fit: {}",
                    e.message()
                ))
            })?;
        }
        let s = &mut spec.settings;
        if let Some(w) = self.workspace {
            s.workspace = Some(w);
        }
        if let Some(c) = self.max_cost_usd {
            s.max_cost_usd = Some(c);
        }
        if let Some(t) = self.max_tokens {
            s.max_tokens = Some(t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("with.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_overlay_wins_and_maps_merge_key_by_key() {
        let (_d, path) = file(
            "[settings]\nmax_cost_usd = 2.5\nworkspace = \"worktree\"\n\
             env = { B = \"2\" }\npools = { claude = 3 }\n",
        );
        let mut spec = JobSpec::default();
        spec.settings.max_cost_usd = Some(9.0);
        spec.settings.env.insert("A".into(), "1".into());
        spec.settings.fail_fast = true;
        let overlay = Overlay::read(&path).unwrap();
        overlay.apply(&mut spec, "tasks.json").unwrap();
        let s = &spec.settings;
        assert_eq!(s.max_cost_usd, Some(2.5));
        assert_eq!(s.workspace, Some(WorkspaceMode::Worktree));
        assert_eq!(s.env.len(), 2, "{:?}", s.env);
        assert!(s.fail_fast, "what the overlay does not set stays");
        assert_eq!(s.pools.get("claude"), Some(&3));
    }

    #[test]
    fn flags_win_over_the_file() {
        let mut spec = JobSpec::default();
        let overlay = Overlay {
            max_tokens: Some(10),
            ..Overlay::default()
        };
        overlay.apply(&mut spec, "x").unwrap();
        assert_eq!(spec.settings.max_tokens, Some(10));
    }

    #[test]
    fn bad_files_name_the_file_line_and_key() {
        let (_d, path) = file("[settings]\nmax_cost_usd = 1\n[[tasks]]\nname = \"x\"\n");
        let e = Overlay::read(&path).unwrap_err().to_string();
        assert!(e.contains("with.toml:3:"), "{e}");
        assert!(e.contains("tasks"), "{e}");
        let (_d, path) = file("[settings]\nmax_parallel = 3\n");
        let e = Overlay::read(&path).unwrap_err().to_string();
        assert!(e.contains("max_parallel"), "{e}");
        let e = Overlay::read(Path::new("/nonexistent/with.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open"), "{e}");
    }
}
