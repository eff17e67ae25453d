//! Write-set globs (task field `files`, docs/design.md, "Agent workspaces"): checked when a spec is
//! validated, and compared pairwise so the engine never runs two tasks whose sets may overlap at
//! once.
//!
//! A glob is a relative path of `/`-separated segments; `*`, `?` and `[...]` match within a
//! segment, a `**` segment matches any number of segments, and a glob also covers everything
//! under what it names (`src/api` covers `src/api/x.rs`). `may_overlap` is conservative: it may
//! say yes for two globs no path matches both of, never no for two that share a path.

/// Why a glob is not usable, or `Ok`.
pub fn check(glob: &str) -> Result<(), String> {
    if glob.trim().is_empty() {
        return Err("an empty glob".into());
    }
    if glob.starts_with('/') {
        return Err(format!(
            "{glob:?} is absolute (globs are relative to the repository)"
        ));
    }
    if glob.chars().any(char::is_control) {
        return Err(format!("{glob:?} contains a control character"));
    }
    for seg in glob.split('/') {
        if seg == ".." {
            return Err(format!("{glob:?} leaves the repository (`..`)"));
        }
        if seg.contains("**") && seg != "**" {
            return Err(format!("{glob:?}: `**` must be a whole path segment"));
        }
        let mut open = false;
        for c in seg.chars() {
            match c {
                '[' if open => return Err(format!("{glob:?}: nested `[`")),
                '[' => open = true,
                ']' if open => open = false,
                _ => {}
            }
        }
        if open {
            return Err(format!("{glob:?}: `[` is never closed"));
        }
    }
    Ok(())
}

fn segments(glob: &str) -> Vec<&str> {
    glob.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

fn wild(seg: &str) -> bool {
    seg.contains(['*', '?', '['])
}

/// The literal text before the first wildcard and after the last one.
fn ends(seg: &str) -> (&str, &str) {
    let first = seg.find(['*', '?', '[']).unwrap_or(seg.len());
    let last = seg.rfind(['*', '?', ']']).map_or(seg.len(), |i| i + 1);
    (&seg[..first], &seg[last.max(first)..])
}

/// Whether one path segment could match both.
fn segment_may_match(a: &str, b: &str) -> bool {
    match (wild(a), wild(b)) {
        (false, false) => a == b,
        _ => {
            let ((pa, sa), (pb, sb)) = (ends(a), ends(b));
            (pa.starts_with(pb) || pb.starts_with(pa)) && (sa.ends_with(sb) || sb.ends_with(sa))
        }
    }
}

/// Whether some path could match both globs (or lie under what both name).
pub fn may_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    if a.contains(&"**") || b.contains(&"**") {
        // Compare the segments before the first `**` of either: past it anything may match.
        let stop = |s: &[&str]| s.iter().position(|x| *x == "**").unwrap_or(s.len());
        let n = stop(&a).min(stop(&b));
        return a
            .iter()
            .zip(&b)
            .take(n)
            .all(|(x, y)| segment_may_match(x, y));
    }
    // One names a directory the other lies in, or both name the same depth.
    a.iter().zip(&b).all(|(x, y)| segment_may_match(x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_globs_are_refused_with_a_reason() {
        for ok in [
            "src/api/**",
            "README.md",
            "src/*.rs",
            "docs/[ab]*.md",
            "./x",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "leaves"),
            ("src/a**", "whole path segment"),
            ("src/[ab", "never closed"),
            ("src/[a[b]]", "nested"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn overlap_is_found_and_disjoint_sets_are_told_apart() {
        let yes = [
            ("src/api/**", "src/api/routes.rs"),
            ("src/api", "src/api/routes.rs"),
            ("src/*.rs", "src/main.rs"),
            ("**", "anything/at/all"),
            ("README.md", "README.md"),
            ("src/**/mod.rs", "src/x/y/mod.rs"),
            ("docs/[ab]*.md", "docs/a1.md"),
        ];
        for (a, b) in yes {
            assert!(may_overlap(a, b) && may_overlap(b, a), "{a} ~ {b}");
        }
        let no = [
            ("src/api/**", "src/db/**"),
            ("src/*.rs", "src/*.md"),
            ("README.md", "CHANGELOG.md"),
            ("src/api", "docs"),
            ("a/b/c", "a/b/d"),
        ];
        for (a, b) in no {
            assert!(!may_overlap(a, b) && !may_overlap(b, a), "{a} !~ {b}");
        }
    }
}
