//! JUnit XML as CI systems read it: `<testsuites>` holding one `<testsuite>` for the job, one
//! `<testcase>` per task. Failed and timed-out tasks get `<failure>` with the output tail,
//! tasks cancelled while running get `<error>`, skipped tasks (and tasks that never started or
//! have not finished) get `<skipped>`. Agent runs' cost and tokens are properties: the job's
//! (and per model) on the testsuite, each task's on its testcase, with its last attempt's
//! stages (`stage.NAME` = its verdict, `stage.NAME.rounds`, `stage.NAME.by`). Text is
//! XML-escaped and characters XML 1.0 forbids are dropped.

use std::fmt::Write;

use ordo_proto::gates::Verdict as StageVerdict;

use super::{Mark, Report, TaskReport, clean_output, stage_summaries, utc};

pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let verdict = |t: &TaskReport| match t.mark {
        Mark::Pass => Verdict::Pass,
        Mark::Fail => Verdict::Failure,
        Mark::Cancelled if !t.runs.is_empty() => Verdict::Error,
        Mark::Cancelled | Mark::Skipped | Mark::Pending => Verdict::Skipped,
    };
    let count = |v: Verdict| r.tasks.iter().filter(|t| verdict(t) == v).count();
    let (failures, errors, skipped) = (
        count(Verdict::Failure),
        count(Verdict::Error),
        count(Verdict::Skipped),
    );
    let time = secs(s.makespan_ms);
    let (date, clock) = utc(s.start_ms);
    let timestamp = format!("{date}T{}", &clock[..8]);

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"ordo\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"{skipped}\" time=\"{time}\">",
        r.tasks.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" id=\"{}\" tests=\"{}\" failures=\"{failures}\" \
         errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{timestamp}\">",
        attr(&r.job.name),
        attr(&r.job.id),
        r.tasks.len()
    );
    let _ = writeln!(out, "    <properties>");
    let mut prop = |k: &str, v: String| {
        let _ = writeln!(
            out,
            "      <property name=\"ordo.{k}\" value=\"{}\"/>",
            attr(&v)
        );
    };
    prop("job", r.job.id.clone());
    prop("outcome", s.outcome.to_string());
    if let Some(why) = &s.reason {
        prop("reason", why.clone());
    }
    prop("source", r.job.source.clone());
    prop("makespan_ms", s.makespan_ms.to_string());
    prop("task_time_ms", s.task_time_ms.to_string());
    if let Some(v) = s.speedup {
        prop("speedup", format!("{v:.3}"));
    }
    if let Some(n) = s.slots {
        prop("slots", n.to_string());
    }
    if let Some(v) = s.parallel_efficiency {
        prop("parallel_efficiency", format!("{v:.3}"));
    }
    prop("attempts", s.attempts.to_string());
    prop("retries", s.retries.to_string());
    let path: Vec<&str> = r.critical_path.iter().map(|p| p.name.as_str()).collect();
    prop("critical_path", path.join(" -> "));
    spend_props(&mut prop, s.cost_usd, s.tokens);
    for m in &s.models {
        if let Some(c) = m.cost_usd {
            prop(&format!("model.{}.cost_usd", m.model), format!("{c:.6}"));
        }
        prop(
            &format!("model.{}.tokens", m.model),
            m.tokens.total.to_string(),
        );
        prop(
            &format!("model.{}.success_rate", m.model),
            format!("{:.3}", m.success_rate),
        );
    }
    if let Some(e) = &s.escalation {
        prop("escalation.runs", e.runs.to_string());
        if let Some(c) = e.cost_usd {
            prop("escalation.cost_usd", format!("{c:.6}"));
        }
    }
    let _ = writeln!(out, "    </properties>");

    for t in &r.tasks {
        let time = secs(t.runs.iter().map(|a| a.duration_ms).sum());
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{time}\"",
            attr(&t.name),
            attr(&r.job.name)
        );
        // Agent tasks: their cost and tokens, as pytest's `record_property` writes them.
        let mut props = String::new();
        spend_props(
            &mut |k: &str, v: String| {
                let _ = write!(
                    props,
                    "\n        <property name=\"ordo.{k}\" value=\"{}\"/>",
                    attr(&v)
                );
            },
            t.cost_usd,
            t.tokens,
        );
        for st in stage_summaries(t.last_stages()) {
            let mut prop = |k: String, v: &str| {
                let _ = write!(
                    props,
                    "\n        <property name=\"{}\" value=\"{}\"/>",
                    attr(&k),
                    attr(v)
                );
            };
            prop(
                format!("stage.{}", st.name),
                StageVerdict::name_or_none(st.verdict),
            );
            if st.rounds > 1 {
                prop(format!("stage.{}.rounds", st.name), &st.rounds.to_string());
            }
            if let Some(by) = st.by {
                prop(format!("stage.{}.by", st.name), by);
            }
        }
        let mut body = String::new();
        if !props.is_empty() {
            let _ = write!(body, "\n      <properties>{props}\n      </properties>");
        }
        let tail = text(&clean_output(&t.output_tail));
        let why = t.reason.clone().unwrap_or_else(|| t.state.to_string());
        match verdict(t) {
            Verdict::Pass => {
                if !tail.is_empty() {
                    let _ = write!(body, "\n      <system-out>{tail}</system-out>");
                }
            }
            Verdict::Failure | Verdict::Error => {
                let el = if verdict(t) == Verdict::Error {
                    "error"
                } else {
                    "failure"
                };
                let kind = t.runs.last().map_or(t.state.name(), |a| a.outcome.name());
                let _ = write!(
                    body,
                    "\n      <{el} message=\"{}\" type=\"{}\">{tail}</{el}>",
                    attr(&why),
                    attr(kind)
                );
            }
            Verdict::Skipped => {
                let _ = write!(
                    body,
                    "\n      <skipped message=\"{}: {}\"/>",
                    attr(t.state.name()),
                    attr(&why)
                );
            }
        }
        if body.is_empty() {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(out, ">{body}\n    </testcase>");
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// `cost_usd`, `tokens.input`, `tokens.output` and `tokens.total`, those known.
fn spend_props(
    prop: &mut impl FnMut(&str, String),
    cost_usd: Option<f64>,
    tokens: Option<super::Tokens>,
) {
    if let Some(c) = cost_usd {
        prop("cost_usd", format!("{c:.6}"));
    }
    if let Some(t) = tokens {
        prop("tokens.input", t.input.to_string());
        prop("tokens.output", t.output.to_string());
        prop("tokens.total", t.total.to_string());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Failure,
    Error,
    Skipped,
}

/// Milliseconds as JUnit seconds.
fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Characters XML 1.0 allows: tab, newline, carriage return and everything from U+0020 except
/// U+FFFE and U+FFFF (Rust chars are never surrogates).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= '\u{20}' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Element text: escaped, forbidden characters dropped.
pub fn text(s: &str) -> String {
    escape(s, false)
}

/// Attribute value (double-quoted): escaped, whitespace kept as character references,
/// forbidden characters dropped.
pub fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| allowed(c)) {
        match (c, in_attr) {
            ('&', _) => out.push_str("&amp;"),
            ('<', _) => out.push_str("&lt;"),
            ('>', _) => out.push_str("&gt;"),
            ('"', true) => out.push_str("&quot;"),
            ('\'', true) => out.push_str("&apos;"),
            ('\n', true) => out.push_str("&#10;"),
            ('\r', true) => out.push_str("&#13;"),
            ('\t', true) => out.push_str("&#9;"),
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_drops_what_xml_forbids() {
        assert_eq!(text("a<b & c>\u{1}\u{0}\u{FFFF}ok"), "a&lt;b &amp; c&gt;ok");
        assert_eq!(attr("\"x\"\n'y'"), "&quot;x&quot;&#10;&apos;y&apos;");
        assert_eq!(secs(1234), "1.234");
        assert_eq!(secs(5), "0.005");
    }
}
