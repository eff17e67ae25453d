//! ordo's integration tests: one test binary driving the real binaries.
//!
//! - `agents`: agent runs with the stub Claude Code and Codex of `examples/stub-agent`:
//!   sessions, the verify loop, costs, budgets, rate limits, pools across jobs, bad output.
//! - `approvals`: approval stages: only the task touching `migrations/**` waits, approved from
//!   another process while `ordo run --state` runs; bad and repeated decisions refused.
//! - `big_jobs`: jobs larger than one NATS message: a 1.3 MB spec run through a cluster,
//!   its status paged and its report whole; specs over the coordinator's limits refused with
//!   nothing left behind.
//! - `cli`: validate, plan, graph and convert on every example (the fixtures in
//!   `tests/fixtures`, plus the shared conformance set when present) and on bad input.
//! - `dashboard`: `ordo ui` in headless Chromium: every page, live updates without a reload,
//!   cancel / retry / re-run forms, CSRF, read-only and token rules, hostile text, a cluster.
//! - `deploy`: deploy/ for real: nats configs, role permissions, TLS, cluster, YAML, units.
//! - `distributed`: coordinator, workers and the CLI over a real nats-server.
//! - `mcp`: `ordo mcp` driven by the official MCP Python SDK's stdio client, locally and on a
//!   cluster: every tool, a job run to its report, a cycle as a tool error, cancel.
//! - `gates`: quality gates (`[[stages]]`): a reviewer asking for changes then passing (the
//!   implementer's session resumed), no verdict and a read-only stage that edits (nothing
//!   integrated), stages on a cluster's workers.
//! - `notify`: `[[notify]]` webhooks to a receiver on loopback: the subscribed events signed,
//!   a failing receiver served later once each, a coordinator killed after the commit.
//! - `jobs_local`: the job commands (status, logs, retry, submit, cancel) on a local state
//!   directory, through the same job client as the cluster.
//! - `gates_faces`: approvals from the dashboard's form (Chromium) and the MCP tool, each
//!   naming who decided, and the stages in status and the report.
//! - `faces`: the same job (a pool and a lock across two jobs, a budget, worktrees, a retry
//!   with a new budget, prune) through `ordo run`, a cluster, MCP and the dashboard's form.
//! - `fault_suite`: issue 5's faults on three job shapes, checked against a ledger.
//! - `faults`: a worker killed mid-task, forged messages, hostile task names.
//! - `observability`: OTLP traces from `ordo run` and from coordinator + worker.
//! - `served`: a state directory served on its socket while `ordo run` or `ordo ui` holds it:
//!   status, the dashboard and cancel from other processes; a stale socket taken over.
//! - `run_local`: `ordo run` end to end: the fixtures (and the shared set when present), every
//!   execution semantic, Ctrl-C, resume.
//! - `queue`: the integration queue's batches: four clean tasks verified once and merged with
//!   one move of the branch; a failed batch bisected to its culprit, which runs again.
//! - `report`: reports of real runs in every format (JUnit read by junitparser, HTML rendered
//!   by Chromium), through a state directory and the coordinator; `ordo prune`.
//! - `update_source`: `ordo run --update-source` on TaskMaster files, the result read by
//!   TaskMaster's own CLI (`task-master list`, installed by `scripts/test`).
//! - `workspaces`: agent workspaces (`workspace = "worktree"`) on real git repositories: clean
//!   merges, conflicts re-run (commands and a stub agent), dependencies, the user's checkout
//!   untouched, write-sets, the integration limit, bad settings, tasks that break their
//!   worktree.
//! - `workspaces_cluster`: the same across machines: a shared bare repository, two workers
//!   with cache clones of their own, the end state equal to one machine's; bad repositories.

mod agents;
mod approvals;
mod big_jobs;
mod cli;
mod dashboard;
mod deploy;
mod distributed;
mod faces;
mod fault_suite;
mod faults;
mod gates;
mod gates_faces;
mod jobs_local;
mod mcp;
mod notify;
mod observability;
mod queue;
mod report;
mod run_local;
mod served;
mod speculation;
mod update_source;
mod workspaces;
mod workspaces_cluster;
