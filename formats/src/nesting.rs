//! Nesting caps run before a parser: the offset where JSON or TOML nests deeper than
//! `MAX_NESTING`, so that no input can make a recursive parser overflow the stack, and the
//! string skipping they need.

use ordo_proto::names::MAX_NESTING;

/// The byte offset where JSON brackets nest deeper than `MAX_NESTING`, if they do.
pub(crate) fn check_json_nesting(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_json_string(b, i),
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the JSON string starting at `i` (at its opening quote).
pub(crate) fn skip_json_string(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The byte offset where TOML nests deeper than `MAX_NESTING`, if it does: arrays and inline
/// tables outside strings and comments, plus the tables implied by dotted keys and headers.
/// Run before the TOML parser so that no input can make it recurse deeply.
pub(crate) fn check_toml_nesting(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    // Open brackets with what each adds to the depth (1 + dots of the key it is the value of).
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut sum = 0usize;
    // Depth of the current `[table]`.
    let mut base = 0usize;
    // Dots of the key being read or whose value is being read.
    let mut key_dots = 0usize;
    let mut in_key = true;
    let mut line_has_content = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                if stack.is_empty() {
                    in_key = true;
                    key_dots = 0;
                }
                line_has_content = false;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let first_on_line = !line_has_content;
        line_has_content = true;
        match c {
            b'"' | b'\'' => i = skip_toml_string(b, i),
            b'[' if stack.is_empty()
                && first_on_line
                && !(b.get(i + 1) == Some(&b'[') && b.get(i + 2) == Some(&b'[')) =>
            {
                // A `[table]` or `[[array.of.tables]]` header: its depth is its dotted key's.
                let array = b.get(i + 1) == Some(&b'[');
                let mut j = i + if array { 2 } else { 1 };
                let mut dots = 0usize;
                while j < b.len() && b[j] != b']' && b[j] != b'\n' {
                    match b[j] {
                        b'"' | b'\'' => j = skip_toml_string(b, j),
                        b'.' => {
                            dots += 1;
                            j += 1;
                        }
                        _ => j += 1,
                    }
                }
                base = dots + 1 + array as usize;
                if base > MAX_NESTING {
                    return Some(i);
                }
                while j < b.len() && b[j] == b']' {
                    j += 1;
                }
                i = j;
                in_key = true;
                key_dots = 0;
            }
            b'[' | b'{' => {
                let add = 1 + key_dots;
                stack.push((c, add));
                sum += add;
                if base + sum > MAX_NESTING {
                    return Some(i);
                }
                key_dots = 0;
                in_key = c == b'{';
                i += 1;
            }
            b']' | b'}' => {
                if let Some((_, add)) = stack.pop() {
                    sum -= add;
                }
                key_dots = 0;
                in_key = false;
                i += 1;
            }
            b',' => {
                key_dots = 0;
                in_key = matches!(stack.last(), Some((b'{', _)));
                i += 1;
            }
            b'=' => {
                in_key = false;
                i += 1;
            }
            b'.' if in_key => {
                key_dots += 1;
                if base + sum + key_dots > MAX_NESTING {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the TOML string starting at `i` (basic or literal, single- or multi-line).
/// Unterminated single-line strings end at the newline.
pub(crate) fn skip_toml_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let multi = b.get(i + 1) == Some(&q) && b.get(i + 2) == Some(&q);
    let mut j = if multi { i + 3 } else { i + 1 };
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && q == b'"' {
            j += 2;
        } else if multi {
            if c == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                j += 3;
                // Up to two more quotes belong to the content.
                while j < b.len() && b[j] == q {
                    j += 1;
                }
                return j;
            }
            j += 1;
        } else if c == q {
            return j + 1;
        } else if c == b'\n' {
            return j;
        } else {
            j += 1;
        }
    }
    b.len()
}
