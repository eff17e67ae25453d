//! Reports of real runs: `ordo run --state DIR` (and `--report FILE`), then `ordo report` in
//! every format. The JSON is parsed with serde_json, the Mermaid gantt block is checked line by
//! line, the JUnit XML is read by a real JUnit consumer (Python's `junitparser`, installed into
//! `.venv` by `scripts/test`), and the HTML of a 20-task job is rendered by headless Chromium
//! through `scripts/render-report.sh`. One test asks a real coordinator; `ordo prune` is tested
//! on a state directory and through the coordinator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ordo_tests::{Cluster, ordo_in, run_with_deadline, task, write};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    ordo_tests::venv_python("junitparser")
}

const READ_JUNIT: &str = r#"
import json, sys
from junitparser import JUnitXml, Properties
xml = JUnitXml.fromfile(sys.argv[1])
def props(of):
    return {p.name: p.value for p in (of.child(Properties) or [])}
suites = []
for suite in xml:
    cases = []
    for case in suite:
        cases.append({
            "name": case.name, "classname": case.classname, "time": case.time,
            "results": [{"kind": type(r).__name__.lower(), "message": r.message,
                         "type": r.type, "text": r.text} for r in case.result],
            "system_out": case.system_out, "properties": props(case),
        })
    suites.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures,
                   "errors": suite.errors, "skipped": suite.skipped, "time": suite.time,
                   "properties": props(suite), "cases": cases})
print(json.dumps(suites))
"#;

/// The JUnit file as `junitparser` reads it: suites with their counts and cases.
fn read_junit(path: &Path) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.args(["-c", READ_JUNIT]).arg(path);
    let r = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(
        r.code(),
        0,
        "junitparser could not read {}:\n{}\n{}",
        path.display(),
        r.stderr,
        std::fs::read_to_string(path).unwrap_or_default()
    );
    r.json().as_array().unwrap().clone()
}

fn case<'a>(suite: &'a Value, name: &str) -> &'a Value {
    suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no testcase {name}: {suite}"))
}

fn result_kinds(case: &Value) -> Vec<String> {
    case["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect()
}

/// One line of a Mermaid gantt: `name :tag, id, start, end`.
#[derive(Debug)]
struct GanttLine {
    name: String,
    tag: String,
    start: u64,
    end: u64,
}

/// Checks the Markdown's ```mermaid block is a well-formed gantt chart and returns its task
/// lines.
fn gantt(md: &str) -> Vec<GanttLine> {
    let start = md.find("```mermaid\n").expect("a ```mermaid block") + "```mermaid\n".len();
    let len = md[start..].find("\n```").expect("the mermaid block ends");
    let block = &md[start..start + len];
    let mut lines = block.lines();
    assert_eq!(lines.next(), Some("gantt"), "{block}");
    let mut tasks = Vec::new();
    let mut saw = (false, false, false);
    for line in lines {
        let l = line.trim();
        if l.starts_with("%%") {
            continue;
        }
        if let Some(t) = l.strip_prefix("title ") {
            assert!(!t.contains([':', ';', '#']), "title: {line}");
            saw.0 = true;
            continue;
        }
        if l == "dateFormat x" {
            saw.1 = true;
            continue;
        }
        if l.starts_with("axisFormat ") {
            continue;
        }
        if let Some(s) = l.strip_prefix("section ") {
            assert!(
                !s.trim().is_empty() && !s.contains([':', ';', '#']),
                "{line}"
            );
            saw.2 = true;
            continue;
        }
        // A task line: `name :tag, id, start, end`.
        assert!(
            line.starts_with("    "),
            "task lines are indented: {line:?}"
        );
        let (name, rest) = l
            .split_once(" :")
            .unwrap_or_else(|| panic!("no ' :' in {line:?}"));
        assert!(
            !name.is_empty() && !name.contains([':', ';', '#']),
            "bad task name in {line:?}"
        );
        let parts: Vec<&str> = rest.split(", ").collect();
        assert_eq!(parts.len(), 4, "want tag, id, start, end: {line:?}");
        assert!(
            ["done", "crit", "active"].contains(&parts[0]),
            "tag in {line:?}"
        );
        assert!(
            parts[1].starts_with('t')
                && parts[1][1..]
                    .split_once('a')
                    .is_some_and(|(t, a)| t.parse::<u32>().is_ok() && a.parse::<u32>().is_ok()),
            "id in {line:?}"
        );
        let start: u64 = parts[2]
            .parse()
            .unwrap_or_else(|_| panic!("start in {line:?}"));
        let end: u64 = parts[3]
            .parse()
            .unwrap_or_else(|_| panic!("end in {line:?}"));
        assert!(start < end, "start < end in {line:?}");
        // Unix milliseconds of this century.
        assert!(
            start > 1_500_000_000_000 && end < 4_000_000_000_000,
            "{line:?}"
        );
        tasks.push(GanttLine {
            name: name.to_string(),
            tag: parts[0].to_string(),
            start,
            end,
        });
    }
    assert!(
        saw.0 && saw.1 && (saw.2 || tasks.is_empty()),
        "title, dateFormat and a section: {block}"
    );
    tasks
}

/// `ordo report --state DIR ARGS` must succeed; returns stdout.
fn report(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["report", "--state", "st"];
    all.extend_from_slice(args);
    let r = ordo_in(dir, &all, &[]);
    assert_eq!(r.code(), 0, "ordo {all:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

fn report_json(dir: &Path) -> Value {
    serde_json::from_str(&report(dir, &["--format", "json"])).expect("report JSON parses")
}

/// Runs SPEC (written to `dir/job.toml`) with `--state st`; returns the exit code.
fn run(dir: &Path, spec: &str, extra: &[&str]) -> i32 {
    let path = write(dir, "job.toml", spec);
    let mut args = vec!["run", path.as_str(), "--state", "st", "-q"];
    args.extend_from_slice(extra);
    let r = ordo_in(dir, &args, &[]);
    assert!(
        r.stderr.trim().is_empty() || r.code() != 0,
        "ordo run: {}",
        r.stderr
    );
    r.code()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

const DIAMOND: &str = r#"
name = "diamond"
[[tasks]]
name = "a"
command = "echo built a"
verify_command = "test -n \"$ORDO_TASK\""
[[tasks]]
name = "b"
command = "sleep 0.4; echo b"
depends_on = ["a"]
verify_command = "true"
[[tasks]]
name = "c"
argv = ["sh", "-c", "sleep 0.1; echo c"]
depends_on = ["a"]
[[tasks]]
name = "d"
command = "echo done"
depends_on = ["b", "c"]
"#;

#[test]
fn a_successful_run_reports_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        run(d, DIAMOND, &["--workers", "2", "--report", "run.md"]),
        0
    );

    // The Markdown written by `ordo run --report`.
    let md = std::fs::read_to_string(d.join("run.md")).unwrap();
    for section in [
        "## Summary",
        "## Verification",
        "## Tasks",
        "## Critical path",
        "## Timeline",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert_eq!(count(&md, "- [x] ✓ **"), 4, "{md}");
    assert!(md.contains("verify `true` → passed (exit 0)"), "{md}");
    let lines = gantt(&md);
    let mut names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(lines.iter().all(|l| l.tag == "done"), "{lines:?}");
    let at = |n: &str| lines.iter().find(|l| l.name == n).unwrap();
    assert!(at("a").end <= at("b").start && at("b").end <= at("d").start);

    // JSON: the summary's numbers and the critical path as it ran (b is the slower branch).
    let j = report_json(d);
    let s = &j["summary"];
    assert_eq!(s["outcome"], "succeeded");
    assert_eq!(s["tasks"], 4);
    assert_eq!(s["attempts"], 4);
    assert_eq!(s["retries"], 0);
    assert_eq!(s["slots"], 2);
    let makespan = s["makespan_ms"].as_u64().unwrap();
    let task_time = s["task_time_ms"].as_u64().unwrap();
    assert!(makespan >= 400 && task_time >= 500, "{s}");
    let speedup = s["speedup"].as_f64().unwrap();
    assert!((speedup - task_time as f64 / makespan as f64).abs() < 1e-9);
    assert!((s["parallel_efficiency"].as_f64().unwrap() - speedup / 2.0).abs() < 1e-9);
    let path: Vec<&str> = j["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["a", "b", "d"], "{j}");
    assert_eq!(task(&j, "a")["verify"]["result"], "passed");
    assert_eq!(task(&j, "c")["run"]["kind"], "argv");
    assert!(task(&j, "c")["verify"].is_null());
    assert_eq!(task(&j, "d")["output_tail"], "done\n");
    assert_eq!(task(&j, "d")["worker"], "local");
    assert!(
        j["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["mark"] == "pass")
    );

    // The job by id and by id prefix give the same report.
    let id = j["job"]["id"].as_str().unwrap().to_string();
    let by_id: Value = serde_json::from_str(&report(d, &[&id, "--format", "json"])).unwrap();
    assert_eq!(by_id["job"]["id"], id);
    let by_prefix: Value =
        serde_json::from_str(&report(d, &[&id[..13], "--format", "json"])).unwrap();
    assert_eq!(by_prefix["job"]["id"], id);

    // JUnit through a real consumer.
    report(d, &["-o", "r.xml"]);
    let suites = read_junit(&d.join("r.xml"));
    assert_eq!(suites.len(), 1);
    let suite = &suites[0];
    assert_eq!(suite["name"], "diamond");
    assert_eq!(suite["tests"], 4);
    assert_eq!(
        (&suite["failures"], &suite["errors"], &suite["skipped"]),
        (&Value::from(0), &Value::from(0), &Value::from(0))
    );
    for name in ["a", "b", "c", "d"] {
        assert!(result_kinds(case(suite, name)).is_empty(), "{suite}");
    }
    assert_eq!(case(suite, "a")["system_out"], "built a\n");

    // HTML: one bar per task, nothing fetched from outside.
    let html = report(d, &["--format", "html"]);
    assert_eq!(count(&html, "<rect class=\"bar "), 4);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));

    // `ordo run --report` without --state: the format from the extension (.xml is JUnit).
    let spec = write(d, "again.toml", DIAMOND);
    let r = ordo_in(d, &["run", &spec, "-q", "--report", "again.xml"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let again = read_junit(&d.join("again.xml"));
    assert_eq!(again[0]["tests"], 4);
    let r = ordo_in(
        d,
        &[
            "run",
            &spec,
            "-q",
            "--report",
            "again.out",
            "--report-format",
            "json",
        ],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(d.join("again.out")).unwrap()).unwrap();
    assert_eq!(v["summary"]["outcome"], "succeeded");
}

#[test]
fn a_failure_with_skipped_dependents_reports_failure_output_and_skips() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = r#"
name = "broken"
[[tasks]]
name = "bad"
command = "printf 'boom <&> \"q\" ]]> \\001\\033[31mred\\033[0m end\\n'; exit 3"
verify_command = "true"
[[tasks]]
name = "after-bad"
command = "echo never"
depends_on = ["bad"]
[[tasks]]
name = "fine"
command = "echo fine"
"#;
    assert_eq!(run(d, spec, &[]), 1);

    let j = report_json(d);
    assert_eq!(j["summary"]["outcome"], "failed");
    let bad = task(&j, "bad");
    assert_eq!(
        (&bad["state"], &bad["mark"]),
        (&"failed".into(), &"fail".into())
    );
    assert_eq!(bad["exit_code"], 3);
    assert_eq!(bad["verify"]["result"], "not_run");
    assert!(bad["output_tail"].as_str().unwrap().contains("boom <&>"));
    let skipped = task(&j, "after-bad");
    assert_eq!(skipped["state"], "skipped");
    assert_eq!(skipped["mark"], "skipped");
    assert_eq!(skipped["attempts"], 0);
    assert!(skipped["reason"].as_str().unwrap().contains("bad"));
    assert_eq!(task(&j, "fine")["mark"], "pass");

    let md = report(d, &["--format", "md"]);
    assert!(md.contains("- [ ] ✗ **bad**"), "{md}");
    assert!(md.contains("- [ ] ⊘ **after-bad**"), "{md}");
    assert!(md.contains("- [x] ✓ **fine**"), "{md}");
    let lines = gantt(&md);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines.iter().find(|l| l.name == "bad").unwrap().tag, "crit");
    assert!(md.contains("%% never ran: after-bad (skipped)"), "{md}");
    // The output is shown without its escape sequences and control characters.
    assert!(md.contains("boom <&> \"q\" ]]> red end"), "{md}");

    report(d, &["--format", "junit", "-o", "r.xml"]);
    let suites = read_junit(&d.join("r.xml"));
    let suite = &suites[0];
    assert_eq!(suite["tests"], 3);
    assert_eq!(suite["failures"], 1);
    assert_eq!(suite["skipped"], 1);
    let bad = case(suite, "bad");
    assert_eq!(result_kinds(bad), ["failure"]);
    assert_eq!(bad["results"][0]["message"], "exit code 3");
    assert_eq!(bad["results"][0]["type"], "failed");
    let text = bad["results"][0]["text"].as_str().unwrap();
    assert!(text.contains("boom <&> \"q\" ]]> red end"), "{text:?}");
    assert_eq!(result_kinds(case(suite, "after-bad")), ["skipped"]);
    assert!(result_kinds(case(suite, "fine")).is_empty());

    let html = report(d, &["--format", "html"]);
    assert_eq!(count(&html, "<rect class=\"bar "), 3);
    assert!(html.contains("boom &lt;&amp;&gt; &quot;q&quot; ]]&gt; red end"));
}

#[test]
fn retries_show_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = r#"
name = "flaky"
[[tasks]]
name = "flaky"
command = "if [ -f tried ]; then echo second; else touch tried; echo first; exit 2; fi"
retries = 2
retry_backoff = "100ms"
"#;
    assert_eq!(run(d, spec, &[]), 0);
    let j = report_json(d);
    let t = task(&j, "flaky");
    assert_eq!(t["attempts"], 2);
    assert_eq!(j["summary"]["attempts"], 2);
    assert_eq!(j["summary"]["retries"], 1);
    let runs: Vec<&str> = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["failed", "succeeded"]);
    assert_eq!(t["output_tail"], "second\n");

    let md = report(d, &[]);
    let lines = gantt(&md);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].name, "flaky (attempt 1)");
    assert_eq!(lines[0].tag, "crit");
    assert_eq!(lines[1].name, "flaky (attempt 2)");
    assert_eq!(lines[1].tag, "done");
    assert!(lines[0].end <= lines[1].start);
    assert!(md.contains("2 (1 retries)"), "{md}");

    report(d, &["--format", "junit", "-o", "r.xml"]);
    let suites = read_junit(&d.join("r.xml"));
    assert_eq!(suites[0]["failures"], 0);
    assert!(result_kinds(case(&suites[0], "flaky")).is_empty());

    let html = report(d, &["--format", "html"]);
    assert_eq!(count(&html, "<rect class=\"bar "), 1);
    assert_eq!(count(&html, "<rect class=\"try "), 1);
}

/// Agent jobs: the Markdown and HTML reports show what each task and the job cost and how many
/// tokens they used, per model too; JUnit carries them as properties of the suite and cases.
#[test]
fn agent_cost_and_tokens_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = format!(
        r#"
name = "spend"
[settings]
agent = "claude"
agent_command = ["{}"]
env = {{ STUB_STATE = "{}", STUB_COST = "0.25", STUB_TOKENS = "2000", STUB_MODEL = "claude-stub-small" }}
[[tasks]]
name = "draft"
prompt = "write draft.txt: a draft"
[[tasks]]
name = "review"
prompt = "write review.txt: fine"
depends_on = ["draft"]
env = {{ STUB_COST = "0.5", STUB_TOKENS = "4000", STUB_MODEL = "claude-stub-large" }}
"#,
        ordo_tests::stub_agent("claude"),
        d.display()
    );
    assert_eq!(run(d, &spec, &[]), 0);

    let md = report(d, &["--format", "md"]);
    for want in [
        "| cost | $0.7500 |",
        "| tokens | 7,500 (6,000 in, 1,500 out) |",
        "| claude-stub-large | 1 | 1/1 (100%) | $0.5000 | 5,000 (4,000 in, 1,000 out) |",
        "| claude-stub-small | 1 | 1/1 (100%) | $0.2500 | 2,500 (2,000 in, 500 out) |",
        "| cost | tokens |",
    ] {
        assert!(md.contains(want), "no {want:?} in the Markdown:\n{md}");
    }
    let row = md
        .lines()
        .find(|l| l.starts_with("| 1 | review"))
        .unwrap_or_else(|| panic!("no review row:\n{md}"));
    assert!(
        row.contains("| $0.5000 | 5,000 (4,000 in, 1,000 out) |"),
        "{row}"
    );

    let html = report(d, &["--format", "html"]);
    for want in [
        "<b>$0.7500</b><span>cost (agent runs)</span>",
        "<b>7,500 (6,000 in, 1,500 out)</b><span>tokens (agent runs)</span>",
        "<td>claude-stub-large</td><td class=\"num\">1</td><td class=\"num\">1/1 (100%)</td><td class=\"num\">$0.5000</td>",
        "<th class=\"num\">cost</th><th class=\"num\">tokens</th>",
        "<td class=\"num\">$0.2500</td><td class=\"num\">2,500 (2,000 in, 500 out)</td>",
    ] {
        assert!(html.contains(want), "no {want:?} in the HTML:\n{html}");
    }

    std::fs::write(d.join("r.xml"), report(d, &["--format", "junit"])).unwrap();
    let suites = read_junit(&d.join("r.xml"));
    let props = &suites[0]["properties"];
    assert_eq!(props["ordo.cost_usd"], "0.750000", "{props}");
    assert_eq!(props["ordo.tokens.total"], "7500", "{props}");
    assert_eq!(props["ordo.model.claude-stub-large.cost_usd"], "0.500000");
    let review = &case(&suites[0], "review")["properties"];
    assert_eq!(review["ordo.cost_usd"], "0.500000", "{review}");
    assert_eq!(review["ordo.tokens.input"], "4000", "{review}");
    assert_eq!(review["ordo.tokens.output"], "1000", "{review}");
    // A command job has no spend to show.
    let plain = tempfile::tempdir().unwrap();
    assert_eq!(run(plain.path(), DIAMOND, &[]), 0);
    let md = report(plain.path(), &["--format", "md"]);
    assert!(!md.contains("| cost") && !md.contains("tokens"), "{md}");
}

/// A retried job's time is its last run's, not the time since it was first submitted: status,
/// watch-style summaries and reports say which run, list the earlier ones, and draw the last
/// run's timeline with the earlier runs folded away.
#[test]
fn a_retried_job_shows_each_runs_duration_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = "name = \"again\"\n[[tasks]]\nname = \"setup\"\ncommand = \"echo setup\"\n\
                [[tasks]]\nname = \"check\"\ncommand = \"echo checking; test -e ok\"\n\
                depends_on = [\"setup\"]\n";
    assert_eq!(run(d, spec, &[]), 1);
    // The user looks into it for a while before retrying.
    const GAP: u64 = 1500;
    std::thread::sleep(Duration::from_millis(GAP));
    std::fs::write(d.join("ok"), "").unwrap();
    let job = report_json(d)["job"]["id"].as_str().unwrap().to_string();
    let r = ordo_in(d, &["retry", &job, "--failed-only", "--state", "st"], &[]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout, r.stderr);

    let st = ordo_in(
        d,
        &["status", &job, "--state", "st", "--output", "json"],
        &[],
    )
    .json();
    assert_eq!(st["retries"], 1, "{st}");
    let run_start = st["run_started_ms"].as_u64().expect("run_started_ms");
    let created = st["created_ms"].as_u64().unwrap();
    let finished = st["finished_ms"].as_u64().unwrap();
    assert!(run_start >= created + GAP, "{st}");
    assert!(
        finished - run_start < GAP,
        "the last run took {} ms",
        finished - run_start
    );
    let text = ordo_in(d, &["status", &job, "--state", "st"], &[]).stdout;
    let took = text
        .lines()
        .find(|l| l.contains(", took "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(took.contains("(run 2 of 2)"), "{took}");

    let rep = report_json(d);
    let s = &rep["summary"];
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{s}");
    assert_eq!(
        (runs[0]["outcome"].as_str(), runs[1]["outcome"].as_str()),
        (Some("failed"), Some("succeeded"))
    );
    assert_eq!(
        (runs[0]["attempts"].as_u64(), runs[1]["attempts"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(runs[1]["started_ms"].as_u64().unwrap() >= runs[0]["ended_ms"].as_u64().unwrap() + GAP);
    assert!(s["makespan_ms"].as_u64().unwrap() < GAP, "{s}");
    assert_eq!(s["start_ms"], runs[1]["started_ms"]);
    let check = task(&rep, "check");
    assert_eq!(check["runs"][0]["run"], 1);
    assert_eq!(check["runs"][1]["run"], 2);

    let md = report(d, &["--format", "md"]);
    assert!(md.contains("| makespan (last run) |"), "{md}");
    assert!(
        md.contains("| runs (submission, then each retry) | run 1: "),
        "{md}"
    );
    let lines = gantt(&md);
    assert_eq!(lines.len(), 1, "only the last run's attempt: {lines:?}");
    assert!(lines[0].name.starts_with("check"), "{lines:?}");

    let html = report(d, &["--format", "html"]);
    let (last, earlier) = html.split_at(html.find("<details class=\"run\">").expect("folded runs"));
    assert_eq!(
        count(last, "<rect class=\"bar "),
        1,
        "the last run: check alone"
    );
    assert!(
        last.contains("not in this run (ran in run 1)"),
        "setup ran before"
    );
    assert!(earlier.contains("<summary>Run 1 (earlier): "), "{earlier}");
    assert_eq!(
        count(earlier, "<rect class=\"bar "),
        2,
        "run 1: setup and check"
    );
}

#[test]
fn a_timeout_is_a_failure_of_type_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = r#"
name = "slow"
[[tasks]]
name = "sleeper"
command = "echo starting; sleep 30"
timeout = "1s"
"#;
    assert_eq!(run(d, spec, &[]), 1);
    let j = report_json(d);
    let t = task(&j, "sleeper");
    assert_eq!(t["state"], "timed_out");
    assert_eq!(t["mark"], "fail");
    assert_eq!(t["runs"][0]["outcome"], "timed_out");
    assert!(t["duration_ms"].as_u64().unwrap() >= 1000);

    let md = report(d, &[]);
    let lines = gantt(&md);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].tag, "crit");
    assert!(lines[0].end - lines[0].start >= 1000);
    assert!(md.contains("**timed_out**: timed out after 1s"), "{md}");

    report(d, &["--format", "junit", "-o", "r.xml"]);
    let suites = read_junit(&d.join("r.xml"));
    let c = case(&suites[0], "sleeper");
    assert_eq!(result_kinds(c), ["failure"]);
    assert_eq!(c["results"][0]["type"], "timed_out");
    assert!(
        c["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert!(
        c["results"][0]["text"]
            .as_str()
            .unwrap()
            .contains("starting")
    );
}

#[test]
fn the_html_report_of_20_tasks_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Four levels of five tasks, each depending on the task above it.
    let mut spec = String::from("name = \"twenty\"\n");
    for level in 0..4 {
        for i in 0..5 {
            spec.push_str(&format!(
                "[[tasks]]\nname = \"step-{level}-{i}\"\ncommand = \"sleep 0.0{i}; echo {level}.{i}\"\n"
            ));
            if level > 0 {
                spec.push_str(&format!("depends_on = [\"step-{}-{i}\"]\n", level - 1));
            }
        }
    }
    assert_eq!(run(d, &spec, &["--workers", "4", "--report", "r.html"]), 0);
    let html = std::fs::read_to_string(d.join("r.html")).unwrap();
    assert_eq!(count(&html, "<rect class=\"bar "), 20);
    // Self-contained: no script, stylesheet link, image, font or URL to fetch.
    for external in [
        "<script",
        "<link",
        "<img",
        "src=",
        "url(",
        "@import",
        "href=\"http",
    ] {
        assert!(!html.contains(external), "the report refers to {external}");
    }

    let script = repo().join("scripts/render-report.sh");
    let mut cmd = Command::new(&script);
    cmd.arg(d.join("r.html")).arg(d.join("r.png"));
    let r = run_with_deadline(cmd, Duration::from_secs(180));
    assert_ne!(
        r.code(),
        127,
        "chromium is not installed: scripts/test installs it (apt-get install chromium)"
    );
    assert_eq!(r.code(), 0, "render failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stderr.to_lowercase().contains("error"),
        "chromium reported errors:\n{}",
        r.stderr
    );
    let png = std::fs::read(d.join("r.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1400, 2000), "PNG size");
    assert!(png.len() > 20_000, "the screenshot is suspiciously small");
}

#[test]
fn prune_removes_old_jobs_from_a_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        run(d, "[[tasks]]\nname = \"one\"\ncommand = \"true\"\n", &[]),
        0
    );
    assert_eq!(
        run(d, "[[tasks]]\nname = \"two\"\ncommand = \"true\"\n", &[]),
        0
    );

    let r = ordo_in(d, &["prune", "--older-than", "30d", "--state", "st"], &[]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "removed 0 finished jobs older than 30d");
    std::thread::sleep(Duration::from_millis(5));
    let r = ordo_in(
        d,
        &[
            "prune",
            "--older-than",
            "0s",
            "--state",
            "st",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"], 2);

    let r = ordo_in(d, &["report", "--state", "st"], &[]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("holds no jobs"), "{}", r.stderr);
    let r = ordo_in(d, &["report", "--state", "nowhere"], &[]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr.contains("holds no ordo state"), "{}", r.stderr);
    assert!(!d.join("nowhere").exists());
}

#[test]
fn the_coordinator_serves_reports_and_prunes() {
    let mut c = Cluster::start(&[]);
    c.add_worker("report-worker", &["--concurrency", "2"]);
    let spec = write(
        c.work.path(),
        "job.toml",
        r#"
name = "remote"
[[tasks]]
name = "first"
command = "echo one"
verify_command = "true"
[[tasks]]
name = "flaky"
command = "if [ -f remote-tried ]; then echo ok; else touch remote-tried; exit 4; fi"
retries = 1
retry_backoff = "100ms"
[[tasks]]
name = "bad"
command = "echo oops; exit 5"
depends_on = ["first"]
[[tasks]]
name = "after"
command = "true"
depends_on = ["bad"]
"#,
    );
    let r = c.ordo(&["submit", &spec, "--wait"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout, r.stderr);
    let id = r.stdout.lines().next().unwrap().trim().to_string();

    let r = c.ordo(&["report", &id, "--format", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["job"]["id"], id.as_str());
    assert_eq!(j["summary"]["outcome"], "failed");
    assert_eq!(j["summary"]["slots"], 2);
    assert_eq!(j["summary"]["retries"], 1);
    assert_eq!(task(&j, "first")["worker"], "report-worker");
    assert_eq!(task(&j, "first")["verify"]["result"], "passed");
    assert_eq!(task(&j, "flaky")["attempts"], 2);
    assert_eq!(task(&j, "bad")["exit_code"], 5);
    assert_eq!(task(&j, "after")["state"], "skipped");

    // Without a job id: the newest job. JUnit and Markdown render from the same data.
    let r = c.ordo(&["report", "--format", "md"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.contains(&id));
    let lines = gantt(&r.stdout);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let xml = c.work.path().join("remote.xml");
    let r = c.ordo(&["report", &id, "-o", xml.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let suites = read_junit(&xml);
    assert_eq!(suites[0]["tests"], 4);
    assert_eq!(suites[0]["failures"], 1);
    assert_eq!(suites[0]["skipped"], 1);
    assert_eq!(result_kinds(case(&suites[0], "bad")), ["failure"]);
    assert!(
        case(&suites[0], "bad")["results"][0]["text"]
            .as_str()
            .unwrap()
            .contains("oops")
    );

    // Unknown jobs and bad ids are input errors.
    let r = c.ordo(&["report", "0190a5b2-0000-7000-8000-000000000000"]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    let r = c.ordo(&["report", "not-an-id"]);
    assert_eq!(r.code(), 2, "{}", r.stderr);

    // Prune through the API.
    let r = c.ordo(&["prune", "--older-than", "30d", "--output", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"], 0);
    std::thread::sleep(Duration::from_millis(5));
    let r = c.ordo(&["prune", "--older-than", "0s", "--output", "json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.json()["removed"], 1);
    let r = c.ordo(&["report", &id]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    let r = c.ordo(&["status", &id]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
}
