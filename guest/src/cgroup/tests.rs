//! Unit tests of the cgroup layout, limit and counter logic.

use super::*;

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/sessions/abc
1:cpu,cpuacct:/
0::/
";

#[test]
fn test_layout_hybrid_uses_v1_below_own_cgroup() {
    let layout = layout_from(HYBRID, HYBRID_SELF, |_| Some("hugetlb\n".into()));
    let want = |base: &str, c| Hierarchy {
        version: Version::V1,
        base: base.into(),
        controllers: vec![c],
    };
    assert_eq!(
        layout.hierarchies,
        [
            want("/sys/fs/cgroup/memory/sessions/abc", Controller::Memory),
            want("/sys/fs/cgroup/cpu,cpuacct", Controller::Cpu),
            want("/sys/fs/cgroup/pids", Controller::Pids),
        ]
    );
    assert!(layout.unavailable.is_empty());
}

#[test]
fn test_layout_unified_uses_v2_root() {
    let info = "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    let layout = layout_from(info, "0::/user.slice/session-1.scope\n", |p| {
        assert_eq!(p, Path::new("/sys/fs/cgroup"));
        Some("cpuset cpu io memory pids\n".into())
    });
    assert_eq!(
        layout.hierarchies,
        [Hierarchy {
            version: Version::V2,
            base: "/sys/fs/cgroup".into(),
            controllers: Controller::ALL.to_vec(),
        }]
    );
}

#[test]
fn test_layout_reports_missing_controllers() {
    let info = "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let layout = layout_from(info, "0::/\n", |_| Some("memory\n".into()));
    assert_eq!(layout.hierarchies.len(), 1);
    assert_eq!(layout.hierarchies[0].controllers, [Controller::Memory]);
    let missing: Vec<Controller> = layout.unavailable.iter().map(|u| u.0).collect();
    assert_eq!(missing, [Controller::Cpu, Controller::Pids]);
    assert!(layout.unavailable[0].1.contains("cpu controller"));
    let none = layout_from("", "", |_| None);
    assert!(none.hierarchies.is_empty());
    assert_eq!(none.unavailable.len(), 3);
}

#[test]
fn test_layout_v1_mount_root_is_stripped() {
    // In a container the hierarchy's root is the container's cgroup.
    let info = "35 31 0:32 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let layout = layout_from(info, "4:memory:/docker/x/sub\n", |_| None);
    assert_eq!(
        layout.hierarchies[0].base,
        Path::new("/sys/fs/cgroup/memory/sub")
    );
    let layout = layout_from(info, "4:memory:/elsewhere\n", |_| None);
    assert_eq!(
        layout.hierarchies[0].base,
        Path::new("/sys/fs/cgroup/memory")
    );
}

#[test]
fn test_unescape_mountinfo_octal() {
    assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
    assert_eq!(unescape(r"/plain\09"), r"/plain\09");
}

#[test]
fn test_parse_oom_kills_v2_and_v1() {
    let v2 = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
    assert_eq!(parse_oom_kills(v2), Some(2));
    let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n";
    assert_eq!(parse_oom_kills(v1), Some(5));
    assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
    assert_eq!(parse_oom_kills("oom_kill x\n"), None);
}

#[test]
fn test_cpu_quota_and_cpu_max_format() {
    assert_eq!(cpu_quota_us(500), 50_000);
    assert_eq!(cpu_quota_us(2000), 200_000);
    assert_eq!(cpu_quota_us(1), MIN_CPU_QUOTA_US);
    assert_eq!(cpu_quota_us(u64::MAX), u64::MAX / 1000);
    let limits = Limits {
        cpu_millis: Some(250),
        ..Limits::default()
    };
    assert_eq!(
        limit_writes(Version::V2, Controller::Cpu, &limits),
        [w("cpu.max", "25000 100000", true)]
    );
    assert_eq!(
        limit_writes(Version::V1, Controller::Cpu, &limits),
        [
            w("cpu.cfs_period_us", "100000", true),
            w("cpu.cfs_quota_us", "25000", true)
        ]
    );
    assert!(limit_writes(Version::V2, Controller::Cpu, &Limits::default()).is_empty());
}

#[test]
fn test_limit_writes_memory_and_pids() {
    let limits = Limits {
        memory: Some(16 << 20),
        pids: Some(64),
        ..Limits::default()
    };
    assert_eq!(
        limit_writes(Version::V2, Controller::Memory, &limits),
        [
            w("memory.max", "16777216", true),
            w("memory.swap.max", "0", false)
        ]
    );
    assert_eq!(
        limit_writes(Version::V1, Controller::Memory, &limits),
        [
            w("memory.limit_in_bytes", "16777216", true),
            w("memory.memsw.limit_in_bytes", "16777216", false)
        ]
    );
    assert_eq!(
        limit_writes(Version::V1, Controller::Pids, &limits),
        [w("pids.max", "64", true)]
    );
    // Without a limit in the spec, the default process limit.
    assert_eq!(
        limit_writes(Version::V2, Controller::Pids, &Limits::default()),
        [w("pids.max", DEFAULT_PIDS_MAX, true)]
    );
    assert!(limit_writes(Version::V2, Controller::Memory, &Limits::default()).is_empty());
}

#[test]
fn test_create_without_hierarchies_warns_per_limit() {
    let mut pods = PodCgroups::with_layout(layout_from("", "", |_| None), "p");
    let limits = Limits {
        memory: Some(1 << 20),
        cpu_millis: None,
        pids: Some(5),
    };
    let (cg, warnings) = pods.create("c", &limits);
    assert!(cg.is_none());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("memory limit of 1048576 bytes is not enforced: no mounted"));
    assert!(warnings[1].starts_with("process limit of 5 is not enforced"));
    // The default process limit is not the user's: no warning for it.
    let (_, warnings) = pods.create("d", &Limits::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(pods.remove_all(Duration::ZERO).is_empty());
}

#[test]
fn test_parse_instance_of_pod_dir_names() {
    assert_eq!(parse_instance("web-4026531836-42"), Some((4026531836, 42)));
    assert_eq!(parse_instance("my-pod-7-42"), Some((7, 42)));
    assert_eq!(parse_instance("4026531836-42"), None);
    assert_eq!(parse_instance("web-x-42"), None);
    assert_eq!(parse_instance("web-42"), None);
    let name = format!("web-{}", instance_of(9, 3));
    assert_eq!(parse_instance(&name), Some((9, 3)));
}

#[test]
fn test_component_is_one_path_component() {
    assert_eq!(component("web-1.a"), "web-1.a");
    assert_eq!(component("a/b c"), "a_b_c");
    assert_eq!(component(".."), "_..");
    assert_eq!(component(""), "_");
}
