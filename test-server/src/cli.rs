// SPDX-License-Identifier: MPL-2.0
//! Command-line front ends: the server (`fireworks-test-server`) and the WAV maker
//! (`make-test-audio`). Reusable from other crates' examples:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     fireworks_test_server::cli::run_from_args()
//! }
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::audio::{samples_to_seconds, synthesize, Script};
use crate::config::{Dialect, ServerConfig, TlsIdentity};
use crate::server::TestServer;

pub const SERVER_USAGE: &str = "\
usage: fireworks-test-server [options]

Serves the Fireworks streaming speech-to-text protocol on ws://HOST:PORT/v1 (with --tls-cert:
wss://localhost:PORT/v1) and prints one line 'fireworks test server listening on URL'.
It recognises English speech offline with Whisper tiny.en (the model that ./scripts/setup.sh
puts in ~/.cache/fireworksstt/models/whisper-tiny.en; FIREWORKSSTT_MODEL_DIR overrides), and
transcribes tone-coded test audio (make-test-audio) exactly. One line per connection on stderr
tells what happened.
Runs until killed (Ctrl-C), or until standard input closes with --exit-on-stdin-eof.

options:
  --host HOST                     address to bind (default 127.0.0.1)
  --port N                        port (default 0: pick a free one)
  --api-key KEY                   require this API key (default: accept any)
  --tls-cert FILE                 serve wss:// with this PEM certificate chain (leaf first;
                                  it must name localhost); needs --tls-key
  --tls-key FILE                  the PEM private key for --tls-cert
  --close-after-echo              close (1000) after echoing a checkpoint
  --no-finalize-on-checkpoint     do not finalize the open utterance on a checkpoint
  --max-words-per-segment N       words per segment (default 6)
  --no-revise-partial-words       no interim for half-decoded words
  --grow-finalized-segment        scenario: speech after a final grows the same segment id
  --retract-trailing-segment      scenario: occasionally retract a trailing segment
  --string-ids                    scenario: send segment ids as strings
  --dialect v1|v2                 message shapes: v1 (default) or v2 (string ids, error
                                  objects with a code, extra segment fields)
  --record                        keep received audio and sent messages in memory
  --decode-delay-ms N             make every speech decode N ms slower (a slow recogniser)
  --exit-on-stdin-eof             stop when standard input reaches end of file
  -h, --help                      this help
";

pub const MAKE_AUDIO_USAGE: &str = "\
usage: make-test-audio OUT.wav TEXT [TEXT...] [options]

Writes 16 kHz mono S16 WAV test audio that the test server transcribes as the given
utterances (letters a-z, digits, apostrophe; words separated by spaces), and prints the
expected transcript, one utterance per line.

options:
  --gap-ms N        silence after each utterance (default 2000)
  --leading-ms N    silence before the first utterance (default 0)
  --trailing-ms N   silence after the last utterance (default: the gap)
  --words           also print each word as 'START END WORD' (seconds) after the transcript
  -h, --help        this help
";

/// Parsed server command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub config: ServerConfig,
    pub exit_on_stdin_eof: bool,
    /// `--tls-cert` and `--tls-key` (both or neither), read by [`run_server`].
    pub tls_files: Option<(PathBuf, PathBuf)>,
}

/// Result of parsing: run, or print help.
#[derive(Debug, Clone)]
pub enum Command<T> {
    Run(T),
    Help,
}

/// Splits `--flag=value` and walks the arguments.
struct Args {
    items: std::vec::IntoIter<String>,
}

impl Args {
    fn new(args: impl IntoIterator<Item = String>) -> Self {
        let mut v = Vec::new();
        for a in args {
            match a.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    v.push(flag.to_string());
                    v.push(value.to_string());
                }
                _ => v.push(a),
            }
        }
        Args {
            items: v.into_iter(),
        }
    }
    fn next(&mut self) -> Option<String> {
        self.items.next()
    }
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.items
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }
    fn number<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let v = self.value(flag)?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
    }
}

/// Parses the server's arguments (without the program name).
pub fn parse_serve_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Command<ServeOptions>, String> {
    let mut o = ServeOptions {
        host: "127.0.0.1".into(),
        port: 0,
        config: ServerConfig::default().with_recording(false, false),
        exit_on_stdin_eof: false,
        tls_files: None,
    };
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut args = Args::new(args);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--host" => o.host = args.value(&a)?,
            "--port" => o.port = args.number(&a)?,
            "--api-key" => o.config.api_key = Some(args.value(&a)?),
            "--tls-cert" => tls_cert = Some(PathBuf::from(args.value(&a)?)),
            "--tls-key" => tls_key = Some(PathBuf::from(args.value(&a)?)),
            "--close-after-echo" => o.config.close_after_echo = true,
            "--no-finalize-on-checkpoint" => o.config.finalize_on_checkpoint = false,
            "--max-words-per-segment" => {
                let n: usize = args.number(&a)?;
                if n == 0 {
                    return Err("--max-words-per-segment must be at least 1".into());
                }
                o.config.max_words_per_segment = n;
            }
            "--no-revise-partial-words" => o.config.revise_partial_words = false,
            "--grow-finalized-segment" => o.config.grow_finalized_segment = true,
            "--retract-trailing-segment" => o.config.retract_trailing_segment = true,
            "--string-ids" => o.config.send_string_ids = true,
            "--dialect" => {
                o.config.dialect = match args.value(&a)?.as_str() {
                    "v1" => Dialect::V1,
                    "v2" => Dialect::V2,
                    other => return Err(format!("--dialect must be v1 or v2, not {other:?}")),
                }
            }
            "--record" => o.config = o.config.with_recording(true, true),
            "--decode-delay-ms" => {
                o.config.decode_delay = std::time::Duration::from_millis(args.number(&a)?)
            }
            "--exit-on-stdin-eof" => o.exit_on_stdin_eof = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    o.tls_files = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
    };
    Ok(Command::Run(o))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

/// Runs the server with the process arguments. Returns only on error or, with
/// `--exit-on-stdin-eof`, when standard input closes.
pub fn run_from_args() -> ExitCode {
    run_server(std::env::args().skip(1))
}

/// Runs the server with the given arguments (without the program name).
pub fn run_server(args: impl IntoIterator<Item = String>) -> ExitCode {
    let opts = match parse_serve_args(args) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{SERVER_USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fireworks-test-server: {e}\n\n{SERVER_USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = match resolve(&opts.host, opts.port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fireworks-test-server: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = opts.config;
    if let Some((cert, key)) = &opts.tls_files {
        match TlsIdentity::from_pem_files(cert, key) {
            Ok(identity) => config = config.with_tls(identity),
            Err(e) => {
                eprintln!("fireworks-test-server: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Load the speech model now (once per process), so a missing model is reported at start
    // and the first connection does not wait for the load.
    let _ = crate::recognizer::Recognizer::shared();
    let server = match TestServer::start_on(addr, config) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            eprintln!("fireworks-test-server: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fireworks-test-server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    let _ = writeln!(
        stdout,
        "fireworks test server listening on {}",
        server.base_url()
    );
    let _ = stdout.flush();
    drop(stdout);
    if opts.exit_on_stdin_eof {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        drop(server);
        return ExitCode::SUCCESS;
    }
    loop {
        std::thread::park();
    }
}

/// Parsed `make-test-audio` command line.
#[derive(Debug, Clone, PartialEq)]
pub struct MakeAudioOptions {
    pub out: String,
    pub script: Script,
    pub print_words: bool,
}

/// Parses `make-test-audio` arguments (without the program name).
pub fn parse_make_audio_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Command<MakeAudioOptions>, String> {
    let mut args = Args::new(args);
    let mut positional = Vec::new();
    let mut gap = None;
    let mut leading = 0u64;
    let mut trailing = None;
    let mut print_words = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--gap-ms" => gap = Some(args.number::<u64>(&a)?),
            "--leading-ms" => leading = args.number(&a)?,
            "--trailing-ms" => trailing = Some(args.number::<u64>(&a)?),
            "--words" => print_words = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag:?}")),
            _ => positional.push(a),
        }
    }
    if positional.len() < 2 {
        return Err("need an output file and at least one utterance".into());
    }
    let out = positional.remove(0);
    let mut script = Script::new().leading_silence(Duration::from_millis(leading));
    if let Some(g) = gap {
        script = script.gap(Duration::from_millis(g));
    }
    for text in positional {
        script = script.utterance(text);
    }
    if let Some(t) = trailing {
        script = script.trailing_silence(Duration::from_millis(t));
    }
    Ok(Command::Run(MakeAudioOptions {
        out,
        script,
        print_words,
    }))
}

/// `make-test-audio` with the process arguments.
pub fn make_test_audio_main() -> ExitCode {
    make_test_audio(std::env::args().skip(1))
}

/// `make-test-audio` with the given arguments (without the program name).
pub fn make_test_audio(args: impl IntoIterator<Item = String>) -> ExitCode {
    make_test_audio_to(args, &mut io::stdout().lock())
}

/// `make-test-audio`, printing the transcript to `stdout`.
pub fn make_test_audio_to(
    args: impl IntoIterator<Item = String>,
    stdout: &mut impl Write,
) -> ExitCode {
    let opts = match parse_make_audio_args(args) {
        Ok(Command::Run(o)) => o,
        Ok(Command::Help) => {
            print!("{MAKE_AUDIO_USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("make-test-audio: {e}\n\n{MAKE_AUDIO_USAGE}");
            return ExitCode::from(2);
        }
    };
    let audio = match synthesize(&opts.script) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("make-test-audio: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = audio.write_wav(&opts.out) {
        eprintln!("make-test-audio: cannot write {}: {e}", opts.out);
        return ExitCode::FAILURE;
    }
    for u in &audio.utterances {
        let _ = writeln!(stdout, "{u}");
    }
    if opts.print_words {
        for w in &audio.words {
            let _ = writeln!(
                stdout,
                "{:.4} {:.4} {}",
                samples_to_seconds(w.start_sample),
                samples_to_seconds(w.end_sample),
                w.text
            );
        }
    }
    let _ = stdout.flush();
    eprintln!(
        "make-test-audio: wrote {} ({:.3} s, {} utterances, {} words)",
        opts.out,
        audio.duration().as_secs_f64(),
        audio.utterances.len(),
        audio.words.len()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn serve_args() {
        let Command::Run(o) = parse_serve_args(strings(&[
            "--port",
            "8123",
            "--host=0.0.0.0",
            "--api-key",
            "k",
            "--close-after-echo",
            "--no-finalize-on-checkpoint",
            "--max-words-per-segment=3",
            "--no-revise-partial-words",
            "--grow-finalized-segment",
            "--retract-trailing-segment",
            "--string-ids",
            "--dialect=v2",
            "--exit-on-stdin-eof",
        ]))
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 8123));
        assert_eq!(o.config.api_key.as_deref(), Some("k"));
        assert!(o.config.close_after_echo && !o.config.finalize_on_checkpoint);
        assert_eq!(o.config.max_words_per_segment, 3);
        assert!(!o.config.revise_partial_words);
        assert!(o.config.grow_finalized_segment && o.config.retract_trailing_segment);
        assert!(o.config.send_string_ids && o.exit_on_stdin_eof);
        assert_eq!(o.config.dialect, Dialect::V2);
        assert!(!o.config.record_audio && !o.config.record_messages);

        let Command::Run(d) = parse_serve_args(Vec::<String>::new()).unwrap() else {
            panic!()
        };
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 0));
        assert!(d.config.api_key.is_none() && d.config.finalize_on_checkpoint);
        assert!(matches!(
            parse_serve_args(strings(&["-h"])),
            Ok(Command::Help)
        ));
        assert!(parse_serve_args(strings(&["--port"])).is_err());
        assert!(parse_serve_args(strings(&["--port", "x"])).is_err());
        assert!(parse_serve_args(strings(&["--max-words-per-segment", "0"])).is_err());
        assert!(parse_serve_args(strings(&["--bogus"])).is_err());
        assert!(d.tls_files.is_none() && d.config.tls.is_none());
    }

    #[test]
    fn serve_tls_args() {
        let Command::Run(o) =
            parse_serve_args(strings(&["--tls-cert", "c.pem", "--tls-key=k.pem"])).unwrap()
        else {
            panic!("expected run")
        };
        assert_eq!(
            o.tls_files,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert!(parse_serve_args(strings(&["--tls-cert", "c.pem"])).is_err());
        assert!(parse_serve_args(strings(&["--tls-key", "k.pem"])).is_err());
        assert!(parse_serve_args(strings(&["--tls-cert"])).is_err());
        // Unreadable files are a usage error, reported before listening.
        let missing = std::env::temp_dir().join(format!("fw-no-such-{}.pem", std::process::id()));
        let m = missing.to_str().unwrap();
        assert_eq!(
            run_server(strings(&["--tls-cert", m, "--tls-key", m])),
            ExitCode::from(2)
        );
    }

    #[test]
    fn make_audio_args() {
        let Command::Run(o) = parse_make_audio_args(strings(&[
            "out.wav",
            "hello world",
            "--gap-ms",
            "1500",
            "how are you",
            "--leading-ms=250",
            "--trailing-ms",
            "100",
            "--words",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.out, "out.wav");
        assert!(o.print_words);
        assert_eq!(o.script.gap, Duration::from_millis(1500));
        assert_eq!(o.script.leading_silence, Duration::from_millis(250));
        assert_eq!(o.script.utterances.len(), 2);
        assert_eq!(
            o.script.utterances[1].trailing_silence,
            Some(Duration::from_millis(100))
        );
        assert!(parse_make_audio_args(strings(&["out.wav"])).is_err());
        assert!(parse_make_audio_args(strings(&["out.wav", "x", "--nope"])).is_err());
    }

    #[test]
    fn make_audio_writes_a_decodable_wav() {
        let dir = std::env::temp_dir().join(format!("fw-make-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.wav");
        let mut printed = Vec::new();
        let code = make_test_audio_to(
            strings(&[path.to_str().unwrap(), "hello there", "ok", "--words"]),
            &mut printed,
        );
        assert_eq!(code, ExitCode::SUCCESS);
        let printed = String::from_utf8(printed).unwrap();
        assert!(
            printed.starts_with("hello there\nok\n0.0000 0.1500 hello\n"),
            "{printed}"
        );
        let (rate, samples) = crate::audio::read_wav(&path).unwrap();
        assert_eq!(rate, 16000);
        let words: Vec<String> = crate::audio::decode_words(&samples)
            .into_iter()
            .map(|w| w.text)
            .collect();
        assert_eq!(words, vec!["hello", "there", "ok"]);
        assert_eq!(
            make_test_audio_to(strings(&[path.to_str().unwrap(), "Bad"]), &mut Vec::new()),
            ExitCode::from(2)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
