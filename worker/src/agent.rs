//! Reading what agent CLIs print (docs/design.md, "Agent runs"): Claude Code's one JSON object
//! (`--output-format json`) and Codex's JSON events (`exec --json`, one per line), into the
//! result text (the task's output), the session, the cost and the tokens; and telling a run
//! that ended on a rate limit or an overload (HTTP 429/529) from one that failed. Pure
//! functions over the bytes the program wrote on stdout: the executor calls them.

use ordo_proto::{AgentKind, AgentRun, RateLimit};
use serde_json::Value;

/// What an agent run printed, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub run: AgentRun,
    /// The final answer: the task's output.
    pub result: String,
    /// The agent said the run failed, and why.
    pub error: Option<String>,
}

/// Bytes of unexpected output quoted in an error.
const QUOTE: usize = 300;

/// Reads the stdout of a `kind` run. `Err` says what came back instead of the expected JSON.
pub fn read(kind: AgentKind, stdout: &[u8]) -> Result<Reading, String> {
    let text = String::from_utf8_lossy(stdout);
    match kind {
        AgentKind::Claude => read_claude(&text),
        AgentKind::Codex => read_codex(&text),
        AgentKind::Command => Ok(Reading {
            run: AgentRun::default(),
            result: text.into_owned(),
            error: None,
        }),
    }
}

/// What `ordo logs` shows of a `kind` run's stdout once the run has printed all of it: its
/// result text (or, when it has none, its error). `None` while more is to come (Claude Code's
/// object is not whole yet, Codex's turn has not ended) or for a plain command.
pub fn shown(kind: AgentKind, stdout: &[u8]) -> Option<String> {
    if kind == AgentKind::Codex {
        let ended = String::from_utf8_lossy(stdout).lines().any(|l| {
            serde_json::from_str::<Value>(l.trim()).is_ok_and(|e| {
                matches!(
                    e.get("type").and_then(Value::as_str),
                    Some("turn.completed" | "turn.failed" | "error")
                )
            })
        });
        if !ended {
            return None;
        }
    }
    if kind == AgentKind::Command {
        return None;
    }
    let r = read(kind, stdout).ok()?;
    Some(match r.error {
        Some(e) if r.result.trim().is_empty() => e,
        _ => r.result,
    })
}

/// The one JSON object Claude Code prints: `result`, `is_error`, `subtype`, `session_id`,
/// `total_cost_usd`, `usage.input_tokens`, `usage.output_tokens`, `num_turns`. Anything
/// printed before it (a warning line) is skipped; the object is the last non-empty line or
/// the whole output.
fn read_claude(text: &str) -> Result<Reading, String> {
    let object = serde_json::from_str::<Value>(text.trim())
        .ok()
        .filter(Value::is_object)
        .or_else(|| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| serde_json::from_str::<Value>(l.trim()).ok())
                .filter(Value::is_object)
        })
        .ok_or_else(|| {
            format!(
                "claude printed no JSON result (expected the object of --output-format json); \
                 it printed: {}",
                quote(text)
            )
        })?;
    if object.get("type").and_then(Value::as_str) != Some("result")
        && object.get("result").is_none()
        && object.get("is_error").is_none()
    {
        return Err(format!(
            "claude printed JSON that is not a result object: {}",
            quote(text)
        ));
    }
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let usage = object.get("usage").cloned().unwrap_or(Value::Null);
    let result = str_of(&object, "result").unwrap_or_default();
    let is_error = object
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let subtype = str_of(&object, "subtype");
    let mut run = AgentRun {
        session_id: str_of(&object, "session_id"),
        cost_usd: object.get("total_cost_usd").and_then(Value::as_f64),
        input_tokens: usage
            .get("input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output_tokens: usage
            .get("output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        num_turns: object
            .get("num_turns")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        model: main_model(object.get("modelUsage")),
        rate_limited: None,
    };
    let error = is_error.then(|| {
        let what = if result.trim().is_empty() {
            subtype.clone().unwrap_or_else(|| "an error".into())
        } else {
            result.clone()
        };
        match &subtype {
            Some(s) if s != "success" && !what.contains(s.as_str()) => {
                format!("claude reported {s}: {what}")
            }
            _ => format!("claude reported an error: {what}"),
        }
    });
    if let Some(e) = &error {
        run.rate_limited = rate_limit(&format!("{e} {}", object_text(&object)));
    }
    Ok(Reading { run, result, error })
}

/// Of Claude Code's `modelUsage` (model name → `costUSD`, `inputTokens`, `outputTokens`), the
/// model that cost the most (by tokens when none says its cost).
fn main_model(usage: Option<&Value>) -> Option<String> {
    let weight = |u: &Value| {
        let n = |k: &str| u.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        (n("costUSD"), n("inputTokens") + n("outputTokens"))
    };
    usage?
        .as_object()?
        .iter()
        .max_by(|a, b| {
            weight(a.1)
                .partial_cmp(&weight(b.1))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(name, _)| name.clone())
}

/// Codex's events: `thread.started` (the session), `turn.completed` (usage, added up),
/// `item.completed` with an `agent_message` item (its text: the last one is the result),
/// `turn.failed` and `error` (the failure).
fn read_codex(text: &str) -> Result<Reading, String> {
    let mut run = AgentRun::default();
    let mut result = None;
    let mut error: Option<String> = None;
    let mut events = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(event) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            continue;
        };
        events += 1;
        match kind {
            "thread.started" | "thread.resumed" => {
                run.session_id = event
                    .get("thread_id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "turn.completed" | "turn.failed" => {
                if let Some(u) = event.get("usage") {
                    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                    run.input_tokens = run.input_tokens.saturating_add(n("input_tokens"));
                    run.output_tokens = run.output_tokens.saturating_add(n("output_tokens"));
                }
                run.num_turns = Some(run.num_turns.unwrap_or(0) + 1);
                if kind == "turn.failed" {
                    error = Some(message_of(&event).unwrap_or_else(|| "the turn failed".into()));
                }
            }
            "item.completed" => {
                let item = event.get("item").cloned().unwrap_or(Value::Null);
                let item_type = item
                    .get("type")
                    .or_else(|| item.get("item_type"))
                    .and_then(Value::as_str);
                if item_type == Some("agent_message")
                    && let Some(t) = item.get("text").and_then(Value::as_str)
                {
                    result = Some(t.to_string());
                }
            }
            "error" => {
                error =
                    Some(message_of(&event).unwrap_or_else(|| "codex reported an error".into()));
            }
            _ => {}
        }
    }
    if events == 0 {
        return Err(format!(
            "codex printed no JSON events (expected `codex exec --json`); it printed: {}",
            quote(text)
        ));
    }
    let error = error.map(|e| format!("codex reported an error: {e}"));
    if let Some(e) = &error {
        run.rate_limited = rate_limit(e);
    }
    Ok(Reading {
        run,
        result: result.unwrap_or_default(),
        error,
    })
}

fn message_of(event: &Value) -> Option<String> {
    event
        .get("error")
        .and_then(|e| e.get("message").or(Some(e)))
        .or_else(|| event.get("message"))
        .map(|m| match m.as_str() {
            Some(s) => s.to_string(),
            None => m.to_string(),
        })
}

/// The whole object as text, for finding rate-limit words in fields other than `result`.
fn object_text(v: &Value) -> String {
    v.to_string()
}

/// A rate limit or an overload, from an error's text: HTTP 429 or 529, `rate_limit`,
/// `rate limit`, `overloaded`; the wait from `Retry-After: N` / `retry_after: N` (seconds)
/// when it says.
pub fn rate_limit(text: &str) -> Option<RateLimit> {
    let lower = text.to_ascii_lowercase();
    let limited = [
        "429",
        "529",
        "rate_limit",
        "rate limit",
        "ratelimit",
        "overloaded",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if !limited {
        return None;
    }
    let retry_after_ms = ["retry-after", "retry_after", "retry after"]
        .iter()
        .find_map(|key| {
            let at = lower.find(key)? + key.len();
            let digits: String = lower[at..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            let gap = lower[at..].find(|c: char| c.is_ascii_digit())?;
            // The number must follow the key closely (`Retry-After: 30`, `"retry_after":30`).
            (gap <= 4).then_some(())?;
            digits.parse::<u64>().ok().map(|s| s.saturating_mul(1000))
        });
    Some(RateLimit { retry_after_ms })
}

fn quote(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return "nothing".into();
    }
    let mut end = t.len().min(QUOTE);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < t.len() { "…" } else { "" };
    format!("{:?}{cut}", &t[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_result_object_is_read() {
        let out = br#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":3,"result":"Done: added /health","session_id":"5f1c-aa","total_cost_usd":0.0421,"usage":{"input_tokens":1200,"output_tokens":340}}"#;
        let r = read(AgentKind::Claude, out).unwrap();
        assert_eq!(r.result, "Done: added /health");
        assert_eq!(r.error, None);
        assert_eq!(r.run.session_id.as_deref(), Some("5f1c-aa"));
        assert_eq!(r.run.cost_usd, Some(0.0421));
        assert_eq!((r.run.input_tokens, r.run.output_tokens), (1200, 340));
        assert_eq!(r.run.num_turns, Some(3));
        assert_eq!(r.run.rate_limited, None);
        assert_eq!(r.run.model, None);
    }

    #[test]
    fn shown_once_the_output_is_whole() {
        let claude = br#"{"type":"result","is_error":false,"result":"Done","session_id":"s"}"#;
        assert_eq!(shown(AgentKind::Claude, &claude[..20]), None);
        assert_eq!(shown(AgentKind::Claude, claude).as_deref(), Some("Done"));
        let codex = concat!(
            r#"{"type":"thread.started","thread_id":"t"}"#,
            "\n",
            r#"{"type":"item.completed","item":{"type":"agent_message","text":"Hi"}}"#,
            "\n"
        );
        assert_eq!(shown(AgentKind::Codex, codex.as_bytes()), None);
        let done = format!("{codex}{}\n", r#"{"type":"turn.completed","usage":{}}"#);
        assert_eq!(
            shown(AgentKind::Codex, done.as_bytes()).as_deref(),
            Some("Hi")
        );
        assert_eq!(shown(AgentKind::Command, b"x"), None);
    }

    #[test]
    fn claude_main_model_is_the_costliest() {
        let out = br#"{"type":"result","is_error":false,"result":"ok","modelUsage":{"claude-haiku-4-5":{"inputTokens":900,"outputTokens":10,"costUSD":0.001},"claude-sonnet-4-5":{"inputTokens":300,"outputTokens":200,"costUSD":0.04}}}"#;
        let r = read(AgentKind::Claude, out).unwrap();
        assert_eq!(r.run.model.as_deref(), Some("claude-sonnet-4-5"));
    }

    #[test]
    fn claude_error_and_rate_limit() {
        let out = br#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"API Error: 429 rate_limit_error. Retry-After: 7","session_id":"s1","total_cost_usd":0.0,"usage":{"input_tokens":10,"output_tokens":0}}"#;
        let r = read(AgentKind::Claude, out).unwrap();
        assert!(r.error.as_deref().unwrap().contains("429"), "{r:?}");
        assert_eq!(
            r.run.rate_limited,
            Some(RateLimit {
                retry_after_ms: Some(7000)
            })
        );
        let plain = br#"{"type":"result","subtype":"error_max_turns","is_error":true,"result":"","session_id":"s2"}"#;
        let r = read(AgentKind::Claude, plain).unwrap();
        assert_eq!(
            r.error.as_deref(),
            Some("claude reported an error: error_max_turns")
        );
        assert_eq!(r.run.rate_limited, None);
    }

    #[test]
    fn claude_text_instead_of_json_says_what_came_back() {
        let e = read(AgentKind::Claude, b"Sure! I added the endpoint.\n").unwrap_err();
        assert!(e.contains("no JSON result"), "{e}");
        assert!(e.contains("Sure! I added the endpoint."), "{e}");
        let e = read(AgentKind::Claude, b"").unwrap_err();
        assert!(e.contains("printed: nothing"), "{e}");
        let e = read(AgentKind::Claude, b"[1,2]").unwrap_err();
        assert!(e.contains("no JSON result"), "{e}");
    }

    #[test]
    fn claude_warning_line_before_the_object_is_skipped() {
        let out = b"warning: something\n{\"type\":\"result\",\"is_error\":false,\"result\":\"ok\",\"session_id\":\"s\"}\n";
        assert_eq!(read(AgentKind::Claude, out).unwrap().result, "ok");
    }

    #[test]
    fn codex_events_are_read() {
        let out = br#"{"type":"thread.started","thread_id":"0199-abc"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"thinking"}}
{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Patched the parser."}}
{"type":"turn.completed","usage":{"input_tokens":900,"cached_input_tokens":100,"output_tokens":120}}
"#;
        let r = read(AgentKind::Codex, out).unwrap();
        assert_eq!(r.result, "Patched the parser.");
        assert_eq!(r.run.session_id.as_deref(), Some("0199-abc"));
        assert_eq!((r.run.input_tokens, r.run.output_tokens), (900, 120));
        assert_eq!(r.run.cost_usd, None);
        assert_eq!(r.error, None);
    }

    #[test]
    fn codex_failure_and_overload() {
        let out = br#"{"type":"thread.started","thread_id":"t"}
{"type":"turn.failed","error":{"message":"stream error: 529 overloaded"}}
"#;
        let r = read(AgentKind::Codex, out).unwrap();
        assert!(r.error.as_deref().unwrap().contains("overloaded"));
        assert_eq!(
            r.run.rate_limited,
            Some(RateLimit {
                retry_after_ms: None
            })
        );
        let e = read(AgentKind::Codex, b"codex: command not found\n").unwrap_err();
        assert!(e.contains("no JSON events"), "{e}");
    }

    #[test]
    fn rate_limit_words() {
        assert!(rate_limit("HTTP 429 Too Many Requests").is_some());
        assert!(rate_limit("Overloaded").is_some());
        assert!(rate_limit("file not found").is_none());
        assert_eq!(
            rate_limit("rate limit reached; retry after 12 seconds").unwrap(),
            RateLimit {
                retry_after_ms: Some(12_000)
            }
        );
    }
}
