//! Glob patterns for principals: `*` matches any run of characters
//! (slashes and colons included), everything else matches itself.

/// A compiled glob. `fold`: ASCII case-insensitive (generic identities are
/// refused in every spelling; role grants are exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    fold: bool,
}

impl Glob {
    pub fn new(pattern: &str, fold: bool) -> Glob {
        let pattern = match fold {
            true => pattern.to_ascii_lowercase(),
            false => pattern.to_owned(),
        };
        Glob { pattern, fold }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, text: &str) -> bool {
        match self.fold {
            true => glob_match(
                self.pattern.as_bytes(),
                text.to_ascii_lowercase().as_bytes(),
            ),
            false => glob_match(self.pattern.as_bytes(), text.as_bytes()),
        }
    }
}

/// Linear-time glob match with one backtrack point (the last `*`).
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run() {
        let g = Glob::new("spiffe://*/sa/default", true);
        assert!(g.is_match("spiffe://cluster.local/ns/shop/sa/default"));
        assert!(g.is_match("SPIFFE://cluster.local/ns/shop/sa/DEFAULT"));
        assert!(!g.is_match("spiffe://cluster.local/ns/shop/sa/orders"));
        assert!(!g.is_match("spiffe://cluster.local/ns/shop/sa/default2"));
        assert!(Glob::new("*", false).is_match(""));
        assert!(Glob::new("a*b*c", false).is_match("aXXbYYbc"));
        assert!(!Glob::new("a*b*c", false).is_match("aXXbYYbd"));
        assert!(!Glob::new("Admin", false).is_match("admin"));
        assert!(Glob::new("admin", true).is_match("ADMIN"));
    }
}
