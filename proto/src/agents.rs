//! Agents as every component sees them: which agent runs a prompt task (`AgentKind`), how it
//! is called (`AgentCall`: an implementer resumed, a stage's reviewer) and what a run reported
//! about itself (`AgentRun`, `RateLimit`). A leaf of the vocabulary: the spec, the wire
//! messages and the quality gates all use it.

use serde::{Deserialize, Serialize};

/// Which agent runs a job's prompt tasks, and so how its output is read (docs/design.md, "Agent
/// runs").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Claude Code: `claude -p --output-format json [--append-system-prompt S] [--resume ID]
    /// PROMPT`, one JSON object on stdout (result, session, cost, tokens).
    #[default]
    Claude,
    /// Codex: `codex exec --json [resume ID] PROMPT`, JSON events on stdout.
    Codex,
    /// Any program: `agent_command` with the prompt as its last argument; its output is the
    /// task's output as it is.
    Command,
}

impl AgentKind {
    pub const ALL: [AgentKind; 3] = [AgentKind::Claude, AgentKind::Codex, AgentKind::Command];

    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Command => "command",
        }
    }

    /// The kind called `name` (`AgentKind::name`).
    pub fn named(name: &str) -> Option<AgentKind> {
        AgentKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How to call an agent, everything but the session and the prompt (`JobSpec::agent_call`):
/// what an executor runs a stage's reviewer and a resumed implementer with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCall {
    pub kind: AgentKind,
    /// The program and its options (`agent_command`, else `claude` or `codex`).
    pub base: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The implementer of a task with an `escalate` ladder: the models its rounds use in turn
    /// after a stage asked for changes (the rungs above the attempt's own; the last repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<String>,
}

impl AgentCall {
    /// The call of the implementer's `round`-th revision (from 1): the next rung of its ladder
    /// when it has one.
    pub fn for_round(&self, round: u32) -> AgentCall {
        let mut call = self.clone();
        if let Some(last) = self.escalate.len().checked_sub(1) {
            let i = (round.max(1) as usize - 1).min(last);
            call.model = Some(self.escalate[i].clone());
        }
        call
    }

    /// The argv of one run with `prompt`, resuming `session` when given.
    pub fn argv(&self, session: Option<&str>, prompt: &str) -> Vec<String> {
        let with_system = || match &self.system {
            Some(sys) => format!("{sys}\n\n{prompt}"),
            None => prompt.to_string(),
        };
        let mut argv = self.base.clone();
        match self.kind {
            AgentKind::Claude => {
                argv.extend(["-p", "--output-format", "json"].map(String::from));
                // Claude Code has no option for the effort: `effort` is Codex's alone.
                if let Some(m) = &self.model {
                    argv.extend(["--model".to_string(), m.clone()]);
                }
                if let Some(sys) = &self.system {
                    argv.extend(["--append-system-prompt".to_string(), sys.clone()]);
                }
                if let Some(id) = session {
                    argv.extend(["--resume".to_string(), id.to_string()]);
                }
                argv.push(prompt.to_string());
            }
            AgentKind::Codex => {
                argv.extend(["exec", "--json"].map(String::from));
                if let Some(m) = &self.model {
                    argv.extend(["-m".to_string(), m.clone()]);
                }
                if let Some(e) = &self.effort {
                    argv.extend(["-c".to_string(), format!("model_reasoning_effort={e}")]);
                }
                if let Some(id) = session {
                    argv.extend(["resume".to_string(), id.to_string()]);
                }
                argv.push(with_system());
            }
            AgentKind::Command => argv.push(with_system()),
        }
        argv
    }
}

/// What an agent run reported about itself (docs/design.md, "Agent runs").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    #[serde(default)]
    pub session_id: Option<String>,
    /// US dollars, when the agent says (Claude Code does; Codex does not).
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub num_turns: Option<u32>,
    /// The model that did most of the run (by cost, else tokens), when the agent says (Claude
    /// Code's `modelUsage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The run ended on a rate limit or an overload (HTTP 429/529): not a failed attempt; run
    /// again after the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimit>,
}

impl AgentRun {
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// The wait the agent asked for (`Retry-After`), if it said.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}
