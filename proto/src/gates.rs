//! Quality gates and notifications (docs/design.md, "Quality gates"): the `[[stages]]` a task
//! goes through after its own command and verify and before it is integrated, the `[[notify]]`
//! hooks, and what a stage run records.
//!
//! - Spec side: `StageSpec` (kinds `agent`, `command`, `approval`) and `NotifySpec`.
//! - Wire side: a dispatch carries the agent and command stages that apply to its task,
//!   resolved (`StageRun`); its result carries one `StageRecord` per stage run and round. The
//!   engine adds the records of approvals (who, when, which commit).
//! - `parse_verdict`: the JSON verdict an agent stage's answer must end with. No parseable
//!   verdict is a failed stage, never a pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agents::{AgentCall, AgentKind, AgentRun};
use crate::duration::Dur;

/// `changes` verdicts of a stage sent back to the implementer, at most, unless it says.
pub const DEFAULT_MAX_ROUNDS: u32 = 2;
/// Longest answer searched for a verdict (its end).
const VERDICT_WINDOW: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// An agent reviews the task's work and answers with a verdict.
    Agent,
    /// A command passes on exit 0.
    Command,
    /// A person approves or rejects (`ordo approve|reject`, MCP, the dashboard).
    Approval,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Agent => "agent",
            StageKind::Command => "command",
            StageKind::Approval => "approval",
        }
    }
}

/// What a rejected approval does: fail the attempt, or send the reason back to the
/// implementer's session as a new round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnReject {
    #[default]
    Fail,
    Revise,
}

/// What an approval that nobody answered within its `timeout` becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    #[default]
    Reject,
    Approve,
}

/// One `[[stages]]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    pub kind: Option<StageKind>,
    /// Agent stages: the agent that reviews (the job's agent when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Agent stages: the prompt, with `{task}`, `{title}`, `{prompt}`, `{diff}` and
    /// `{verify_output}` replaced (`STAGE_PLACEHOLDERS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Command stages: run with `sh -c` where the task ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A stage that changes files fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `changes` verdicts sent back to the implementer, at most (`DEFAULT_MAX_ROUNDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// Stages with the same group run in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only tasks whose labels have all of these values (else every prompt task).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub select: BTreeMap<String, String>,
    /// Approvals: only tasks that changed a file matching one of these globs wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_files: Vec<String>,
    /// Agent and command stages: the longest a run may take; approvals: the longest a task
    /// waits for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reject: Option<OnReject>,
}

/// The placeholders an agent stage's prompt may use.
pub const STAGE_PLACEHOLDERS: [&str; 5] = ["task", "title", "prompt", "diff", "verify_output"];

impl StageSpec {
    /// Its kind: as written, else `agent` with a prompt, `command` with a command.
    pub fn kind(&self) -> StageKind {
        self.kind.unwrap_or(if self.command.is_some() {
            StageKind::Command
        } else if self.prompt.is_some() {
            StageKind::Agent
        } else {
            StageKind::Approval
        })
    }

    pub fn max_rounds(&self) -> u32 {
        self.max_rounds.unwrap_or(DEFAULT_MAX_ROUNDS)
    }

    /// Whether a task with these labels, prompt task or not, goes through this stage.
    pub fn selects(&self, labels: &BTreeMap<String, String>, prompt_task: bool) -> bool {
        if self.select.is_empty() {
            return prompt_task;
        }
        self.select
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v || v == "*"))
    }

    /// Approvals: whether a task that changed `files` waits (always without `when_files`).
    pub fn wants(&self, files: &[String]) -> bool {
        self.when_files.is_empty()
            || files
                .iter()
                .any(|f| self.when_files.iter().any(|g| crate::globs::matches(g, f)))
    }
}

/// The events a `[[notify]]` hook may subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    AwaitingApproval,
    TaskFailed,
    BudgetExhausted,
    ConflictEscalated,
    JobEnded,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::AwaitingApproval,
        NotifyEvent::TaskFailed,
        NotifyEvent::BudgetExhausted,
        NotifyEvent::ConflictEscalated,
        NotifyEvent::JobEnded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::AwaitingApproval => "awaiting_approval",
            NotifyEvent::TaskFailed => "task_failed",
            NotifyEvent::BudgetExhausted => "budget_exhausted",
            NotifyEvent::ConflictEscalated => "conflict_escalated",
            NotifyEvent::JobEnded => "job_ended",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    #[default]
    Json,
    /// A Slack incoming-webhook body (`{"text": ...}`).
    Slack,
}

/// One `[[notify]]` hook: the events it wants, POSTed to `url`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    pub events: Vec<NotifyEvent>,
    pub url: String,
    #[serde(default)]
    pub format: NotifyFormat,
    /// The environment variable (of the process that delivers) holding the HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The dashboard's address, for links to the job and task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
}

/// An agent or command stage as a dispatch carries it: everything the executor needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub run: StageProgram,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    pub max_rounds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StageProgram {
    /// `prompt` still holds its placeholders: the executor fills them in.
    Agent {
        call: AgentCall,
        prompt: String,
    },
    Command {
        command: String,
    },
}

impl StageRun {
    pub fn kind(&self) -> StageKind {
        match self.run {
            StageProgram::Agent { .. } => StageKind::Agent,
            StageProgram::Command { .. } => StageKind::Command,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Changes,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Changes => "changes",
            Verdict::Fail => "fail",
        }
    }
    /// The name of a stage's verdict, `none` when it gave none (metrics, reports, chips).
    pub fn name_or_none(v: Option<Verdict>) -> &'static str {
        v.map_or("none", Verdict::name)
    }
}

/// One finding of a review.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default)]
    pub message: String,
}

/// One run of one stage (or one decision of an approval), as results, reports and the
/// dashboard show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: Option<StageKind>,
    /// 1 for the first time the stages ran in an attempt, 2 after the first `changes`, ...
    pub round: u32,
    /// `None`: the stage could not give one (no parseable verdict, it timed out, it changed
    /// files while `read_only`): a failed stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// Why it failed, or what the command printed last.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub started_at_ms: u64,
    #[serde(default)]
    pub duration_ms: u64,
    /// Agent stages: session, cost, tokens, model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRun>,
    /// Approvals: who decided (NATS user, OS user, `dashboard`, `mcp`, `timeout`), with what
    /// comment, at which commit of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl std::fmt::Display for Finding {
    /// `src/a.rs:3: [high] message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if let Some(s) = &self.severity {
            write!(f, "[{s}] ")?;
        }
        f.write_str(&self.message)
    }
}

impl StageRecord {
    pub fn passed(&self) -> bool {
        self.verdict == Some(Verdict::Pass)
    }
}

/// The verdict an agent stage's answer ends with: the last JSON object in it (a fenced
/// ```json block included) that has a `verdict` of `pass`, `changes` or `fail`, with its
/// `findings`. `Err` says why there is none.
pub fn parse_verdict(answer: &str) -> Result<(Verdict, Vec<Finding>), String> {
    #[derive(Deserialize)]
    struct Answer {
        verdict: Verdict,
        #[serde(default)]
        findings: Vec<Finding>,
    }
    let mut text = answer.trim_end();
    let cut = text.len().saturating_sub(VERDICT_WINDOW);
    let cut = (cut..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text = &text[cut..];
    if let Some(t) = text.strip_suffix("```") {
        text = t.trim_end();
    }
    if !text.ends_with('}') {
        return Err("the answer does not end with a JSON verdict".into());
    }
    let mut last_error = None;
    for (i, _) in text.rmatch_indices('{') {
        match serde_json::from_str::<serde_json::Value>(&text[i..]) {
            Ok(v) if v.get("verdict").is_some() => {
                return serde_json::from_value::<Answer>(v)
                    .map(|a| (a.verdict, a.findings))
                    .map_err(|e| format!("the verdict is not one ordo reads: {e}"));
            }
            Ok(_) => last_error = Some("its last JSON object has no \"verdict\"".to_string()),
            Err(_) => {}
        }
    }
    Err(last_error.unwrap_or_else(|| "the answer does not end with a JSON verdict".into()))
}

/// The prompt of an agent stage with its placeholders filled in.
pub fn fill_prompt(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((key, close)) if values.contains_key(key) => {
                out.push_str(&values[key]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholders a prompt template uses: every `{identifier}` (letters, digits and `_`, not
/// starting with a digit), in order. Other braces (`{"verdict": …}`) are text.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let word = &after[..end];
        if after[end..].starts_with('}')
            && word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            out.push(word);
        }
        rest = after;
    }
    out
}

/// The prompt that resumes the implementer's session after a `changes` verdict or a rejection
/// to revise: what the reviewers found.
pub fn revise_prompt(stage: &str, findings: &[Finding], reason: Option<&str>) -> String {
    let mut p = format!("The {stage} stage asked for changes to your work on this task.");
    if let Some(r) = reason {
        p.push_str(&format!("\n\n{r}"));
    }
    for f in findings {
        p.push_str(&format!("\n- {f}"));
    }
    p.push_str("\n\nMake the changes, then stop.");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_read_from_the_end_of_the_answer() {
        let (v, f) = parse_verdict(
            "Looked at it.\n```json\n{\"verdict\": \"changes\", \"findings\": \
             [{\"file\": \"a.rs\", \"line\": 3, \"severity\": \"high\", \"message\": \"x\"}]}\n```\n",
        )
        .unwrap();
        assert_eq!(v, Verdict::Changes);
        assert_eq!(f[0].file.as_deref(), Some("a.rs"));
        let (v, _) = parse_verdict("ok {\"a\": 1} then {\"verdict\":\"pass\"}").unwrap();
        assert_eq!(v, Verdict::Pass);
        for bad in [
            "LGTM",
            "{\"verdict\": \"pass\"} and then more words",
            "{\"verdict\": \"maybe\"}",
            "{\"ok\": true}",
            "",
        ] {
            assert!(parse_verdict(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_are_filled_and_others_left() {
        let values = BTreeMap::from([("task", "t1".to_string()), ("diff", "+x".to_string())]);
        assert_eq!(
            fill_prompt("Review {task}: {diff} {json} {", &values),
            "Review t1: +x {json} {"
        );
    }

    #[test]
    fn stages_select_by_labels_and_approvals_by_files() {
        let s = StageSpec {
            when_files: vec!["migrations/**".into()],
            ..StageSpec::default()
        };
        assert!(s.wants(&["migrations/1.sql".into()]));
        assert!(!s.wants(&["src/a.rs".into()]));
        let labels = BTreeMap::from([("area".to_string(), "db".to_string())]);
        assert!(s.selects(&labels, true) && !s.selects(&labels, false));
        let s = StageSpec {
            select: BTreeMap::from([("area".into(), "db".into())]),
            ..StageSpec::default()
        };
        assert!(s.selects(&labels, false));
        assert!(!s.selects(&BTreeMap::new(), true));
    }
}
