//! The scheduling that ships in `deploy/` and what the README's "Run it every day" says of it:
//! the units pass `systemd-analyze verify` (where it exists), and the units, the cron line and
//! the README name the same binary, configuration, user and directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use lms_etl_tests::harness::lms_etl_bin;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(workspace().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// `Key=Value` lines of a unit file, comments dropped.
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting(unit: &str, key: &str) -> String {
    let values: Vec<String> = settings(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "one {key}= line");
    values[0].clone()
}

/// The README's "Run it every day" section.
fn readme_section() -> String {
    let readme = read("README.md");
    let start = readme
        .find("## Run it every day\n")
        .expect("README has a section \"Run it every day\"");
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i);
    rest[..end].to_owned()
}

/// The one schedule line of the cron file: (five time fields, user, command).
fn cron_line(cron: &str) -> (Vec<String>, String, String) {
    let lines: Vec<&str> = cron
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.split_whitespace().next().unwrap().contains('='))
        .collect();
    assert_eq!(lines.len(), 1, "one schedule line: {lines:?}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    let time: Vec<String> = words[..5].iter().map(|w| w.to_string()).collect();
    (time, words[5].to_owned(), words[6..].join(" "))
}

/// The binary and the config path of `<binary> [-q] --config <path> run`.
fn binary_and_config(command: &str) -> (String, String) {
    let words: Vec<&str> = command
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .collect();
    let at = words
        .iter()
        .position(|w| *w == "--config")
        .unwrap_or_else(|| panic!("--config in {command:?}"));
    assert_eq!(words.last(), Some(&"run"), "{command:?}");
    let binary = words[..at]
        .iter()
        .rev()
        .find(|w| !w.starts_with('-'))
        .unwrap();
    (binary.to_string(), words[at + 1].to_owned())
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: only the cross-checks run");
        return;
    };
    assert!(out.status.success());
    // verify insists that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let service = read("deploy/lms-etl.service");
    let (binary, _) = binary_and_config(&setting(&service, "ExecStart"));
    std::fs::write(
        dir.path().join("lms-etl.service"),
        service.replace(&binary, &lms_etl_bin().to_string_lossy()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lms-etl.timer"),
        read("deploy/lms-etl.timer"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("lms-etl.service"))
        .arg(dir.path().join("lms-etl.timer"))
        .output()
        .unwrap();
    // Unknown keys and bad values are only warnings to verify: any output is a failure.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn units_cron_line_and_readme_name_the_same_binary_config_user_and_paths() {
    let service = read("deploy/lms-etl.service");
    let timer = read("deploy/lms-etl.timer");
    let cron = read("deploy/lms-etl.cron");
    let readme = readme_section();

    let (binary, config) = binary_and_config(&setting(&service, "ExecStart"));
    assert_eq!(binary, "/usr/local/bin/lms-etl");
    assert_eq!(config, "/etc/lms-etl/lms-etl.toml");
    assert_eq!(setting(&service, "Type"), "oneshot");
    assert_eq!(setting(&timer, "Unit"), "lms-etl.service");
    assert_eq!(setting(&timer, "Persistent"), "true");

    let (time, user, command) = cron_line(&cron);
    for field in &time {
        assert!(
            !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_digit() || "*/,-".contains(c)),
            "cron time field {field:?}"
        );
    }
    assert!(command.starts_with("flock -n "), "{command}");
    assert_eq!(
        binary_and_config(&command),
        (binary.clone(), config.clone())
    );
    assert_eq!(user, setting(&service, "User"));

    // The README: the command both run, the cron line verbatim, the install steps' paths.
    assert!(
        readme.contains(&format!("`{binary} --config {config} run`")),
        "README names the command"
    );
    let cron_text = format!("{} {user} {command}", time.join(" "));
    assert!(
        readme.contains(&format!("\n{cron_text}\n")),
        "README shows the cron line"
    );
    assert!(readme.contains(&format!(
        "install -m 0755 target/release/lms-etl {binary}\n"
    )));
    assert!(readme.contains(&format!(" lms-etl.example.toml {config}\n")));
    assert!(readme.contains(&format!("as the user `{user}`")));
    let env_file = setting(&service, "EnvironmentFile");
    let env_file = env_file.trim_start_matches('-');
    assert!(readme.contains(&format!("`{env_file}`")));
    assert!(readme.contains(&format!("install -m 0640 -g {user} /dev/null {env_file}")));
    assert!(
        command.contains(&format!(" . {env_file};")),
        "the cron line reads {env_file}: {command}"
    );
    let writable = setting(&service, "ReadWritePaths");
    let made = readme
        .lines()
        .find_map(|l| l.strip_prefix(&format!("install -d -o {user} -g {user} ")))
        .expect("README creates the writable directories");
    for dir in writable.split_whitespace() {
        assert!(
            made.split_whitespace().any(|d| d == dir),
            "README creates {dir}"
        );
    }
    assert!(readme.contains("`logs.dir = \"/var/log/lms-etl\"`"));
    assert!(writable.split_whitespace().any(|d| d == "/var/log/lms-etl"));
    assert!(writable
        .split_whitespace()
        .any(|d| "/var/lib/lms-etl/outbox".starts_with(d)));

    // Every `Key=Value` the README quotes is a line of a unit.
    let mut lines = settings(&service);
    lines.extend(settings(&timer));
    let mut fenced = false;
    let prose: String = readme
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut quoted_settings = 0;
    for quoted in prose.split('`').skip(1).step_by(2) {
        let Some((key, value)) = quoted.split_once('=') else {
            continue;
        };
        // A unit setting is CamelCase (`Persistent=true`), unlike `KEY=value` or `a.b = c`.
        let camel_case = key.starts_with(|c: char| c.is_ascii_uppercase())
            && key.chars().any(|c| c.is_ascii_lowercase())
            && key.chars().all(|c| c.is_ascii_alphanumeric());
        if !camel_case {
            continue;
        }
        assert!(
            lines.iter().any(|(k, v)| k == key && v == value),
            "README says `{quoted}`, the units do not"
        );
        quoted_settings += 1;
    }
    assert!(
        quoted_settings >= 8,
        "the README quotes the units' settings"
    );
    for unit in [
        "deploy/lms-etl.service",
        "deploy/lms-etl.timer",
        "deploy/lms-etl.cron",
    ] {
        assert!(readme.contains(unit), "README names {unit}");
    }
}

#[test]
fn the_readme_shows_the_pg_cron_schedules_of_sql_pg_cron_sql() {
    let calls = |text: &str| -> Vec<String> {
        text.split("cron.schedule(")
            .skip(1)
            .map(|rest| {
                let end = rest.find(");").unwrap();
                rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect()
    };
    let sql = calls(&read("sql/pg_cron.sql"));
    assert_eq!(sql.len(), 4, "{sql:?}");
    assert_eq!(calls(&readme_section()), sql);
}

#[test]
fn flock_as_the_cron_line_uses_it_exits_3_while_the_lock_is_held() {
    let (_, _, command) = cron_line(&read("deploy/lms-etl.cron"));
    let words: Vec<&str> = command.split_whitespace().collect();
    let lock_at = words.iter().position(|w| w.starts_with('/')).unwrap();
    let options = &words[1..lock_at];
    assert_eq!(options, ["-n", "-E", "3"]);
    let Ok(_) = Command::new("flock").arg("--version").output() else {
        eprintln!("flock is not installed here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("lms-etl.lock");
    // Holds the lock until its stdin closes (`-o`: cat itself does not hold it).
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .arg("cat")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let held = loop {
        let out = Command::new("flock")
            .args(options)
            .arg(&lock)
            .arg("true")
            .output()
            .unwrap();
        if out.status.code() == Some(3) || started.elapsed().as_secs() > 10 {
            break out.status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    assert_eq!(held, Some(3));
    let free = Command::new("flock")
        .args(options)
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert!(free.success());
}
