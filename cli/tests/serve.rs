//! `envplane serve` as a user runs it: a real process on a real port, killed and restarted.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Plane {
    child: Child,
    endpoint: String,
}

impl Plane {
    /// Starts `envplane serve` on a free port and waits for its "listening" line.
    fn start(data_dir: &Path) -> Plane {
        let mut child = Command::new(env!("CARGO_BIN_EXE_envplane"))
            .args([
                "serve",
                "--dev-auth",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn envplane serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let endpoint = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("listening line")
            .to_owned();
        Plane { child, endpoint }
    }

    fn kill_9(mut self) {
        // SIGKILL: no graceful shutdown, no chance to flush anything.
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(args)
        .args(["--endpoint", endpoint])
        .output()
        .expect("run cli");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_environment_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let created = http
        .post(format!("{}/v1/environments", plane.endpoint))
        .json(&json!({"name": "dev", "tier": "dev"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let created: Value = created.json().await.unwrap();
    plane.kill_9();

    let plane = Plane::start(dir.path());
    let env: Value = http
        .get(format!("{}/v1/environments/dev", plane.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(env["spec"]["network"]["vpc_cidr"], "10.0.0.0/16");
    assert_eq!(env["active_operation"], created["operation"]["id"]);
    let verify: Value = http
        .get(format!(
            "{}/v1/environments/dev/audit/verify",
            plane.endpoint
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["valid"], true);
}

#[test]
fn the_cli_creates_lists_and_explains_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Plane::start(dir.path());
    let (ok, out, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "create",
            "qa",
            "--tier",
            "qa",
            "--set",
            "cluster.frontend.desired=3",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("create of qa accepted (202)"), "{out}");
    assert!(out.contains("t3.medium ×3 (2–4)"), "{out}");

    let (ok, out, _) = cli(&plane.endpoint, &["env", "list"]);
    assert!(
        ok && out
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("qa ") && l.contains("10.1.0.0/16")),
        "{out}"
    );

    let (ok, out, _) = cli(&plane.endpoint, &["env", "get", "qa", "--output", "json"]);
    assert!(ok);
    let env: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env["spec"]["cluster"]["frontend"]["desired"], 3);

    let (ok, _, err) = cli(
        &plane.endpoint,
        &[
            "env",
            "create",
            "bad",
            "--tier",
            "qa",
            "--set",
            "cluster.backend.min=9",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("(422)") && err.contains("cluster.backend.min: min 9 is greater than max 4"),
        "{err}"
    );

    let (ok, out, _) = cli(&plane.endpoint, &["blueprints"]);
    assert!(
        ok && out.contains("prod") && out.contains("$869.07"),
        "{out}"
    );
}

#[test]
fn serve_refuses_to_start_without_an_auth_choice() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_envplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dev-auth"));
}
