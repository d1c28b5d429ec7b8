//! Errors of the pod spec module, and how serde's messages are turned into
//! ones that say where the problem is and how to fix it.

use std::io;
use std::path::PathBuf;

/// Why a pod file was refused. Every message starts with the file name,
/// then the field path when there is one (`spec.containers[1].image`), says
/// what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The pod file does not exist.
    #[error("{}: pod file not found; check the path", .path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The pod file exists but cannot be read as text.
    #[error(
        "{}: cannot read the pod file; check that it is a readable UTF-8 text file",
        .path.display()
    )]
    ReadFile {
        /// The path as given.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The text is not valid YAML.
    #[error("{file}: line {line}, column {column}: invalid YAML: {problem}; {fix}")]
    ParseYaml {
        /// The file name used in messages.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's description.
        problem: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// The file holds no YAML document (or only comments).
    #[error(
        "{file}: the file is empty; write a Kubernetes Pod manifest with apiVersion: v1, \
         kind: Pod, metadata.name and spec.containers"
    )]
    Empty {
        /// The file name used in messages.
        file: String,
    },
    /// The file holds more than one Pod.
    #[error(
        "{file}: found {count} Pods; peapod runs one Pod per file (with the ConfigMaps, \
         Secrets and PersistentVolumeClaims it uses), so put each Pod in its own file and run \
         each"
    )]
    MultiplePods {
        /// The file name used in messages.
        file: String,
        /// How many Pods there are.
        count: usize,
    },
    /// The manifest does not fit the Kubernetes Pod schema: unknown field,
    /// wrong type.
    #[error("{file}: {}{problem}{}", path_prefix(.path), at_location(.location))]
    Decode {
        /// The file name used in messages.
        file: String,
        /// The field path, e.g. `spec.containers[1].imagee`; empty for the
        /// document itself.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },
    /// A field has a value that Kubernetes or peapod refuses.
    #[error("{file}: {}{problem}", path_prefix(.path))]
    Invalid {
        /// The file name used in messages.
        file: String,
        /// The field path, e.g. `spec.containers[0].resources.limits.memory`.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl SpecError {
    /// The field path the error is about, if any.
    pub fn field_path(&self) -> Option<&str> {
        match self {
            SpecError::Decode { path, .. } | SpecError::Invalid { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            _ => None,
        }
    }
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn at_location(location: &Option<(usize, usize)>) -> String {
    match location {
        Some((line, column)) => format!(" (line {line}, column {column})"),
        None => String::new(),
    }
}

/// Turns a YAML syntax error into a [`SpecError::ParseYaml`].
pub(crate) fn syntax_error(file: &str, err: &serde_yaml::Error) -> SpecError {
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let marker = format!(" at line {line} column {column}");
    let problem = err.to_string().replacen(&marker, "", 1);
    let fix = if problem.contains("duplicate entry") {
        "fix the YAML syntax: remove or rename the repeated key"
    } else if problem.contains("tab") || problem.contains("cannot start any token") {
        "fix the YAML syntax: indent with spaces, not tabs"
    } else if problem.contains("unknown anchor") {
        "fix the YAML syntax: define the anchor (&name) before using it (*name)"
    } else {
        "fix the YAML syntax: check the indentation, and quote values that contain \": \" or \" #\""
    };
    SpecError::ParseYaml {
        file: file.to_owned(),
        line,
        column,
        problem,
        fix,
    }
}

/// Turns a schema error from serde into a [`SpecError::Decode`].
pub(crate) fn decode_error(
    file: &str,
    err: serde_path_to_error::Error<serde_yaml::Error>,
) -> SpecError {
    let mut path = err.path().to_string();
    if path == "." {
        path.clear();
    }
    let inner = err.inner();
    let location = inner.location().map(|l| (l.line(), l.column()));
    let mut message = inner.to_string();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    // serde_yaml prefixes its own notion of the path (the enclosing node);
    // ours is more precise, so drop theirs.
    for prefix in path_ancestors(&path) {
        if let Some(stripped) = message.strip_prefix(&format!("{prefix}: ")) {
            message = stripped.to_owned();
            break;
        }
    }
    SpecError::Decode {
        file: file.to_owned(),
        path,
        problem: explain(&message),
        location,
    }
}

/// `a.b[1].c`, `a.b[1]`, `a.b`, `a`.
fn path_ancestors(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut end = path.len();
    while end > 0 {
        out.push(&path[..end]);
        match path[..end].rfind(['.', '[']) {
            Some(cut) => end = cut,
            None => break,
        }
    }
    out
}

/// Rewrites serde's messages into ones with a fix.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            return explain_unknown_field(field, expected);
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "expected {}, found {found}; fix the value (or its indentation)",
                describe_expected(expected)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let field = rest.trim_end_matches('`');
        return format!("field {field:?} is set twice; keep only one");
    }
    message.to_owned()
}

fn describe_expected(expected: &str) -> String {
    match expected {
        "i64" | "i32" | "u64" | "u32" | "u16" => "an integer (without quotes)".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping of keys to values".to_owned(),
        "a string" => "a string".to_owned(),
        other if other.starts_with("struct ") => "a mapping of fields".to_owned(),
        other => other.to_owned(),
    }
}

/// `expected` is serde's tail: `, expected one of `a`, `b``,
/// `, expected `a`` or `, there are no fields`.
fn explain_unknown_field(field: &str, expected: &str) -> String {
    let allowed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if let Some(best) = closest(field, &allowed) {
        return format!("unknown field {field:?}; did you mean {best:?}?");
    }
    let mut message = format!(
        "unknown field {field:?}: it is not part of the Kubernetes Pod schema at this level; \
         check its spelling and indentation"
    );
    if !allowed.is_empty() {
        message.push_str(&format!(" (allowed here: {})", allowed.join(", ")));
    }
    message
}

/// The candidate closest to `word`, if it is a plausible typo of it.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    let (distance, best) = candidates
        .iter()
        .map(|c| (edit_distance(&word_lower, &c.to_lowercase()), *c))
        .min()?;
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    (distance <= limit).then_some(best)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_closest_finds_typos() {
        let fields = [
            "name",
            "image",
            "command",
            "args",
            "volumeMounts",
            "containerPort",
        ];
        assert_eq!(closest("imagee", &fields), Some("image"));
        assert_eq!(closest("imgae", &fields), Some("image"));
        assert_eq!(closest("comand", &fields), Some("command"));
        assert_eq!(closest("volumemounts", &fields), Some("volumeMounts"));
        assert_eq!(closest("ContainerPort", &fields), Some("containerPort"));
        assert_eq!(closest("replicas", &fields), None);
        assert_eq!(closest("x", &[]), None);
    }

    #[test]
    fn test_path_ancestors() {
        assert_eq!(
            path_ancestors("spec.containers[1].imagee"),
            [
                "spec.containers[1].imagee",
                "spec.containers[1]",
                "spec.containers",
                "spec"
            ]
        );
        assert!(path_ancestors("").is_empty());
    }

    #[test]
    fn test_explain_rewrites_serde_messages() {
        assert_eq!(
            explain("unknown field `imagee`, expected one of `name`, `image`"),
            "unknown field \"imagee\"; did you mean \"image\"?"
        );
        let far = explain("unknown field `replicas`, expected one of `name`, `image`");
        assert!(
            far.contains("not part of the Kubernetes Pod schema"),
            "{far}"
        );
        assert!(far.contains("allowed here: name, image"), "{far}");
        let typed = explain("invalid type: string \"80\", expected i64");
        assert!(
            typed.starts_with("expected an integer (without quotes), found string \"80\""),
            "{typed}"
        );
        assert_eq!(explain("something else"), "something else");
    }
}
