//! The line syntax both Markdown readers share (task documents in `markdown`, checklists in
//! `checklist`): ATX headings, status marks in titles, code fences, `Key: value` lines, list
//! items and checkboxes. Leaf of the two: neither reader is imported here.

/// `(level, text)` of an ATX heading line (`## text ##`), at most three spaces indented.
pub(crate) fn heading(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let mut text = rest.trim();
    // An optional closing sequence of `#`s.
    let closed = text.trim_end_matches('#');
    if closed.is_empty() || closed.ends_with(' ') || closed.ends_with('\t') {
        text = closed.trim_end();
    }
    Some((level, text))
}

/// Emoji and symbols used as status marks (⏳ ✅ ❌ ⚠ ☐ ■ 🚧 …); arrows and math are not.
fn is_status_mark(c: char) -> bool {
    matches!(c as u32,
        0x2300..=0x23FF | 0x25A0..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1FAFF | 0xFE0F)
}

/// Splits a title at its first status mark: `Setup ⏳ Not Started` → (`Setup`, `Not Started`).
pub(crate) fn split_status(s: &str) -> (String, Option<String>) {
    let s = s.trim();
    // Marks in front of the title are dropped.
    let s =
        s.trim_start_matches(|c: char| is_status_mark(c) || c.is_whitespace() || c == '\u{200d}');
    match s.find(is_status_mark) {
        Some(k) => {
            let status = s[k..]
                .trim_start_matches(|c: char| {
                    is_status_mark(c) || c.is_whitespace() || c == '\u{200d}'
                })
                .trim();
            (
                s[..k].trim().to_string(),
                (!status.is_empty()).then(|| status.to_string()),
            )
        }
        None => (s.to_string(), None),
    }
}

/// An open code fence and the lines inside it so far.
pub(crate) struct Fence {
    ch: u8,
    len: usize,
    pub info: String,
    pub indent: usize,
    pub body: Vec<String>,
}

/// An opening code fence: ``` or ~~~ (three or more), and its info string.
pub(crate) fn fence_open(line: &str) -> Option<Fence> {
    let t = line.trim_start();
    let indent = line.len() - t.len();
    let ch = *t.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = t.bytes().take_while(|&b| b == ch).count();
    if len < 3 {
        return None;
    }
    let info = t[len..].trim();
    if ch == b'`' && info.contains('`') {
        return None;
    }
    Some(Fence {
        ch,
        len,
        info: info.to_string(),
        indent,
        body: Vec::new(),
    })
}

impl Fence {
    /// Keeps a line of the fenced block, without the fence's own indentation.
    pub(crate) fn push_line(&mut self, line: &str) {
        let strip = line
            .bytes()
            .take(self.indent)
            .take_while(|&b| b == b' ')
            .count();
        self.body.push(line[strip..].to_string());
    }

    /// The fence itself (```` ``` ````, `~~~~`), to write the block out again.
    pub(crate) fn marker(&self) -> String {
        String::from_utf8(vec![self.ch; self.len]).unwrap_or_default()
    }
}

pub(crate) fn fence_closes(f: &Fence, line: &str) -> bool {
    let t = line.trim();
    let run = t.bytes().take_while(|&b| b == f.ch).count();
    run >= f.len && run == t.len()
}

/// `(normalised key, value, bold)` of a `Key: value` / `**Key**: value` / `**Key:** value`
/// line; keys are short words.
pub(crate) fn key_value(s: &str) -> Option<(String, String, bool)> {
    let bold = s.starts_with("**") || s.starts_with("__");
    let colon = s.find(':')?;
    let key =
        s[..colon].trim_matches(|c: char| c == '*' || c == '_' || c == '`' || c.is_whitespace());
    if key.is_empty()
        || key.len() > 40
        || !key
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-' || c == '/')
    {
        return None;
    }
    let value = s[colon + 1..]
        .trim()
        .trim_start_matches("**")
        .trim_start_matches("__")
        .trim();
    let key = key
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some((key, value.to_string(), bold))
}

/// A list item's indentation, whether it is one, and its content.
pub(crate) fn list_item(line: &str) -> (usize, bool, &str) {
    let t = line.trim_start();
    let indent: usize = line[..line.len() - t.len()]
        .chars()
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum();
    let t = t.trim_end();
    for b in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(b) {
            return (indent, true, rest.trim_start());
        }
    }
    if matches!(t, "-" | "*" | "+") {
        return (indent, true, "");
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < 10 {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return (indent, true, r.trim_start());
        }
    }
    (indent, false, t)
}

/// A checkbox item's mark and text: `[ ] 1.1 Do it` → (' ', `1.1 Do it`).
pub(crate) fn checkbox(content: &str) -> Option<(char, &str)> {
    let rest = content.strip_prefix('[')?;
    let mut chars = rest.chars();
    let mark = chars.next()?;
    if !matches!(mark, ' ' | 'x' | 'X') {
        return None;
    }
    let rest = chars.as_str().strip_prefix(']')?;
    Some((if mark == ' ' { ' ' } else { 'x' }, rest.trim()))
}
