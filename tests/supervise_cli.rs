//! `container __supervise CONFIG`: the entry point the executor will run as PID 1
//! reads a supervisor config, runs its services and stops cleanly on SIGTERM.

mod support;
use container::exec::supervisor::{read_status, ServiceState, SupervisorConfig};
use container::plan::types::ServiceRes;
use std::time::{Duration, Instant};

#[test]
fn supervise_runs_a_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut cfg = SupervisorConfig::new(&run_dir);
    cfg.services.insert("hello".into(), ServiceRes::new(&["/bin/sh", "-c", "echo hello from hello; exec sleep 60"]));
    let cfg_path = dir.path().join("supervisor.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();

    let mut child =
        std::process::Command::new(env!("CARGO_BIN_EXE_container")).arg("__supervise").arg(&cfg_path).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready =
            read_status(&run_dir).ok().and_then(|s| s.services.get("hello").map(|h| h.state == ServiceState::Ready));
        let logged =
            std::fs::read_to_string(run_dir.join("logs/hello.log")).unwrap_or_default().contains("hello from hello");
        if ready == Some(true) && logged {
            break;
        }
        assert!(Instant::now() < deadline, "service never became ready and logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

#[test]
fn supervise_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("bad.json");
    std::fs::write(&cfg_path, b"{\"run_dir\": 3}").unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_container")).arg("__supervise").arg(&cfg_path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("supervisor config"));
}
