// SPDX-License-Identifier: MPL-2.0
//! scripts/install.sh as `sudo` runs it for a user who installed Rust with rustup: no cargo on
//! the PATH and none in the home directory. It must install the library already built (this
//! test's own build, `--profile` of this test binary), say so, and the staged copy must be a
//! plugin GStreamer loads. Everything goes into a staging directory (DESTDIR).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{plugin_dir, scratch_dir};

/// target/<profile>, holding this test binary's deps/ folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    scratch_dir("install", name)
}

/// The programs install.sh runs besides cargo (those missing here are optional to it).
const TOOLS: [&str; 11] = [
    "dirname",
    "getent",
    "cut",
    "id",
    "find",
    "install",
    "strip",
    "rm",
    "sed",
    "pkg-config",
    "gst-inspect-1.0",
];

/// A directory for PATH holding links to [`TOOLS`] and nothing else: no cargo, wherever this
/// machine keeps one.
fn cargo_less_path(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in TOOLS {
        let found = std::env::split_paths(&path)
            .chain(["/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(tool))
            .find(|p| p.is_file());
        if let Some(found) = found {
            let link = bin.join(tool);
            if !link.exists() {
                std::os::unix::fs::symlink(found, link).unwrap();
            }
        }
    }
    bin
}

/// Runs install.sh with a clean environment: a cargo-less PATH, an empty home, `target_dir` as
/// CARGO_TARGET_DIR and `stage` as DESTDIR.
fn install(args: &[&str], target_dir: &Path, stage: &Path, home: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    let bash = ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("bash");
    Command::new(bash)
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", cargo_less_path(home.parent().unwrap()))
        .env("HOME", home)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("DESTDIR", stage)
        .output()
        .unwrap()
}

fn report(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn install_without_cargo_stages_the_built_library_and_says_so() {
    let profile_dir = profile_dir();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let dir = scratch("stage");
    // This build's library where install.sh looks for it, in a target directory of the test's
    // own (cargo test does not copy it up to target/<profile>/, so the one there may be stale).
    let target_dir = dir.join("target");
    let built = plugin_dir().join("libgstfireworks.so");
    assert!(built.exists(), "{} is not built", built.display());
    let in_target = target_dir.join(&profile).join("libgstfireworks.so");
    std::fs::create_dir_all(in_target.parent().unwrap()).unwrap();
    std::fs::copy(&built, &in_target).unwrap();
    let (stage, home) = (dir.join("stage"), dir.join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let plugindir = "/usr/lib/gstreamer-1.0";

    let out = install(
        &["--profile", &profile, "--plugindir", plugindir],
        &target_dir,
        &stage,
        &home,
    );
    assert!(out.status.success(), "{}", report(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let staged = stage
        .join(plugindir.trim_start_matches('/'))
        .join("libgstfireworks.so");
    assert!(staged.exists(), "{}\n{}", staged.display(), report(&out));
    assert!(
        stdout.contains("no cargo found") && stdout.contains("used the library already built"),
        "says what it did\n{}",
        report(&out)
    );
    assert!(
        stdout.contains(&staged.display().to_string()),
        "names where it installed\n{}",
        report(&out)
    );

    // The staged copy is a plugin GStreamer loads, with the element in it.
    let inspect = Command::new("gst-inspect-1.0")
        .arg(&staged)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && text.contains("fireworksstt"),
        "gst-inspect-1.0 {}:\n{text}\n{}",
        staged.display(),
        String::from_utf8_lossy(&inspect.stderr)
    );

    let out = install(
        &["--uninstall", "--plugindir", plugindir],
        &target_dir,
        &stage,
        &home,
    );
    assert!(out.status.success(), "{}", report(&out));
    assert!(!staged.exists(), "uninstall removes it\n{}", report(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_without_cargo_or_a_built_library_says_how_to_build_it() {
    let dir = scratch("nothing");
    let (stage, home, empty_target) = (dir.join("stage"), dir.join("home"), dir.join("target"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&empty_target).unwrap();
    let out = install(
        &["--plugindir", "/usr/lib/gstreamer-1.0"],
        &empty_target,
        &stage,
        &home,
    );
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no cargo found") && stderr.contains("cargo build --release --lib"),
        "names the fix\n{}",
        report(&out)
    );
    assert!(
        !stage.exists() || std::fs::read_dir(&stage).unwrap().next().is_none(),
        "nothing staged\n{}",
        report(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
