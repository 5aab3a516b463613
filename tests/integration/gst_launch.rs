// SPDX-License-Identifier: MPL-2.0
//! The plugin as users load it: `gst-launch-1.0 -m` with GST_PLUGIN_PATH pointing at the built
//! library, over a generated WAV file, against the bundled local server; and that library is
//! the one built with these tests.

use std::time::Duration;

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

    let description = format!(
            "filesrc location={} ! wavparse ! audioconvert ! audioresample ! fireworksstt base-url={} api-key={} ! fakesink",
            wav.display(),
            server.base_url(),
            TEST_KEY
        );
    let mut args = vec!["-m"];
    args.extend(description.split(' '));
    let output = gst_launch(&args, &tmp, Duration::from_secs(60));
    let stdout = &output.stdout;
    assert!(
        output.status.success(),
        "gst-launch failed:\n{stdout}\n{}",
        output.stderr
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

/// What the programs the tests start load is this build's plugin, alone in its directory:
/// `cargo test` leaves target/<profile>/libgstfireworks.so as the last `cargo build` made it
/// (stale after an edit of src/, or missing), and its deps/ folder holds proc-macro libraries.
#[test]
fn programs_load_the_plugin_built_with_these_tests() {
    let dir = plugin_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        // Other test processes' copies in progress (GStreamer loads only names ending in .so).
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    assert_eq!(names, ["libgstfireworks.so"], "in {}", dir.display());
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().join("libgstfireworks.so");
    assert!(
        std::fs::read(dir.join("libgstfireworks.so")).unwrap() == std::fs::read(&built).unwrap(),
        "{} is a copy of {}",
        dir.display(),
        built.display()
    );
    assert_not_older_than_sources(&dir.join("libgstfireworks.so"));
}
