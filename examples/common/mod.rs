// SPDX-License-Identifier: MPL-2.0
//! What the command-line examples share: one `--help`/error/exit-code convention, the check that
//! the GStreamer elements they use are installed (naming the Debian package when one is not),
//! output files that appear only when complete, Ctrl-C handling, time and error formatting.
//!
//! The convention: `--help` prints the whole help (usage, what the program does, every option,
//! the environment) on stdout and exits 0; a bad argument prints `error: …`, the usage line and
//! a pointer to `--help` on stderr and exits 2; a failure prints `error: …` on stderr and exits
//! with status 1. Output meant for a terminal (progress, lines rewritten in place) is drawn only
//! when the stream is a terminal.
#![allow(dead_code)] // Each example uses part of it.

use gst::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub mod subtitles;

/// The environment section of the help of every example that talks to the service (a literal,
/// for `concat!`; the examples declare `#[macro_use] mod common;`).
macro_rules! api_key_help {
    () => {
        "environment:
  FIREWORKS_API_KEY   the Fireworks API key (https://fireworks.ai, account settings). Needed
                      for the real service; with --base-url pointing at the bundled local server
                      (or --local-server where offered) no key is needed."
    };
}

/// Parses the arguments (`Ok(None)`: help was asked for), runs, and maps the outcome to the
/// exit code: 0 done, 1 failed, 2 bad arguments. `help` is the full help; its first line is the
/// usage line.
pub fn cli_main<O>(
    help: &str,
    parse_args: impl FnOnce(Vec<String>) -> Result<Option<O>, String>,
    run: impl FnOnce(&O) -> Result<(), Box<dyn std::error::Error>>,
) -> ExitCode {
    let options = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{help}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let usage = help.lines().next().unwrap_or_default();
            let name = usage
                .strip_prefix("usage: ")
                .and_then(|u| u.split_whitespace().next())
                .unwrap_or("the program");
            eprintln!("error: {e}\n{usage}\n({name} --help lists the options)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command-line arguments, with the values of `--name value` options taken in words.
pub struct Args {
    args: std::vec::IntoIter<String>,
}

impl Args {
    pub fn new(args: Vec<String>) -> Args {
        Args {
            args: args.into_iter(),
        }
    }

    pub fn next_arg(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value of option `name`.
    pub fn value(&mut self, name: &str) -> Result<String, String> {
        self.args.next().ok_or(format!("{name} needs a value"))
    }

    /// The value of option `name`, parsed; `what` says what is expected ("milliseconds").
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str, what: &str) -> Result<T, String> {
        let text = self.value(name)?;
        text.parse()
            .map_err(|_| format!("{name} takes {what}, not {text:?}"))
    }
}

/// Which Debian package provides each GStreamer element: scripts/gstreamer-elements.txt, which
/// scripts/setup.sh installs from and tests/integration/setup_elements.rs keeps complete.
const ELEMENT_PACKAGES: &str = include_str!("../../scripts/gstreamer-elements.txt");

/// The Debian package of `element`, as scripts/gstreamer-elements.txt lists it.
pub fn package_of(element: &str) -> Option<&'static str> {
    ELEMENT_PACKAGES
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == element).then(|| fields.next()).flatten()
        })
}

/// Fails, naming what to install, unless every element in `elements` is available.
/// `gst::init` must have been called.
pub fn require_elements(elements: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = elements
        .iter()
        .copied()
        .filter(|name| gst::ElementFactory::find(name).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(missing_elements_text(&missing))
}

fn missing_elements_text(missing: &[&str]) -> String {
    let mut packages: Vec<&str> = Vec::new();
    let mut built = false;
    let listed: Vec<String> = missing
        .iter()
        .map(|name| match package_of(name) {
            Some("build-transcriberbin-plugins") => {
                built = true;
                format!("{name} (built by scripts/build-transcriberbin-plugins.sh)")
            }
            Some(package) => {
                if !packages.contains(&package) {
                    packages.push(package);
                }
                format!("{name} (Debian package {package})")
            }
            None => format!("{name} (not in scripts/gstreamer-elements.txt)"),
        })
        .collect();
    let mut fix = Vec::new();
    if !packages.is_empty() {
        fix.push(format!("sudo apt-get install {}", packages.join(" ")));
    }
    if built {
        fix.push("scripts/build-transcriberbin-plugins.sh".to_string());
    }
    let fix = if fix.is_empty() {
        "run scripts/setup.sh".to_string()
    } else {
        format!(
            "run {} (scripts/setup.sh does all of it)",
            fix.join(", then ")
        )
    };
    format!(
        "GStreamer element{} missing: {}; {fix}",
        if missing.len() == 1 { " is" } else { "s are" },
        listed.join(", ")
    )
}

/// The API key check before anything starts: against the real service a key is needed.
pub fn require_api_key(base_url: Option<&str>) -> Result<(), String> {
    let key_set = std::env::var_os("FIREWORKS_API_KEY").is_some_and(|k| !k.is_empty());
    if key_set || base_url.is_some() {
        return Ok(());
    }
    Err(
        "FIREWORKS_API_KEY is not set: export FIREWORKS_API_KEY=fw_... (your Fireworks API \
         key), or use the bundled local server (see --help)"
            .into(),
    )
}

/// Sets `base-url` (and, when FIREWORKS_API_KEY is unset, a placeholder key: the bundled local
/// server accepts any key).
pub fn point_at(stt: &gst::Element, base_url: Option<&str>) {
    if let Some(url) = base_url {
        stt.set_property("base-url", url);
        if std::env::var_os("FIREWORKS_API_KEY").is_none() {
            stt.set_property("api-key", "local-test-key");
        }
    }
}

/// `--local-server`: the bundled Fireworks-compatible server, started in this process and
/// kept for as long as the returned handle lives (`None` when not asked for).
pub fn local_server(wanted: bool) -> Result<Option<fireworks_test_server::TestServer>, String> {
    if !wanted {
        return Ok(None);
    }
    let server = fireworks_test_server::TestServer::start(Default::default())
        .map_err(|e| format!("cannot start the local server: {e}"))?;
    eprintln!("local server: {}", server.base_url());
    Ok(Some(server))
}

/// Fails naming the path unless `path` is a readable file.
pub fn require_input_file(path: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("{path}: cannot read it ({e})")),
        Ok(_) => Err(format!("{path}: not a file")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Partial output files that exist right now, removed by a second Ctrl-C before it quits.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// An output file that appears under its name only when complete: the pipeline writes
/// [`OutputFile::partial`] (`.NAME.partial` in the same directory), [`OutputFile::commit`]
/// renames it, and dropping it uncommitted deletes it. A failed run thus leaves no file, and an
/// existing file of that name untouched.
pub struct OutputFile {
    path: PathBuf,
    partial: PathBuf,
}

impl OutputFile {
    pub fn new(path: &str) -> Result<OutputFile, String> {
        let path = PathBuf::from(path);
        let name = path
            .file_name()
            .ok_or(format!("{}: not a file name", path.display()))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            if !dir.is_dir() {
                return Err(format!(
                    "{}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
        }
        let partial_name = format!(".{}.partial", name.to_string_lossy());
        let partial = match dir {
            Some(dir) => dir.join(partial_name),
            None => PathBuf::from(partial_name),
        };
        PARTIALS.lock().unwrap().push(partial.clone());
        Ok(OutputFile { path, partial })
    }

    /// Where the pipeline writes.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the complete file in place.
    pub fn commit(self) -> Result<(), String> {
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| format!("{}: cannot write it ({e})", self.path.display()))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        // After a commit the partial file no longer exists.
        let _ = std::fs::remove_file(&self.partial);
        PARTIALS.lock().unwrap().retain(|p| p != &self.partial);
    }
}

/// Ctrl-C handling: the first Ctrl-C sets the returned flag (the program then ends the stream
/// cleanly, so output files are complete); a second one removes partial output files and quits
/// at once with status 130.
pub fn on_ctrl_c() -> Result<Arc<AtomicBool>, ctrlc::Error> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            if let Ok(partials) = PARTIALS.try_lock() {
                for path in partials.iter() {
                    let _ = std::fs::remove_file(path);
                }
            }
            std::process::exit(130);
        }
    })?;
    Ok(interrupted)
}

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// `h:mm:ss.mmm`
pub fn fmt_time(t: gst::ClockTime) -> String {
    let ms = t.mseconds();
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// An ERROR message as a user reads it: the text, then the technical detail.
pub fn error_text(msg: &gst::Message) -> String {
    let gst::MessageView::Error(e) = msg.view() else {
        return format!("{msg:?}");
    };
    match e.debug() {
        Some(debug) => format!("{}\n  ({debug})", e.error()),
        None => e.error().to_string(),
    }
}

/// Sets `pipeline` to PLAYING; when that fails, the ERROR message that says why.
pub fn start(pipeline: &gst::Pipeline) -> Result<(), String> {
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return Ok(());
    }
    let msg = pipeline
        .bus()
        .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]));
    let _ = pipeline.set_state(gst::State::Null);
    Err(msg.map_or("the pipeline could not start".into(), |m| error_text(&m)))
}
