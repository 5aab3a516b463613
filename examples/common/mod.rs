//! What the command-line examples share: the `main` shape, time and error formatting.

use std::process::ExitCode;

/// Parses the arguments (`Ok(None)`: help was asked for), runs, and maps the outcome to the
/// exit code: 0 done, 1 failed, 2 bad arguments.
pub fn cli_main<O>(
    usage: &str,
    parse_args: impl FnOnce() -> Result<Option<O>, String>,
    run: impl FnOnce(&O) -> Result<(), Box<dyn std::error::Error>>,
) -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
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
