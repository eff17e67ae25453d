//! Positions of values in JSON text: one scan of the document (iterative, so nesting costs
//! no stack) that records where the values diagnostics point at start, by JSON pointer.

use std::borrow::Cow;
use std::collections::HashMap;

use ordo_proto::names::MAX_NESTING;

use crate::diagnostic::Pos;
use crate::nesting::skip_json_string;

/// Positions of a JSON document's values by JSON pointer (`/master/tasks/0/id`): top-level
/// members and their children, elements of `tasks`/`subtasks` arrays and their members, and
/// elements of `dependencies` arrays.
pub(crate) struct JsonPositions(HashMap<String, Pos>);

impl JsonPositions {
    pub fn get(&self, pointer: &str) -> Option<Pos> {
        self.0.get(pointer).copied()
    }

    /// Position of a task's id value, else of the task itself.
    pub fn task(&self, element: &str, id_key: &str) -> Option<Pos> {
        self.get(&format!("{element}/{id_key}"))
            .or_else(|| self.get(element))
    }
}

/// Escapes a key for use in a JSON pointer.
pub(crate) fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A step of the path to a JSON value: an object key or an array index.
pub(crate) enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

fn wanted(path: &[Seg<'_>]) -> bool {
    let n = path.len();
    if n <= 2 {
        return true;
    }
    let list = |s: &Seg<'_>| matches!(s, Seg::Key(k) if k == "tasks" || k == "subtasks");
    match (&path[n - 3], &path[n - 2], &path[n - 1]) {
        (_, l, Seg::Index(_)) if list(l) => true,
        (l, Seg::Index(_), Seg::Key(_)) if list(l) => true,
        (_, Seg::Key(k), Seg::Index(_)) => k == "dependencies",
        _ => false,
    }
}

fn pointer(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            Seg::Key(k) => s.push_str(&pointer_key(k)),
            Seg::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

/// Positions of the `wanted` values of a JSON document.
pub(crate) fn json_positions(text: &str) -> JsonPositions {
    let mut out = HashMap::new();
    scan_json(text, |path, pos| {
        if wanted(path) {
            out.entry(pointer(path)).or_insert(pos);
        }
    });
    JsonPositions(out)
}

/// Scans JSON text (meant for text serde_json accepted; tolerant of anything), calling `found`
/// with the path and position of every value's first character. Iterative, so nesting costs
/// no stack; keys are borrowed from the text unless they hold escapes.
pub(crate) fn scan_json<'a>(text: &'a str, mut found: impl FnMut(&[Seg<'a>], Pos)) {
    let b = text.as_bytes();
    let mut path: Vec<Seg<'a>> = Vec::new();
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    let (mut line, mut col) = (1u32, 1u32);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = match c {
            b' ' | b'\t' | b'\r' | b'\n' => i + 1,
            b':' => {
                expect_key = false;
                i + 1
            }
            b',' => {
                match stack.last() {
                    Some(b'{') => expect_key = true,
                    Some(_) => {
                        if let Some(Seg::Index(n)) = path.last_mut() {
                            *n += 1;
                        }
                    }
                    None => {}
                }
                i + 1
            }
            b'{' | b'[' => {
                found(&path, Pos::new(line, col));
                if stack.len() > MAX_NESTING + 8 {
                    return;
                }
                stack.push(c);
                expect_key = c == b'{';
                path.push(if c == b'{' {
                    Seg::Key(Cow::Borrowed(""))
                } else {
                    Seg::Index(0)
                });
                i + 1
            }
            b'}' | b']' => {
                stack.pop();
                path.pop();
                expect_key = false;
                i + 1
            }
            b'"' => {
                let end = skip_json_string(b, i);
                if expect_key && stack.last() == Some(&b'{') {
                    let raw = text.get(i..end).unwrap_or("\"\"");
                    let key = if raw.contains('\\') {
                        Cow::Owned(serde_json::from_str::<String>(raw).unwrap_or_default())
                    } else {
                        Cow::Borrowed(raw.get(1..raw.len().saturating_sub(1)).unwrap_or(""))
                    };
                    if let Some(last) = path.last_mut() {
                        *last = Seg::Key(key);
                    }
                    expect_key = false;
                } else {
                    found(&path, Pos::new(line, col));
                }
                end
            }
            _ => {
                found(&path, Pos::new(line, col));
                let mut j = i + 1;
                while j < b.len()
                    && !matches!(
                        b[j],
                        b',' | b']'
                            | b'}'
                            | b':'
                            | b' '
                            | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'"'
                            | b'{'
                            | b'['
                    )
                {
                    j += 1;
                }
                j
            }
        };
        // Line and column of `next`.
        for &c in &b[i..next.min(b.len())] {
            if c == b'\n' {
                line += 1;
                col = 1;
            } else if (c & 0xC0) != 0x80 {
                col += 1;
            }
        }
        i = next;
    }
}
