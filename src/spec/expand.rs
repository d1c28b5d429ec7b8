//! Kubernetes `$(VAR)` expansion in env values, command and args.
//!
//! The rules are the kubelet's:
//! - `$(NAME)` becomes the value of `NAME` when it is defined, and stays
//!   verbatim (`$(NAME)`) when it is not;
//! - `$$` is an escaped `$` and becomes a single `$`, so `$$(NAME)` is the
//!   literal text `$(NAME)`;
//! - any other `$` (including an unterminated `$(`) is kept as is.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub(crate) fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(close) => {
                    let name = &body[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<&'static str> {
        match name {
            "A" => Some("alpha"),
            "EMPTY" => Some(""),
            "DOLLAR" => Some("$(A)"),
            _ => None,
        }
    }

    #[test]
    fn test_expand_table() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(A)$(A)", "alphaalpha"),
            ("$(EMPTY)|", "|"),
            ("$(MISSING)", "$(MISSING)"),
            ("$()", "$()"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("$(A $(A)", "$(A $(A)"),
            ("100$", "100$"),
            ("é$(A)é", "éalphaé"),
            // Values are not expanded again.
            ("$(DOLLAR)", "$(A)"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "expand({input:?})");
        }
    }
}
