//! Glob-style matching with the semantics of Redis' `stringmatchlen`
//! (`*`, `?`, `[...]` with ranges and `^` negation, `\` escapes), used by
//! KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB CHANNELS and CONFIG GET.

/// Does `string` match `pattern`?
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    match_inner(pattern, string, nocase, 0, &mut false)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase { a.eq_ignore_ascii_case(&b) } else { a == b }
}

/// `skip_longer`: set once the rest of a pattern after a `*` matched
/// nowhere in the rest of the string; every `*` before it can then stop
/// too, since giving it a longer match only starts the rest later (Redis'
/// `skipLongerMatches`). Without it `a*a*a*...*b` against a long run of `a`
/// backtracks exponentially: one KEYS held every partition for minutes.
fn match_inner(mut p: &[u8], mut s: &[u8], nocase: bool, depth: usize, skip_longer: &mut bool) -> bool {
    // Redis caps recursion on pathological patterns; so do we.
    if depth > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_inner(&p[1..], s, nocase, depth + 1, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s = &s[1..];
            }
            b'[' => {
                p = &p[1..];
                let not = !p.is_empty() && p[0] == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (p[0], p[2]);
                        let mut c = s[0];
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = start.to_ascii_lowercase();
                            end = end.to_ascii_lowercase();
                            c = c.to_ascii_lowercase();
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if eq(p[0], s[0], nocase) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if p.is_empty() {
                    // Unterminated class: Redis treats the end of pattern as the close.
                    p = b"]";
                }
                let matched = if not { !matched } else { matched };
                if !matched {
                    return false;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while !p.is_empty() && p[0] == b'*' {
                p = &p[1..];
            }
            break;
        }
    }
    if s.is_empty() {
        while !p.is_empty() && p[0] == b'*' {
            p = &p[1..];
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn basics() {
        assert!(m(b"*", b"anything", false));
        assert!(m(b"*", b"", false));
        assert!(m(b"h?llo", b"hello", false));
        assert!(m(b"h*llo", b"heeeello", false));
        assert!(m(b"h[ae]llo", b"hallo", false));
        assert!(!m(b"h[ae]llo", b"hillo", false));
        assert!(m(b"h[^e]llo", b"hallo", false));
        assert!(!m(b"h[^e]llo", b"hello", false));
        assert!(m(b"h[a-b]llo", b"hbllo", false));
        assert!(m(b"h\\*llo", b"h*llo", false));
        assert!(!m(b"h\\*llo", b"hello", false));
        assert!(m(b"user:*", b"user:1", false));
        assert!(!m(b"user:?", b"user:", false));
        assert!(m(b"A*", b"abc", true));
        assert!(m(b"a*b*c", b"axxbyyc", false));
        assert!(!m(b"a*b*c", b"axxbyy", false));
    }

    /// The pattern of Redis' "Regression for pattern matching long nested
    /// loops" test: without `skip_longer` this runs for hours.
    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let s = [b'a'; 40];
            let p = [&b"a*".repeat(20)[..], b"b"].concat();
            let q = [&b"*a".repeat(30)[..], b"*"].concat();
            let _ = tx.send((m(&p, &s, false), m(&q, &s, false)));
        });
        // Milliseconds when linear; a failure would run for hours.
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(got, Ok((false, true)), "matching did not finish");
    }

    /// The same matcher without the early stop: every answer must agree.
    fn naive(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => s.is_empty(),
            (Some(b'*'), _) => naive(&p[1..], s) || (!s.is_empty() && naive(p, &s[1..])),
            (Some(_), None) => false,
            (Some(b'?'), Some(_)) => naive(&p[1..], &s[1..]),
            (Some(&c), Some(&d)) => c == d && naive(&p[1..], &s[1..]),
        }
    }

    #[test]
    fn early_stop_changes_no_answer() {
        fn all(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut out = vec![Vec::new()];
            let mut layer = vec![Vec::new()];
            for _ in 0..max {
                layer = layer
                    .iter()
                    .flat_map(|w: &Vec<u8>| alphabet.iter().map(move |&c| [&w[..], &[c]].concat()))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }
        let patterns = all(b"ab*?", 6);
        let strings = all(b"ab", 6);
        for p in &patterns {
            for s in &strings {
                assert_eq!(m(p, s, false), naive(p, s), "pattern {:?} string {:?}", p, s);
            }
        }
    }
}
