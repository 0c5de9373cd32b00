//! Readiness truth and parallel stop, through the real CLI on `base = "host"`
//! containers (host tier: root, real namespaces, veths, processes).
//!
//! - 20 edits that each restart a service which sleeps 1.5 s before it listens (a
//!   changed file it `uses`, or a changed definition): right after each `apply`
//!   returns, a connect to it succeeds and serves the edit just applied.
//! - A service without a probe that exits at once fails `apply`, first or live, and
//!   the message carries its last log lines; a one-shot that exits 0 does not.
//! - 20 services that ignore SIGTERM stop in about one timeout, not twenty.
//!
//! Addresses: this suite's slice of block 75 (salt 103, see `support::addr`).

mod support;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::net::try_get;
use support::*;

const SALT: u32 = 103;

fn web(name: &str, n: u32, edit: u32, env_edit: u32) -> Ct {
    let ct = Ct::new(name, "");
    ct.write(&web_body(n, edit, env_edit));
    ct
}

/// A web service that takes 1.5 s to listen after every start; it serves the edit.
fn web_body(n: u32, edit: u32, env_edit: u32) -> String {
    format!(
        r#"base = "host"

[network]
ipv4 = "{}"
ipv6 = "{}"

[[files]]
path = "/srv/www/index.html"
content = "edit {edit}"

[processes.web]
command = ["/bin/sh", "-c", "sleep 1.5; exec /usr/bin/python3 -m http.server 8080 --bind :: --directory /srv/www"]
user = "nobody"
env = {{ EDIT = "{env_edit}" }}
uses = ["/srv/www/index.html"]
ready = {{ tcp = 8080 }}
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

#[test]
fn apply_returns_only_when_the_restarted_service_answers() {
    require_host!();
    let name = format!("rdy{}w", slice(SALT));
    let ct = web(&name, 1, 0, 0);
    ct.apply_ok();
    let addr = v4(SALT, 1);
    let first = try_get(&addr, 8080).unwrap_or_else(|e| panic!("after the first apply: {e}\n{}", ct.logs()));
    assert!(first.contains("edit 0"), "{first}");
    let mut failures = Vec::new();
    for i in 1..=20u32 {
        // Odd edits change only the file the service uses (a restart request); even
        // ones its definition too (a reconfigure that replaces it).
        let env_edit = i / 2;
        ct.write(&web_body(1, i, env_edit));
        let pid_before = ct.service_pid("web");
        let out = ct.apply_ok();
        // At once: no retry, no wait.
        match try_get(&addr, 8080) {
            Ok(body) if body.contains(&format!("edit {i}")) => {}
            Ok(body) => failures.push(format!("edit {i}: served an old page: {body}")),
            Err(e) => failures.push(format!("edit {i}: {e} (apply said: {out})")),
        }
        assert_ne!(ct.service_pid("web"), pid_before, "edit {i} did not restart the service: {out}");
    }
    assert!(failures.is_empty(), "{} of 20 edits answered too early:\n{}", failures.len(), failures.join("\n"));
}

fn body(services: &str) -> String {
    format!("base = \"host\"\n{services}")
}

const MAIN: &str = r#"
[processes.main]
command = ["/bin/sleep", "infinity"]

[processes.once]
command = ["/bin/sh", "-c", "echo one-shot done"]
restart = "no"
"#;

const BOOM: &str = r#"
[processes.boom]
command = ["/bin/sh", "-c", "echo starting up; echo boom-line-from-the-service; exit 3"]
"#;

#[test]
fn a_service_without_probe_that_exits_at_once_fails_apply_with_its_log() {
    require_host!();
    // A first apply.
    let ct = Ct::new(&format!("rdy{}b", slice(SALT)), &body(BOOM));
    let out = ct.apply();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "apply of a service that exits at once succeeded:\n{err}\n{}", ct.logs());
    assert!(err.contains("boom-line-from-the-service"), "no log line in the failure:\n{err}");
    assert!(err.contains("exit code 3"), "{err}");

    // A live apply: a one-shot that exits 0 is fine, a new service that fails is not.
    let live = Ct::new(&format!("rdy{}l", slice(SALT)), &body(MAIN));
    live.apply_ok();
    let pid1 = live.pid1();
    live.write(&body(&format!("{MAIN}{BOOM}")));
    let out = live.apply();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a live apply adding a failing service succeeded:\n{err}\n{}", live.logs());
    assert!(err.contains("boom-line-from-the-service"), "no log line in the failure:\n{err}");
    assert_eq!(live.pid1(), pid1, "the live apply recreated the container");
}

#[test]
fn stop_of_twenty_services_that_ignore_sigterm_takes_one_timeout() {
    require_host!();
    let mut services = String::from("base = \"host\"\n");
    for i in 0..20 {
        services.push_str(&format!(
            "\n[processes.s{i:02}]\ncommand = [\"/bin/sh\", \"-c\", \"trap '' TERM; echo up; sleep 1000\"]\n"
        ));
    }
    let ct = Ct::new(&format!("rdy{}s", slice(SALT)), &services);
    ct.apply_ok();
    let pid1 = ct.pid1();
    let timeout = 2u64;
    let t = Instant::now();
    let out = container().args(["stop", &ct.name, "--timeout", &timeout.to_string()]).stdin(Stdio::null()).output();
    let took = t.elapsed();
    let out = out.expect("stop");
    assert!(out.status.success(), "stop failed: {}", text(&out.stderr));
    // Serial, this is 20 × the timeout (40 s); in parallel, one timeout and change.
    assert!(took < Duration::from_secs(3 * timeout), "stop took {took:?} for a {timeout} s timeout");
    assert!(took >= Duration::from_secs(timeout) - Duration::from_millis(100), "no SIGTERM was ignored? {took:?}");
    // PID 1 ended, and its pid namespace (every service) with it.
    // (A zombie until whoever inherited it reaps it.)
    let stat = std::fs::read_to_string(format!("/proc/{pid1}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("gone").to_string();
    assert!(state == "gone" || state == "Z", "PID 1 ({pid1}) survived the stop: {stat}");

    // destroy (default timeout, 10 s) of the started container: one timeout too.
    ok(&["start", &ct.name]);
    let t = Instant::now();
    ok(&["destroy", &ct.name]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(30), "destroy took {took:?} for a 10 s timeout");
}
