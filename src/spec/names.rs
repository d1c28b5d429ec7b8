//! Kubernetes name rules: DNS-1123 labels and subdomains, label keys and
//! values, port names. Each check returns what is wrong, as a phrase that
//! follows "it": `it contains uppercase letters`.

/// Longest DNS-1123 label.
const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain.
const SUBDOMAIN_MAX: usize = 253;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks a DNS-1123 label: at most 63 lowercase letters, digits and '-',
/// starting and ending with a letter or digit.
pub(crate) fn dns_label_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_owned());
    }
    if value.len() > LABEL_MAX {
        return Some(format!(
            "is {} characters long, more than {LABEL_MAX}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("contains uppercase letters".to_owned());
    }
    if let Some(c) = value.chars().find(|&c| !is_lower_alnum(c) && c != '-') {
        return Some(format!("contains {c:?}"));
    }
    if !value.starts_with(is_lower_alnum) || !value.ends_with(is_lower_alnum) {
        return Some("does not start and end with a letter or digit".to_owned());
    }
    None
}

/// Checks a DNS-1123 subdomain: dot-separated labels, at most `max` long.
pub(crate) fn dns_subdomain_problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_owned());
    }
    if value.len() > max {
        return Some(format!(
            "is {} characters long, more than {max}",
            value.len()
        ));
    }
    value.split('.').find_map(|label| {
        if label.is_empty() {
            Some("has an empty part between dots".to_owned())
        } else {
            dns_label_problem(label).map(|p| format!("has a part {label:?} that {p}"))
        }
    })
}

/// A valid DNS-1123 label close to `value`, to suggest as a fix.
pub(crate) fn suggest_dns_label(value: &str) -> Option<String> {
    let mapped: String = value
        .to_ascii_lowercase()
        .chars()
        .map(|c| if is_lower_alnum(c) { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(LABEL_MAX)];
    let suggestion = cut.trim_end_matches('-').to_owned();
    (dns_label_problem(&suggestion).is_none()).then_some(suggestion)
}

/// The name part of a label key, or a label value: at most 63 letters,
/// digits, '-', '_' and '.', starting and ending with a letter or digit.
fn label_name_problem(value: &str) -> Option<String> {
    if value.len() > LABEL_MAX {
        return Some(format!(
            "is {} characters long, more than {LABEL_MAX}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && !"-_.".contains(c))
    {
        return Some(format!("contains {c:?}"));
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !value.starts_with(alnum) || !value.ends_with(alnum) {
        return Some("does not start and end with a letter or digit".to_owned());
    }
    None
}

/// Checks a label or annotation key: `[PREFIX/]NAME`, PREFIX a DNS
/// subdomain.
pub(crate) fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if let Some(p) = dns_subdomain_problem(prefix, SUBDOMAIN_MAX) {
            return Some(format!("has a prefix {prefix:?} that {p}"));
        }
    }
    if name.is_empty() {
        return Some("has an empty name".to_owned());
    }
    label_name_problem(name).map(|p| {
        if prefix.is_some() {
            format!("has a name part {name:?} that {p}")
        } else {
            p
        }
    })
}

/// Checks a label value: empty, or like a label key's name.
pub(crate) fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        label_name_problem(value)
    }
}

/// Checks a port name (IANA service name): at most 15 lowercase letters,
/// digits and '-', with a letter, no "--", no '-' at either end.
pub(crate) fn port_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".to_owned());
    }
    if name.len() > 15 {
        return Some(format!("is {} characters long, more than 15", name.len()));
    }
    if let Some(c) = name.chars().find(|&c| !is_lower_alnum(c) && c != '-') {
        return Some(format!("contains {c:?}"));
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return Some("has no letter".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Some("starts or ends with '-' or contains \"--\"".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_dns_label_table() {
        for ok in ["a", "my-pod", "0", "a1-b2", &"x".repeat(63)] {
            assert_eq!(dns_label_problem(ok), None, "{ok:?}");
        }
        let bad = [
            ("", "is empty"),
            ("My-Pod", "uppercase"),
            ("my_pod", "contains '_'"),
            ("my.pod", "contains '.'"),
            ("-pod", "start and end"),
            ("pod-", "start and end"),
            ("p\u{e9}", "contains"),
        ];
        for (value, want) in bad {
            let problem = dns_label_problem(value).unwrap_or_default();
            assert!(problem.contains(want), "{value:?}: {problem:?}");
        }
        assert!(dns_label_problem(&"x".repeat(64))
            .unwrap_or_default()
            .contains("more than 63"));
    }

    #[test]
    fn test_dns_subdomain_table() {
        assert_eq!(dns_subdomain_problem("example.com", 253), None);
        assert_eq!(dns_subdomain_problem("a", 253), None);
        assert!(dns_subdomain_problem("a..b", 253).is_some());
        assert!(dns_subdomain_problem("Example.com", 253).is_some());
        assert!(dns_subdomain_problem(&"a".repeat(65), 64).is_some());
    }

    #[test]
    fn test_suggest_dns_label() {
        assert_eq!(suggest_dns_label("My_Pod").as_deref(), Some("my-pod"));
        assert_eq!(
            suggest_dns_label("-web.server-").as_deref(),
            Some("web-server")
        );
        assert_eq!(suggest_dns_label("___"), None);
        assert_eq!(
            suggest_dns_label(&"A".repeat(80)).map(|s| s.len()),
            Some(63)
        );
    }

    #[test]
    fn test_label_key_and_value_table() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "example.com/My_Key.x",
            "a-b_c.d",
        ] {
            assert_eq!(qualified_name_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "",
            "/app",
            "Example.com/app",
            "app/",
            "a/b/c",
            "-app",
            "app!",
            &"k".repeat(64),
        ] {
            assert!(qualified_name_problem(bad).is_some(), "{bad:?}");
        }
        for ok in ["", "v1", "1.2.3", "Hello_World"] {
            assert_eq!(label_value_problem(ok), None, "{ok:?}");
        }
        for bad in ["has space", "-x", "x-", "a/b", &"v".repeat(64)] {
            assert!(label_value_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn test_port_name_table() {
        for ok in ["http", "http-alt", "h2c", "metrics9090"] {
            assert_eq!(port_name_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "",
            "HTTP",
            "http_alt",
            "-http",
            "http-",
            "a--b",
            "8080",
            "averyveryverylongname",
        ] {
            assert!(port_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
