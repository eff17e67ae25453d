//! Agent runs inside the engine (docs/design.md, agents): per task (`AgentSlot`, in the task's
//! slot) the session its last attempt reported, the prompt of its next attempt (the verify
//! loop, a resolve round), what it spent and its rate limits in a row; per job (`Agents`) the
//! executions already charged and the spend against the job's budget. The job decides the
//! task states; this module decides sessions, prompts, spending and rate-limit waits. No I/O.

use std::collections::HashSet;
use std::time::Duration;

use ordo_proto::{AgentRun, Conflict, JobSpec, Outcome, TaskResult, TaskSpec};

use super::workspace::Workspaces;
use super::{Execution, MAX_BACKOFF, execution};

/// Rate-limited runs of one task in a row after which it fails rather than waits again.
const MAX_RATE_LIMITED: u32 = 20;
/// First wait after a rate limit that did not say how long; doubled each time.
const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(2);

/// What the engine keeps about one task's agent runs.
#[derive(Debug, Default)]
pub(crate) struct AgentSlot {
    /// The session its last attempt reported.
    session: Option<String>,
    /// The prompt of its next attempt: the verify loop's (its verify command failed) or a
    /// resolve round's (its change conflicted); either resumes its own session.
    next_prompt: Option<String>,
    /// Dollars and tokens spent over its attempts.
    spent: (f64, u64),
    /// Rate-limited runs in a row.
    rate_limited: u32,
}

/// What the engine keeps about a job's agent runs besides each task's. Not lost on a restart:
/// a resuming job's `Saved` holds the stored results with an agent run since the job last
/// started (applied, and ignored but charged), replayed through `Agents::replay` and
/// `Agents::charge` before the task records load, so sessions, the verify loop's next prompt,
/// rate limits in a row and the spend (task and job) carry on. A retry (`ordo retry`) starts
/// from the task records alone: sessions and the budget start afresh.
#[derive(Debug, Default)]
pub(crate) struct Agents {
    /// Executions already charged.
    charged: HashSet<Execution>,
    /// The job's dollars and tokens spent.
    cost_usd: f64,
    tokens: u64,
    /// Set once the job's budget is spent: why no further agent attempt starts.
    exhausted: Option<String>,
}

impl Agents {
    /// Why no further agent attempt of the job starts, once its budget is spent.
    pub(crate) fn exhausted(&self) -> Option<&str> {
        self.exhausted.as_deref()
    }

    /// The executions whose agent spend was counted, for late results once the job ended.
    pub(crate) fn take_charged(&mut self) -> HashSet<Execution> {
        std::mem::take(&mut self.charged)
    }

    /// A session and a spend an applied attempt of `slot`'s task reported.
    pub(crate) fn note_run(
        &mut self,
        slot: &mut AgentSlot,
        spec: &JobSpec,
        result: &TaskResult,
        run: &AgentRun,
    ) {
        if let Some(id) = &run.session_id {
            slot.session = Some(id.clone());
        }
        self.charge(slot, spec, result);
    }

    /// Counts what one execution's agents spent (`TaskResult::spend`: the attempt's agent and
    /// its stages' reviewers), once: the same execution reported again (its event redelivered
    /// after a lost ack, or replayed after a restart) is not charged twice. Whether it was
    /// charged now.
    pub(crate) fn charge(
        &mut self,
        slot: &mut AgentSlot,
        spec: &JobSpec,
        result: &TaskResult,
    ) -> bool {
        if !self.charged.insert(execution(result)) {
            return false;
        }
        self.spend(slot, spec, result.spend());
        true
    }

    /// A stored result of an applied attempt, replayed when the job resumes (before its task
    /// records): its session, spend, rate limits in a row and the verify loop's next prompt
    /// are as they were before the restart.
    pub(crate) fn replay(
        &mut self,
        slot: &mut AgentSlot,
        spec: &JobSpec,
        task: &TaskSpec,
        result: &TaskResult,
        run: &AgentRun,
    ) {
        self.note_run(slot, spec, result, run);
        if !result.outcome.is_success() && run.rate_limited.is_some() {
            slot.rate_limited += 1;
        } else {
            slot.rate_limited = 0;
        }
        slot.next_prompt = match result.outcome {
            Outcome::VerifyFailed => verify_loop_prompt(task, result),
            _ => None,
        };
    }

    /// Adds what an execution's agents spent (dollars, tokens) to the task and the job; once
    /// the job's budget is spent, no further agent attempt starts.
    fn spend(&mut self, slot: &mut AgentSlot, spec: &JobSpec, (cost, tokens): (Option<f64>, u64)) {
        let cost = cost.filter(|c| c.is_finite() && *c > 0.0).unwrap_or(0.0);
        slot.spent.0 += cost;
        slot.spent.1 = slot.spent.1.saturating_add(tokens);
        self.cost_usd += cost;
        self.tokens = self.tokens.saturating_add(tokens);
        if self.exhausted.is_none() {
            self.exhausted = budget_spent(spec.budget(), (self.cost_usd, self.tokens));
        }
    }
}

impl AgentSlot {
    /// The session an attempt of this task resumes: its own in the verify loop or a resolve
    /// round, else (with `resume_previous_session`) that of the task that ran before it
    /// (`previous`: its last dependency, or the task before it in the file).
    pub(crate) fn session_to_resume(
        &self,
        task: &TaskSpec,
        previous: Option<&AgentSlot>,
    ) -> Option<String> {
        if self.next_prompt.is_some() {
            return self.session.clone();
        }
        if !task.resume_previous_session {
            return None;
        }
        previous.and_then(|p| p.session.clone())
    }

    /// The prompt of the attempt being dispatched, if it is not the task's own.
    pub(crate) fn take_prompt(&mut self) -> Option<String> {
        self.next_prompt.take()
    }

    /// The next attempt runs the task's own prompt (the attempt in flight took the verify
    /// loop's when it was dispatched; a resolve round that left markers runs from the tip).
    pub(crate) fn drop_prompt(&mut self) {
        self.next_prompt = None;
    }

    /// An applied attempt ended `verify_failed`: with a session, the next attempt resumes it
    /// with what failed.
    pub(crate) fn verify_failed(&mut self, task: &TaskSpec, result: &TaskResult) {
        self.next_prompt = verify_loop_prompt(task, result);
    }

    /// Why this task may not start another attempt: its own budget is spent.
    pub(crate) fn budget_spent(&self, task: &TaskSpec) -> Option<String> {
        budget_spent((task.max_cost_usd, task.max_tokens), self.spent)
            .map(|why| format!("task {why}"))
    }

    /// An applied attempt that did not end on a rate limit.
    pub(crate) fn not_rate_limited(&mut self) {
        self.rate_limited = 0;
    }

    /// A run that ended on a rate limit: how long the task waits (as long as the agent asked,
    /// else an exponential backoff with `jitter`, at most 10 minutes) and how many runs in a
    /// row were limited. `None` when it has been rate limited too often in a row, or its job is
    /// `stopping` (it then fails or ends as usual).
    pub(crate) fn rate_limit_wait(
        &mut self,
        retry_after_ms: Option<u64>,
        stopping: bool,
        jitter: impl FnOnce() -> f64,
    ) -> Option<(u32, Duration)> {
        self.rate_limited += 1;
        let n = self.rate_limited;
        if n > MAX_RATE_LIMITED || stopping {
            return None;
        }
        let exp = (n - 1).min(20);
        let wait = match retry_after_ms {
            Some(ms) => Duration::from_millis(ms),
            None => RATE_LIMIT_BACKOFF
                .saturating_mul(1u32 << exp)
                .min(MAX_BACKOFF)
                .mul_f64(jitter()),
        };
        Some((n, wait.min(MAX_BACKOFF)))
    }

    /// After a conflict of task `t`: a prompt task whose session can be resumed resolves it in
    /// a resolve round (its own session, the tip merged into its work, the markers to mend);
    /// any other task runs again from the new tip.
    pub(crate) fn rework(&mut self, t: u32, prompt_task: bool, ws: &mut Workspaces) {
        match ws.resolving(t) {
            Some(c) if prompt_task && self.session.is_some() => {
                self.next_prompt = Some(resolve_prompt(c));
            }
            _ => ws.no_resolve(t),
        }
    }

    /// An approval rejected to revise: with a session, the next attempt resumes it with
    /// `prompt` (the reason); without one it runs the task again from its work.
    pub(crate) fn revise(&mut self, prompt: String) {
        if self.session.is_some() {
            self.next_prompt = Some(prompt);
        }
    }

    /// A resolve round of task `t` dispatched again without its prompt (requeued, its worker
    /// lost, a rate limit waited out) gets it back; without a session to resume it becomes a
    /// re-run.
    pub(crate) fn keep_resolving(&mut self, t: u32, ws: &mut Workspaces) {
        if self.next_prompt.is_some() {
            return;
        }
        match ws.resolving(t) {
            Some(c) if self.session.is_some() => self.next_prompt = Some(resolve_prompt(c)),
            Some(_) => ws.no_resolve(t),
            None => {}
        }
    }
}

/// The verify loop: after an attempt that ended `verify_failed` with a session, the next
/// attempt resumes that session with the verify command and what it printed.
fn verify_loop_prompt(task: &TaskSpec, result: &TaskResult) -> Option<String> {
    result.agent.as_ref().and_then(|a| a.session_id.as_ref())?;
    let verify = task.verify_command.as_ref()?;
    let code = result
        .verify_exit_code
        .map_or("did not pass".to_string(), |c| format!("exited {c}"));
    Some(format!(
        "The verify command `{verify}` {code} after your last turn. The end of the \
         output:\n\n{}\n\nFix what it reports; it runs again when you are done.",
        result.output_tail.trim_end()
    ))
}

/// What a resolve round asks the agent: the files in conflict, the task whose change is on the
/// other side, and to leave no marker.
fn resolve_prompt(c: &Conflict) -> String {
    let with = match &c.with {
        Some(w) => format!(" with task '{w}', integrated meanwhile"),
        None => " with work integrated meanwhile".to_string(),
    };
    let files: String = c.files.iter().map(|f| format!("\n- {f}")).collect();
    format!(
        "Your change conflicts{with}. The integration branch's latest work has been merged \
         into your worktree and the conflicts are marked in these files (<<<<<<<, =======, \
         >>>>>>>):{files}\n\nResolve each conflict keeping the intent of both changes, remove \
         every conflict marker, and leave the files ready to commit."
    )
}

/// How the reason of a task the budget stopped begins (or, after an attempt's failure, goes
/// on): `[[notify]]` tells `budget_exhausted` by it.
pub const BUDGET_EXHAUSTED: &str = "budget exhausted";

/// Why a budget `(dollars, tokens)` is spent by `spent`, if it is: `budget exhausted ($3.02 of
/// $3.00)`.
fn budget_spent(budget: (Option<f64>, Option<u64>), spent: (f64, u64)) -> Option<String> {
    match budget {
        (Some(max), _) if spent.0 >= max => Some(format!(
            "{BUDGET_EXHAUSTED} (${:.2} of ${:.2})",
            spent.0, max
        )),
        (_, Some(max)) if spent.1 >= max => Some(format!(
            "{BUDGET_EXHAUSTED} ({} of {} tokens)",
            spent.1, max
        )),
        _ => None,
    }
}
