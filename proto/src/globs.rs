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

/// Whether `path` (relative, `/`-separated) matches `glob` or lies under what it names: the
/// test of an approval's `when_files` against the files a task changed.
pub fn matches(glob: &str, path: &str) -> bool {
    fn segs(glob: &[&str], path: &[&str]) -> bool {
        match glob.split_first() {
            // Everything under what the glob names is covered.
            None => true,
            Some((&"**", rest)) => (0..=path.len()).any(|i| segs(rest, &path[i..])),
            Some((g, rest)) => path
                .split_first()
                .is_some_and(|(p, tail)| segment_matches(g, p) && segs(rest, tail)),
        }
    }
    segs(&segments(glob), &segments(path))
}

/// Whether one path segment matches a glob segment (`*`, `?`, `[...]`, `[!...]`).
fn segment_matches(glob: &str, seg: &str) -> bool {
    let (g, s): (Vec<char>, Vec<char>) = (glob.chars().collect(), seg.chars().collect());
    fn go(g: &[char], s: &[char]) -> bool {
        match g.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('[', rest)) => {
                let Some(close) = rest.iter().position(|&c| c == ']') else {
                    return s.first() == Some(&'[') && go(rest, &s[1..]);
                };
                let (set, after) = (&rest[..close], &rest[close + 1..]);
                let (negate, set) = match set.split_first() {
                    Some(('!' | '^', set)) => (true, set),
                    _ => (false, set),
                };
                let Some(&c) = s.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(after, &s[1..])
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(&g, &s)
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

    #[test]
    fn paths_match_globs_and_what_they_name() {
        for (g, p) in [
            ("migrations/**", "migrations/001.sql"),
            ("migrations/**", "migrations/a/b.sql"),
            ("migrations", "migrations/001.sql"),
            ("src/*.rs", "src/lib.rs"),
            ("**/*.sql", "db/x/1.sql"),
            ("docs/[ab]*.md", "docs/b1.md"),
            ("deploy/**", "deploy/k8s.yaml"),
        ] {
            assert!(matches(g, p), "{g} ~ {p}");
        }
        for (g, p) in [
            ("migrations/**", "src/migrations.rs"),
            ("src/*.rs", "src/a/lib.rs"),
            ("docs/[ab]*.md", "docs/c.md"),
            ("deploy/**", "deployment/x"),
        ] {
            assert!(!matches(g, p), "{g} !~ {p}");
        }
    }
}
