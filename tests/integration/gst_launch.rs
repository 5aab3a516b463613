// SPDX-License-Identifier: MPL-2.0
//! The plugin as users load it: `gst-launch-1.0 -m` with GST_PLUGIN_PATH pointing at the built
//! library, over a generated WAV file, against the bundled local server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn gst_launch_prints_each_utterance_once_as_final() {
    let dir = plugin_dir();
    assert!(
        dir.join("libgstfireworks.so").exists(),
        "the cdylib was not built in {}",
        dir.display()
    );
    let utterances = [
        "hello from the command line",
        "second sentence",
        "and a third",
    ];
    let audio = synthesize_utterances(&utterances).unwrap();
    let tmp = std::env::temp_dir().join(format!("fireworksstt-launch-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let wav = tmp.join("speech.wav");
    audio.write_wav(&wav).unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();

    let mut child = Command::new("gst-launch-1.0")
        .arg("-m")
        .args(format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! fireworksstt base-url={} api-key={} ! fakesink",
            wav.display(),
            server.base_url(),
            TEST_KEY
        ).split(' '))
        .env("GST_PLUGIN_PATH", &dir)
        .env("GST_REGISTRY", tmp.join("registry.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gst-launch-1.0 runs (scripts/setup.sh installs gstreamer1.0-tools)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gst-launch-1.0 did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gst-launch failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let finals: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("fireworksstt/transcript") && l.contains("final=(boolean)true"))
        .map(|l| {
            let start = l.find("text=(string)").unwrap() + "text=(string)".len();
            let rest = &l[start..];
            let text = if let Some(quoted) = rest.strip_prefix('"') {
                &quoted[..quoted.find('"').unwrap()]
            } else {
                &rest[..rest.find(',').unwrap()]
            };
            text.replace("\\ ", " ")
        })
        .collect();
    assert_eq!(finals, utterances, "{stdout}");
    assert!(!stdout.contains(TEST_KEY), "the key must not be printed");
    let _ = std::fs::remove_dir_all(&tmp);
}
