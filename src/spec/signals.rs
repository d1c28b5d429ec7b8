//! Signal names, as `lifecycle.stopSignal` and an image's `StopSignal`
//! give them (`SIGQUIT`, `QUIT`, `3`, `SIGRTMIN+3`), for x86-64 Linux.

/// The standard signals by name, without `SIG`.
const NAMES: [(&str, i32); 34] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// The number of signal `name`; `None` if it names none.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(s, _)| *s == bare) {
        return Some(n);
    }
    let offset = |rest: &str| -> Option<i32> {
        match rest {
            "" => Some(0),
            _ => rest
                .get(1..)?
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=30).contains(n)),
        }
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let n = offset(rest)?;
        return (rest.is_empty() || rest.starts_with('+')).then_some(RTMIN + n);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        let n = offset(rest)?;
        return (rest.is_empty() || rest.starts_with('-')).then_some(RTMAX - n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::signal_number;

    #[test]
    fn test_signal_number_by_name_and_number() {
        let cases = [
            ("SIGTERM", Some(15)),
            ("QUIT", Some(3)),
            ("sigusr1", Some(10)),
            ("9", Some(9)),
            ("SIGRTMIN", Some(34)),
            ("SIGRTMIN+3", Some(37)),
            ("SIGRTMAX-1", Some(63)),
            ("SIGRTMIN-1", None),
            ("SIGRTMAX+1", None),
            ("0", None),
            ("65", None),
            ("SIGFOO", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(signal_number(name), want, "{name}");
        }
    }
}
