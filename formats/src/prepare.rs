//! One way to prepare a submit: a spec source, its load options and the overrides of the
//! command line, an MCP call or the dashboard's form (`--with`, `--workspace`, the budgets,
//! `--mode`, the default mode and max parallel) → the `SubmitRequest`, its DAG and the
//! warnings. `ordo run`, `ordo submit`, `validate`, `plan`, MCP and the dashboard all call
//! `prepare`; what each then does with the request (run it here, send it to a coordinator,
//! describe it) is theirs. Errors keep naming file, line, job and task.

use std::path::{Path, PathBuf};

use ordo_proto::api::SubmitRequest;
use ordo_proto::{Dag, ExecutionMode, JobSpec, ModeDecision, WorkspaceMode};

use crate::diagnostic::Diagnostic;
use crate::format::Format;
use crate::load::{Loaded, check, load, parse};
use crate::options::LoadOptions;
use crate::overlay::Overlay;
use crate::sniff::detect;
use crate::write_back::Sources;

/// The environment variable naming the default mode of specs that set none.
pub const EXECUTION_MODE_ENV: &str = "ORDO_EXECUTION_MODE";

/// Where a spec comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A spec file: its path names it in diagnostics and is the job's source.
    File(&'a Path),
    /// Spec text: diagnostics name it `spec.<ext>` (`text_label`); `origin` is the job's
    /// source (`mcp`, `ui`).
    Text { text: &'a str, origin: &'a str },
}

/// A settings overlay (a TOML `[settings]` table), as `--with FILE` gives one.
#[derive(Clone, Debug, PartialEq)]
pub enum With {
    /// A file, named by its path in errors.
    File(PathBuf),
    /// Text (the dashboard's form), named `settings overlay` in errors; blank is none.
    Text(String),
}

/// What is laid over a spec and how it is asked to run; `Default` changes nothing.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--with`: settings laid over the spec's own.
    pub with: Option<With>,
    /// `--workspace` (overrides `settings.workspace`).
    pub workspace: Option<WorkspaceMode>,
    /// `--max-cost-usd` (overrides `settings.max_cost_usd`).
    pub max_cost_usd: Option<f64>,
    /// `--max-tokens` (overrides `settings.max_tokens`).
    pub max_tokens: Option<u64>,
    /// `--mode`: the spec runs in this mode whatever it says.
    pub mode: Option<ExecutionMode>,
    /// `--max-parallel` (overrides `settings.max_parallel_tasks`); above 1 it asks for parallel.
    pub max_parallel: Option<u32>,
    /// `--workers`, task slots of a local run; above 1 it asks for parallel.
    pub workers: Option<u32>,
    /// `ORDO_EXECUTION_MODE` as set (`env_mode()` reads it); blank is unset.
    pub env_mode: Option<String>,
}

/// `ORDO_EXECUTION_MODE` as this process has it, for `Overrides::env_mode`.
pub fn env_mode() -> Option<String> {
    std::env::var(EXECUTION_MODE_ENV).ok()
}

/// A spec ready to submit.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The spec with the overrides laid over it, its source and the mode asked for.
    pub request: SubmitRequest,
    pub dag: Dag,
    /// What names the spec in diagnostics: the file's path, or `spec.<ext>` for text.
    pub label: String,
    /// The format it was read as.
    pub format: Format,
    /// Things that were tolerated, as `file:line:col: message` (see `Loaded::warnings`).
    pub warnings: Vec<String>,
    /// TaskMaster: where each task is in the file (`--update-source`).
    pub sources: Option<Sources>,
}

impl Prepared {
    /// The mode the job runs in, and why (`JobSpec::mode_decision`).
    pub fn mode(&self) -> ModeDecision {
        self.request.spec.mode_decision(self.request.default_mode)
    }
}

/// Why `prepare` gives no request.
#[derive(Clone, Debug)]
pub struct NotPrepared {
    /// The warnings of a spec that did load (said before the reason, as for a prepared one).
    pub warnings: Vec<String>,
    pub reason: Unprepared,
}

#[derive(Clone, Debug)]
pub enum Unprepared {
    /// The spec or the overlay is invalid: every error found.
    Invalid(Vec<Diagnostic>),
    /// A valid spec with no task left to run (`Loaded::nothing_to_do`): `file: nothing to do:
    /// …`, not an error for the commands.
    NothingToDo { format: Format, reason: Diagnostic },
    /// `ORDO_EXECUTION_MODE` names no mode.
    Mode(String),
}

impl NotPrepared {
    fn invalid(diagnostics: Vec<Diagnostic>) -> NotPrepared {
        NotPrepared {
            warnings: Vec::new(),
            reason: Unprepared::Invalid(diagnostics),
        }
    }

    /// The diagnostics to show where nothing-to-do is an error too (MCP, the dashboard);
    /// `None` for a bad `ORDO_EXECUTION_MODE`, which is no file's.
    pub fn diagnostics(&self) -> Option<Vec<Diagnostic>> {
        match &self.reason {
            Unprepared::Invalid(d) => Some(d.clone()),
            Unprepared::NothingToDo { reason, .. } => Some(vec![reason.clone()]),
            Unprepared::Mode(_) => None,
        }
    }
}

impl std::fmt::Display for NotPrepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            Unprepared::Invalid(diags) => {
                let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
            Unprepared::NothingToDo { reason, .. } => reason.fmt(f),
            Unprepared::Mode(m) => f.write_str(m),
        }
    }
}

/// Reads the spec, lays the overrides over it, validates it and builds its submit request:
/// `--mode` is written into the spec; the default mode is `ORDO_EXECUTION_MODE`, else
/// parallel when `workers` or `max_parallel` ask for more than one task at once
/// (`requested_mode`).
pub fn prepare(
    source: Source<'_>,
    opts: &LoadOptions,
    overrides: &Overrides,
) -> Result<Prepared, NotPrepared> {
    let (loaded, label) = read(source, opts, overrides).map_err(NotPrepared::invalid)?;
    let warnings = loaded.warnings.clone();
    let not = |reason| NotPrepared {
        warnings: warnings.clone(),
        reason,
    };
    if let Some(nothing) = loaded.nothing_to_do() {
        return Err(not(Unprepared::NothingToDo {
            format: loaded.format,
            reason: Diagnostic::new(&label, None, nothing),
        }));
    }
    let dag = check(&loaded, &label).map_err(|d| not(Unprepared::Invalid(d)))?;
    let mut warnings = warnings.clone();
    warnings.extend(loaded.stage_warnings(&label));
    let env =
        parse_env_mode(overrides.env_mode.as_deref()).map_err(|e| not(Unprepared::Mode(e)))?;
    let Loaded {
        mut spec,
        format,
        sources,
        ..
    } = loaded;
    override_mode(&mut spec, overrides.mode);
    let origin = match source {
        Source::File(_) => label.clone(),
        Source::Text { origin, .. } => origin.to_string(),
    };
    Ok(Prepared {
        request: SubmitRequest {
            spec,
            source: origin,
            default_mode: requested_mode(env, overrides.workers, overrides.max_parallel),
            max_parallel: overrides.max_parallel,
        },
        dag,
        label,
        format,
        warnings,
        sources,
    })
}

/// Reads the spec and lays the overlay over it, not yet validated; with the label naming it.
fn read(
    source: Source<'_>,
    opts: &LoadOptions,
    overrides: &Overrides,
) -> Result<(Loaded, String), Vec<Diagnostic>> {
    let with = match &overrides.with {
        None => Overlay::default(),
        Some(With::File(path)) => Overlay::read(path).map_err(|d| vec![d])?,
        Some(With::Text(text)) if text.trim().is_empty() => Overlay::default(),
        Some(With::Text(text)) => Overlay::parse("settings overlay", text).map_err(|d| vec![d])?,
    };
    let overlay = Overlay {
        workspace: overrides.workspace,
        max_cost_usd: overrides.max_cost_usd,
        max_tokens: overrides.max_tokens,
        ..with
    };
    let (mut loaded, label) = match source {
        Source::File(path) => (load(path, opts)?, path.display().to_string()),
        Source::Text { text, .. } => {
            let label = text_label(opts.format, text);
            (parse(&label, text, opts)?, label)
        }
    };
    overlay
        .apply(&mut loaded.spec, &label)
        .map_err(|d| vec![d])?;
    loaded
        .stage_positions
        .extend(overlay.stage_positions.iter().cloned());
    Ok((loaded, label))
}

/// A name for spec text in diagnostics, whose extension matches its format.
pub fn text_label(format: Option<Format>, text: &str) -> String {
    let format = format.unwrap_or_else(|| detect("spec", text));
    format!("spec.{}", format.extension())
}

/// `--mode` on a spec: the spec runs in that mode whatever it says.
pub fn override_mode(spec: &mut JobSpec, mode: Option<ExecutionMode>) {
    if let Some(mode) = mode {
        spec.settings.execution_mode = Some(mode);
        spec.settings.enable_parallel = None;
    }
}

/// The mode asked for (`JobSpec::mode_decision`): `ORDO_EXECUTION_MODE` (`env`) when set, else
/// parallel when `--workers` or `--max-parallel` asks for more than one task at once. The
/// default slot count (one per CPU) asks nothing.
pub fn requested_mode(
    env: Option<ExecutionMode>,
    workers: Option<u32>,
    max_parallel: Option<u32>,
) -> Option<ExecutionMode> {
    let wide = [workers, max_parallel].into_iter().flatten().any(|n| n > 1);
    env.or(wide.then_some(ExecutionMode::Parallel))
}

/// The default mode `ORDO_EXECUTION_MODE` (given as `value`) sets; blank is unset.
pub fn parse_env_mode(value: Option<&str>) -> Result<Option<ExecutionMode>, String> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => v
            .parse::<ExecutionMode>()
            .map(Some)
            .map_err(|e| format!("{EXECUTION_MODE_ENV}: {e}")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "name = \"j\"\n[settings]\nenable_parallel = false\n\
                        [[tasks]]\nname = \"a\"\ncommand = \"true\"\n";

    fn text(overrides: &Overrides) -> Result<Prepared, NotPrepared> {
        let source = Source::Text {
            text: SPEC,
            origin: "mcp",
        };
        prepare(source, &LoadOptions::default(), overrides)
    }

    #[test]
    fn the_request_carries_the_mode_asked_for_and_the_environment() {
        let p = text(&Overrides {
            max_parallel: Some(4),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(p.request.source, "mcp");
        assert_eq!(p.label, "spec.toml");
        assert_eq!(p.request.max_parallel, Some(4));
        // Four at once asks for parallel.
        assert_eq!(p.request.default_mode, Some(ExecutionMode::Parallel));
        let p = text(&Overrides {
            max_parallel: Some(1),
            workers: Some(3),
            ..Overrides::default()
        })
        .unwrap();
        // So do three slots.
        assert_eq!(p.request.default_mode, Some(ExecutionMode::Parallel));
        let p = text(&Overrides::default()).unwrap();
        assert_eq!(p.request.default_mode, None);
        assert_eq!(p.request.spec.settings.enable_parallel, Some(false));
        assert_eq!(p.request.spec.settings.execution_mode, None);
        assert_eq!(p.mode().mode, ExecutionMode::Sequential);

        let p = text(&Overrides {
            mode: Some(ExecutionMode::Parallel),
            env_mode: Some(" Sequential ".into()),
            ..Overrides::default()
        })
        .unwrap();
        let s = &p.request.spec.settings;
        assert_eq!(s.execution_mode, Some(ExecutionMode::Parallel));
        assert_eq!(s.enable_parallel, None);
        assert_eq!(p.request.default_mode, Some(ExecutionMode::Sequential));

        let p = text(&Overrides {
            env_mode: Some(String::new()),
            max_parallel: Some(2),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(p.request.default_mode, Some(ExecutionMode::Parallel));

        let e = text(&Overrides {
            env_mode: Some("fast".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(matches!(e.reason, Unprepared::Mode(_)), "{e}");
        assert!(e.to_string().starts_with("ORDO_EXECUTION_MODE: "), "{e}");
        assert_eq!(e.diagnostics(), None);
    }

    #[test]
    fn the_overlay_and_the_setting_flags_are_laid_over_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.toml");
        std::fs::write(&with, "[settings]\nmax_cost_usd = 2.5\nfail_fast = true\n").unwrap();
        let spec = dir.path().join("tasks.toml");
        std::fs::write(&spec, SPEC).unwrap();
        let p = prepare(
            Source::File(&spec),
            &LoadOptions::default(),
            &Overrides {
                with: Some(With::File(with)),
                workspace: Some(WorkspaceMode::Worktree),
                max_tokens: Some(7),
                ..Overrides::default()
            },
        )
        .unwrap();
        let s = &p.request.spec.settings;
        assert_eq!(s.max_cost_usd, Some(2.5));
        assert!(s.fail_fast);
        assert_eq!(s.workspace, Some(WorkspaceMode::Worktree));
        assert_eq!(s.max_tokens, Some(7));
        // A file is its own source.
        assert_eq!(p.request.source, spec.display().to_string());
        assert_eq!(p.format, Format::Toml);

        // Text overlays (the dashboard's form); blank is none.
        let p = text(&Overrides {
            with: Some(With::Text("[settings]\nmax_tokens = 9\n".into())),
            max_cost_usd: Some(1.0),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(p.request.spec.settings.max_tokens, Some(9));
        assert_eq!(p.request.spec.settings.max_cost_usd, Some(1.0));
        let blank = text(&Overrides {
            with: Some(With::Text(" \n".into())),
            ..Overrides::default()
        });
        assert_eq!(blank.unwrap().request.spec.settings.max_tokens, None);
    }

    #[test]
    fn errors_name_the_file_line_and_task() {
        let invalid = |text: &str, with: Option<With>| {
            let source = Source::Text { text, origin: "ui" };
            let overrides = Overrides {
                with,
                ..Overrides::default()
            };
            let e = prepare(source, &LoadOptions::default(), &overrides).unwrap_err();
            match &e.reason {
                Unprepared::Invalid(d) => d.iter().map(ToString::to_string).collect::<Vec<_>>(),
                other => panic!("not invalid: {other:?}"),
            }
        };
        let cycle = "[[tasks]]\nname = 'a'\ncommand = 'true'\ndepends_on = ['b']\n\
                     [[tasks]]\nname = 'b'\ncommand = 'true'\ndepends_on = ['a']\n";
        let e = invalid(cycle, None);
        assert!(
            e.iter()
                .any(|d| d.starts_with("spec.toml:2:") && d.contains("cycle: a → b → a")),
            "{e:?}"
        );
        let e = invalid(SPEC, Some(With::Text("[settings]\nnope = 1\n".into())));
        assert!(e[0].starts_with("settings overlay: "), "{e:?}");
        assert!(e[0].contains("nope"), "{e:?}");
        let e = invalid(SPEC, Some(With::Text("[settings\n".into())));
        assert!(e[0].starts_with("settings overlay:1:"), "{e:?}");
        let e = prepare(
            Source::File(Path::new("/nonexistent/tasks.json")),
            &LoadOptions::default(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/tasks.json: cannot open"),
            "{e}"
        );
    }

    /// A TaskMaster file, as TaskMaster writes it: no ordo settings, no stages.
    const TASKMASTER: &str = r#"{"master": {"tasks": [
        {"id": 1, "title": "Schema", "description": "Add the schema", "status": "pending",
         "priority": "high", "complexity": 8, "dependencies": []},
        {"id": 2, "title": "Docs", "description": "Write docs", "status": "pending",
         "priority": "low", "dependencies": [1],
         "subtasks": [{"id": 1, "title": "Intro", "description": "Intro", "status": "pending"}]}
    ]}}"#;

    /// Prepares `spec_text` (named `spec_name`) with `with_text` as `--with with.toml`.
    fn with_file(
        spec_name: &str,
        spec_text: &str,
        with_text: &str,
    ) -> Result<Prepared, NotPrepared> {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join(spec_name);
        std::fs::write(&spec, spec_text).unwrap();
        let with = dir.path().join("with.toml");
        std::fs::write(&with, with_text).unwrap();
        let overrides = Overrides {
            with: Some(With::File(with)),
            ..Overrides::default()
        };
        let opts = LoadOptions {
            expand_subtasks: true,
            ..LoadOptions::default()
        };
        prepare(Source::File(&spec), &opts, &overrides)
    }

    fn invalid_messages(e: NotPrepared) -> Vec<String> {
        match e.reason {
            Unprepared::Invalid(d) => d.iter().map(ToString::to_string).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn with_adds_stages_hooks_and_a_models_mapping_to_a_taskmaster_file() {
        let with = "[settings]\nmodels = { high = \"opus\", low = \"haiku\" }\n\
                    [[stages]]\nname = \"review\"\nkind = \"agent\"\nagent = \"codex\"\n\
                    prompt = 'Review {task}. Reply {\"verdict\": \"pass\"}'\n\
                    [[stages]]\nname = \"sign-off\"\nkind = \"approval\"\n\
                    when_files = [\"migrations/**\"]\n\
                    [[notify]]\nevents = [\"awaiting_approval\"]\nurl = \"http://127.0.0.1:9/\"\n";
        let p = with_file("tasks.json", TASKMASTER, with).unwrap();
        assert_eq!(p.format, Format::TaskMaster);
        let spec = &p.request.spec;
        let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["review", "sign-off"]);
        assert_eq!(spec.notify.len(), 1);
        // Every prompt task goes through the review.
        assert!(spec.tasks.iter().all(|t| spec.stages_of(t).count() == 2));
        // Complexity 8 picks `high`; the low-priority task and its subtask (which inherits
        // the priority) pick `low`.
        let model = |name: &str| {
            let t = spec.tasks.iter().find(|t| t.name.as_str() == name).unwrap();
            spec.model(t, 1).map(str::to_string)
        };
        assert_eq!(model("1").as_deref(), Some("opus"));
        assert_eq!(model("2").as_deref(), Some("haiku"));
        assert_eq!(model("2.1").as_deref(), Some("haiku"));
    }

    #[test]
    fn stage_errors_name_the_file_and_line_that_define_the_stage() {
        // In a `--with` file: its own name and the line of the stage's name.
        let with = "[[stages]]\nname = \"lint\"\ncommand = \"true\"\n\n\
                    [[stages]]\nkind = \"agent\"\nname = \"review\"\n\
                    prompt = \"Review {task} {tests}\"\n";
        let e = invalid_messages(with_file("tasks.json", TASKMASTER, with).unwrap_err());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("with.toml:7:8: stage 'review': prompt uses unknown placeholder {tests}"),
            "{e:?}"
        );
        // A parse error in a `--with` stage: the file, line and the field.
        let e = invalid_messages(
            with_file(
                "tasks.json",
                TASKMASTER,
                "[[stages]]\nname = \"x\"\nkidn = \"agent\"\n",
            )
            .unwrap_err(),
        );
        assert!(
            e[0].contains("with.toml:3:1: ") && e[0].contains("kidn"),
            "{e:?}"
        );
        // In a TOML spec: the spec's line.
        let toml = "name = \"j\"\n[[tasks]]\nname = \"a\"\nprompt = \"p\"\n\
                    [[stages]]\nname = \"gate\"\nkind = \"approval\"\nmax_rounds = 2\n";
        let e = invalid_messages(with_file("j.toml", toml, "").unwrap_err());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].ends_with(
                "j.toml:6:8: stage 'gate': max_rounds not taken by a stage of kind approval"
            ),
            "{e:?}"
        );
        // In a JSON spec.
        let json = r#"{"name": "j", "tasks": [{"name": "a", "prompt": "p"}],
  "stages": [{"name": "x", "kind": "command"}]}"#;
        let e = invalid_messages(with_file("j.json", json, "").unwrap_err());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].ends_with("j.json:2:23: stage 'x': kind command needs a command, run with sh -c"),
            "{e:?}"
        );
    }

    #[test]
    fn a_prompter_file_takes_stages_and_a_stage_selecting_nothing_is_a_warning() {
        let prompter = "[settings]\nclaude_command = \"claude\"\n\
                        [[tasks]]\nname = \"fix\"\nprompt = \"fix it\"\n\
                        verify_command = \"true\"\n\
                        [[stages]]\nname = \"review\"\nprompt = \"Review {diff}\"\n\
                        [[stages]]\nname = \"db\"\nkind = \"approval\"\n\
                        select = { area = \"db\" }\n";
        let p = with_file("prompter.toml", prompter, "").unwrap();
        let spec = &p.request.spec;
        assert_eq!(spec.stages.len(), 2);
        assert_eq!(spec.stages[0].kind(), ordo_proto::gates::StageKind::Agent);
        assert_eq!(
            spec.settings.agent_command,
            Some(vec!["claude".to_string()])
        );
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0].ends_with(
                "prompter.toml:11:8: stage 'db': selects no task (no task with those labels), so \
                 it never runs"
            ),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn a_file_with_nothing_to_do_says_so_with_its_warnings() {
        let done = r#"{"tasks": [{"id": 1, "title": "t", "status": "done", "dependencies": []}]}"#;
        let source = Source::Text {
            text: done,
            origin: "mcp",
        };
        let e = prepare(source, &LoadOptions::default(), &Overrides::default()).unwrap_err();
        let Unprepared::NothingToDo { format, reason } = &e.reason else {
            panic!("{e:?}");
        };
        assert_eq!(*format, Format::TaskMaster);
        assert!(
            reason.to_string().starts_with("spec.json: nothing to do"),
            "{e}"
        );
        assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
        assert_eq!(e.diagnostics(), Some(vec![reason.clone()]));
    }

    #[test]
    fn spec_text_gets_a_label_of_its_format() {
        assert_eq!(text_label(None, "[[tasks]]\nname = 'a'\n"), "spec.toml");
        assert_eq!(text_label(None, r#"{"tasks": []}"#), "spec.json");
        assert_eq!(text_label(None, "# Doc\n\n### Task 1: Do\n"), "spec.md");
        assert_eq!(text_label(Some(Format::TaskMaster), ""), "spec.json");
    }
}
