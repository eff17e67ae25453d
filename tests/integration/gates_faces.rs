//! Approvals from the faces (docs/design.md, "Quality gates: where stages show"): while `ordo
//! run --state S` holds two tasks awaiting approval, one is approved through the dashboard's
//! real form in headless Chromium and the other through the MCP tool `approve` (after a
//! `reject` without a reason is refused); each decision
//! is recorded with who made it (`dashboard`, `mcp`), the job succeeds, and the report shows
//! both decisions as stages.

use std::time::Duration;

use ordo_tests::{Daemon, ordo_in, task, wait_until, write};
use serde_json::{Value, json};

use crate::dashboard::{Ui, assert_no_errors, browser, open_clean, text_of};
use crate::mcp::mcp_session;

/// Two shell tasks, both selected by the `sign-off` approval through their labels.
const GATED: &str = r#"
name = "gated"

[settings]
execution_mode = "parallel"

[[stages]]
name = "sign-off"
kind = "approval"
select = { gate = "yes" }

[[tasks]]
name = "by-dashboard"
command = "echo dashboard-task"
labels = { gate = "yes" }

[[tasks]]
name = "by-mcp"
command = "echo mcp-task"
labels = { gate = "yes" }
"#;

#[test]
fn approvals_from_the_dashboard_form_and_the_mcp_tool_name_who_decided() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = write(d, "gated.toml", GATED);
    let state = d.join("st").display().to_string();
    let ordo = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--state", state.as_str()]);
        ordo_in(d, &all, &[])
    };
    let mut run = Daemon::spawn("ordo", &["run", &spec, "--state", &state], d);

    // Both tasks wait for a decision; status says what waits and how to decide.
    let mut job = String::new();
    let mut last = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = ordo(&["status", "--output", "json"]);
            if r.code() != 0 {
                return false;
            }
            job = r.json()[0]["id"].as_str().unwrap_or_default().to_string();
            if job.is_empty() {
                return false;
            }
            let r = ordo(&["status", &job, "--output", "json"]);
            last = r.json();
            ["by-dashboard", "by-mcp"]
                .iter()
                .all(|t| task(&last, t)["state"] == "awaiting_approval")
        }),
        "the tasks never awaited approval: {last:#}\n{}",
        run.log()
    );
    assert_eq!(task(&last, "by-mcp")["approval"]["stage"], "sign-off");
    let text = ordo(&["status", &job]).stdout;
    assert!(
        text.contains("by-mcp awaits approval (sign-off")
            && text.contains(&format!("ordo approve {job} by-mcp")),
        "{text}"
    );

    // The dashboard: the task page shows the approval and its forms; Approve is clicked.
    let ui = Ui::start(d, &["--state", &state]);
    let mut b = browser();
    let p = open_clean(&mut b, &ui.url(&format!("/jobs/{job}/tasks/0")));
    assert!(
        p.eval(&mut b, &text_of("section.approval h2"))
            .as_str()
            .is_some_and(|h| h.contains("sign-off")),
        "{}",
        ui.get(&format!("/jobs/{job}/tasks/0")).body
    );
    let before = p.loads(&mut b);
    p.eval(
        &mut b,
        "document.querySelector('section.approval input[name=comment]').value = 'looks right'; \
         document.querySelector('button[name=approve]').click(); true",
    );
    p.wait_load_after(&mut b, before);
    assert_no_errors(&mut b, &p, "after approving");

    // MCP: the other task, approved by the tool.
    let steps = json!([
        {"tool": "reject", "arguments": {"job": job, "task": "by-mcp", "reason": " "}},
        {"tool": "approve", "arguments": {"job": job, "task": "by-mcp", "comment": "ok"}},
        {"tool": "job_status", "arguments": {"job": job},
         "until": {"field": "state", "in": ["succeeded", "failed", "cancelled"]}},
    ]);
    let s = mcp_session(d, &["mcp", "--state", &state], &steps);
    // A rejection without a reason is refused, and decides nothing.
    assert_eq!(s["steps"][0]["is_error"], true, "{:#}", s["steps"][0]);
    assert!(
        s["steps"][0].to_string().contains("needs a reason"),
        "{:#}",
        s["steps"][0]
    );
    assert_eq!(s["steps"][1]["is_error"], false, "{:#}", s["steps"][1]);
    assert_eq!(s["steps"][2]["structured"]["state"], "succeeded", "{s:#}");
    run.wait_exit(Duration::from_secs(30));

    // Each decision names who made it, as a stage of its task in the report.
    let r = ordo(&["report", &job, "--format", "json"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);
    let report = r.json();
    for (i, by, comment) in [(0, "dashboard", "looks right"), (1, "mcp", "ok")] {
        let stages = &report["tasks"][i]["stages"];
        assert_eq!(stages[0]["name"], "sign-off", "{stages:#}");
        assert_eq!(stages[0]["verdict"], "pass", "{stages:#}");
        assert_eq!(stages[0]["by"], by, "{stages:#}");
        assert_eq!(stages[0]["comment"], comment, "{stages:#}");
    }
    let md = ordo(&["report", &job]).stdout;
    assert!(md.contains("sign-off ✓ dashboard"), "{md}");
}
