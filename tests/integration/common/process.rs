// SPDX-License-Identifier: MPL-2.0
//! Child processes the tests start, each bounded by a deadline: programs (examples,
//! `gst-launch-1.0`), and this test binary itself for a test that needs a process of its own.
//!
//! All the integration tests are threads of one process. A test that counts the process's
//! threads or file descriptors, sets GStreamer's debug level before it initializes, loads
//! plugins into its registry or ends the process on a hang calls [`run_alone`] first: that
//! re-runs this binary with `--exact` on the test and [`CHILD`] naming it, and in that child
//! the call returns `None` and the test's body runs alone.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a child process to the name of the one test it runs.
pub const CHILD: &str = "FIREWORKSSTT_TEST_CHILD";

/// A child process that ran to its end.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Finished {
    pub fn report(&self) -> String {
        format!(
            "exit: {}, took {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs `command` (stdin closed) to the end, or kills it after `timeout` and fails.
pub fn run_command(mut command: Command, name: &str, timeout: Duration) -> Finished {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{name} starts: {e}"));
    // Read both pipes while waiting, so a chatty child can never block on a full pipe.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- \
                 stderr ---\n{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        took: started.elapsed(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The test's name as libtest knows it, from `module_path!()` (which starts with this test
/// crate's name) and the test function's name.
pub fn test_name(module_path: &str, function: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{function}"),
        None => function.to_string(),
    }
}

/// In the child process that runs `test` alone, returns `None`: the caller then runs the test's
/// body. Anywhere else runs `test` in such a child, with `env` added to its environment, and
/// returns the child's output once it has passed; fails when the child fails, runs anything but
/// exactly that one test, or outlives `timeout`.
pub fn run_alone(
    test: &str,
    env: &[(&str, &std::ffi::OsStr)],
    timeout: Duration,
) -> Option<Finished> {
    if std::env::var_os(CHILD).is_some_and(|v| v == test) {
        return None;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = run_command(command, &format!("{test} in a process of its own"), timeout);
    assert!(
        child.status.success() && child.stdout.contains("test result: ok. 1 passed"),
        "{test} in a process of its own:\n{}",
        child.report()
    );
    Some(child)
}
