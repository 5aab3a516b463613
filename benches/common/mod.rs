// SPDX-License-Identifier: MPL-2.0
//! Shared support for the benchmark programs (`benches/*.rs`, `harness = false`).
//!
//! Measuring: CPU as user+sys time (`getrusage`, µs resolution) of the process or the thread,
//! per-thread on-CPU time and wake-ups from `/proc/self/task/*/{schedstat,status}`, RSS from
//! `/proc/self/status`, and instants on `CLOCK_MONOTONIC`, which is one clock for every
//! process on the machine, so times taken in two processes can be subtracted.
//!
//! Every benchmark binary can also act as the test server (`--role serve`): it re-executes
//! itself, so the server always runs in a process of its own, built with the same profile.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use gst::prelude::*;

// GStreamer's set-up and the audio caps, as the integration tests have them.
#[path = "../../tests/integration/common/gst_setup.rs"]
mod gst_setup;
pub use gst_setup::{audio_caps, init as init_gst};

pub const SAMPLE_RATE: u64 = 16_000;
pub const BYTES_PER_MS: usize = 32;

/// Nanoseconds on CLOCK_MONOTONIC (system-wide on Linux).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `deadline_ns` on CLOCK_MONOTONIC (absolute, so lateness never accumulates).
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: valid timespec; a null remainder is allowed with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            break;
        }
    }
}

/// User and system CPU seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    pub fn total(&self) -> f64 {
        self.user + self.sys
    }
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }
    fn from_rusage(ru: &libc::rusage) -> Cpu {
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    }
}

/// CPU of this whole process so far (all threads, including ones that exited).
pub fn cpu_self() -> Cpu {
    Cpu::from_rusage(&rusage(libc::RUSAGE_SELF))
}

/// CPU of the calling thread.
pub fn cpu_thread() -> Cpu {
    Cpu::from_rusage(&rusage(libc::RUSAGE_THREAD))
}

/// Runs `cmd` to completion and returns its exit status with the CPU it used (wait4 rusage),
/// its peak RSS (KiB), and everything it printed on stdout.
pub fn run_child(cmd: &mut Command) -> std::io::Result<(i32, Cpu, u64, String)> {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waiting for our own child, filling a zeroed rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        while libc::wait4(pid, &mut status, 0, &mut ru) < 0 {
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(std::io::Error::last_os_error());
            }
        }
        ru
    };
    // The child is reaped; keep `Child` from trying again.
    std::mem::forget(child);
    let out = reader.join().unwrap_or_default();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, Cpu::from_rusage(&ru), ru.ru_maxrss as u64, out))
}

/// On-CPU nanoseconds of every thread of process `pid` (`self` for this one), summed.
pub fn process_cpu_ns(pid: &str) -> u64 {
    threads_of(pid).iter().map(|t| t.cpu_ns).sum()
}

#[derive(Debug, Clone, Default)]
pub struct ThreadStat {
    pub tid: u32,
    pub name: String,
    /// From schedstat: time on CPU (user+sys), ns.
    pub cpu_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Threads of process `pid` ("self" for this process) with their CPU and context switches.
pub fn threads_of(pid: &str) -> Vec<ThreadStat> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let tid: u32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpu_ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        out.push(ThreadStat {
            tid,
            name,
            cpu_ns,
            voluntary_switches: field("voluntary_ctxt_switches:"),
            involuntary_switches: field("nonvoluntary_ctxt_switches:"),
        });
    }
    out
}

/// Thread statistics grouped by a class derived from the thread name.
#[derive(Debug, Clone, Default)]
pub struct ThreadGroups(pub BTreeMap<String, ThreadStat>);

impl ThreadGroups {
    pub fn snapshot(classify: impl Fn(&str) -> String) -> Self {
        let mut map: BTreeMap<String, ThreadStat> = BTreeMap::new();
        for t in threads_of("self") {
            let e = map.entry(classify(&t.name)).or_default();
            e.name = classify(&t.name);
            e.tid += 1; // thread count
            e.cpu_ns += t.cpu_ns;
            e.voluntary_switches += t.voluntary_switches;
            e.involuntary_switches += t.involuntary_switches;
        }
        ThreadGroups(map)
    }

    /// Differences since `earlier` (threads that exited in between are not counted).
    pub fn since(&self, earlier: &ThreadGroups) -> ThreadGroups {
        let mut map = BTreeMap::new();
        for (k, v) in &self.0 {
            let e = earlier.0.get(k).cloned().unwrap_or_default();
            map.insert(
                k.clone(),
                ThreadStat {
                    tid: v.tid,
                    name: k.clone(),
                    cpu_ns: v.cpu_ns.saturating_sub(e.cpu_ns),
                    voluntary_switches: v.voluntary_switches.saturating_sub(e.voluntary_switches),
                    involuntary_switches: v
                        .involuntary_switches
                        .saturating_sub(e.involuntary_switches),
                },
            );
        }
        ThreadGroups(map)
    }
}

/// The thread classes of an element process.
pub fn classify_thread(name: &str) -> String {
    if name.starts_with("gst-fireworks") {
        "tokio runtime (element network side)".into()
    } else if name.starts_with("bench-") {
        name.to_string()
    } else if name.contains(":src") || name.contains(":sink") {
        "gstreamer streaming threads".into()
    } else {
        "main/other".into()
    }
}

/// CPU seconds all processes of the machine have used so far (busy time from /proc/stat).
/// The difference over a run, minus what the benchmark's own processes used, shows how much
/// other work shared the machine.
pub fn system_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return 0.0;
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    busy / hz
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resident set size of this process, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Asks glibc to give freed memory back, so RSS shows what is live.
pub fn malloc_trim() {
    extern "C" {
        fn malloc_trim(pad: libc::size_t) -> libc::c_int;
    }
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe {
        malloc_trim(0);
    }
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur as u64
    }
}

/// Percentile (nearest rank) of a sample; `p` in 0..=100.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "n=…, p50 …, p99 …, max …" of values in ms.
pub fn summary_ms(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return "n=0".into();
    }
    format!(
        "n={:>6}  min {:>7.3}  p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>7.3} ms",
        v.len(),
        v[0],
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        percentile(&v, 99.0),
        v[v.len() - 1]
    )
}

pub fn p(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&v, q)
}

/// FNV-1a 64 over the final transcripts joined with '\n' (the Python client computes the same).
pub fn fnv1a(texts: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            h ^= b'\n' as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in t.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Minimal argument access: `--key value` pairs and flags.
pub struct Args(pub Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        // `cargo bench` passes `--bench`; it means nothing here.
        Args(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == key)
            .and_then(|i| self.0.get(i + 1).cloned())
    }
    pub fn get_or<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    pub fn flag(&self, key: &str) -> bool {
        self.0.iter().any(|a| a == key)
    }
    /// Everything after `--`.
    pub fn rest(&self) -> Vec<String> {
        match self.0.iter().position(|a| a == "--") {
            Some(i) => self.0[i + 1..].to_vec(),
            None => Vec::new(),
        }
    }
}

/// If this process was started as the test server (`--role serve -- ARGS`), serve and exit.
pub fn maybe_serve(args: &Args) {
    if args.get("--role").as_deref() == Some("serve") {
        let code = fireworks_test_server::cli::run_server(args.rest());
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
}

/// The test server in a child process (this binary with `--role serve`). Stops when dropped
/// (its standard input closes).
pub struct ServerProcess {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub base_url: String,
}

impl ServerProcess {
    pub fn start(server_args: &[&str]) -> ServerProcess {
        let exe = std::env::current_exe().expect("own path");
        let mut child = Command::new(exe)
            .args(["--role", "serve", "--"])
            .args(server_args)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("test server process starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("test server prints its URL");
        let base_url = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("a URL on the line")
            .to_string();
        assert!(
            base_url.starts_with("ws"),
            "unexpected server line {line:?}"
        );
        let stdin = child.stdin.take();
        ServerProcess {
            child,
            stdin,
            base_url,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// On-CPU time of the server process so far, ns.
    pub fn cpu_ns(&self) -> u64 {
        process_cpu_ns(&self.pid())
    }

    pub fn rss_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The full streaming URL the element builds with its defaults (same query for every client),
/// built by the element's own code.
pub fn streaming_url(base_url: &str) -> String {
    gstfireworks::protocol::streaming_url(base_url, &Default::default())
        .expect("the local server's base URL is valid")
        .to_string()
}

/// Speech-like test audio as S16LE bytes, cached in a file so that every client process (the
/// Python one included) reads exactly the same bytes. Returns the path and the utterances.
pub fn speech_audio_file(minutes: u64, seed: u64) -> (PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join("fireworksstt-bench");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("speech-{minutes}min-seed{seed}.s16le"));
    let text_path = path.with_extension("txt");
    if let (Ok(meta), Ok(text)) = (
        std::fs::metadata(&path),
        std::fs::read_to_string(&text_path),
    ) {
        if meta.len() == minutes * 60 * SAMPLE_RATE * 2 {
            return (path, text.lines().map(str::to_string).collect());
        }
    }
    let audio =
        fireworks_test_server::synthesize_speech_like(Duration::from_secs(minutes * 60), seed);
    let mut bytes = audio.to_le_bytes();
    bytes.resize((minutes * 60 * SAMPLE_RATE * 2) as usize, 0);
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write audio");
    std::fs::rename(&tmp, &path).expect("rename audio");
    std::fs::write(&text_path, audio.utterances.join("\n")).expect("write transcript");
    (path, audio.utterances)
}

/// A source pad owned by the benchmark, linked to `sink`: buffers pushed on it run the
/// downstream chain on the pushing thread (as `gst-check`'s harness does), so no source
/// element adds threads or queues. `live` makes it answer the LATENCY query as a live source.
pub fn feeding_pad(name: &str, sink: &gst::Pad, live: bool, buffer_ns: u64) -> gst::Pad {
    let pad = gst::Pad::builder(gst::PadDirection::Src)
        .name(name)
        .query_function(move |_pad, _parent, query| match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                q.set(
                    live,
                    gst::ClockTime::from_nseconds(if live { buffer_ns } else { 0 }),
                    gst::ClockTime::NONE,
                );
                true
            }
            gst::QueryViewMut::Caps(q) => {
                q.set_result(&audio_caps());
                true
            }
            _ => false,
        })
        .build();
    pad.set_active(true).expect("pad activates");
    pad.link(sink).expect("pad links");
    pad
}

/// Sends stream-start, caps and a TIME segment down `pad`.
pub fn start_stream(pad: &gst::Pad, id: &str) {
    assert!(pad.push_event(gst::event::StreamStart::new(id)));
    assert!(pad.push_event(gst::event::Caps::new(&audio_caps())));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(pad.push_event(gst::event::Segment::new(&segment)));
}

/// A buffer of `len` bytes at `offset` of `whole`, sharing its memory (no copy).
pub fn sub_buffer(whole: &gst::Buffer, offset: usize, len: usize, pts_ns: u64) -> gst::Buffer {
    let mut b = whole
        .copy_region(gst::BufferCopyFlags::MEMORY, offset..offset + len)
        .expect("region inside the buffer");
    {
        let b = b.get_mut().expect("new buffer is writable");
        b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        b.set_duration(gst::ClockTime::from_nseconds(
            (len as u64 / 2) * 1_000_000_000 / SAMPLE_RATE,
        ));
        b.set_offset((offset / 2) as u64);
    }
    b
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Adds `fireworksstt ! fakesink` to `pipeline` (or only the `fakesink`, for the scaffold run
/// that measures the cost of feeding) and returns the pad to push audio into, and the element.
pub fn add_branch(
    pipeline: &gst::Pipeline,
    base_url: &str,
    scaffold: bool,
) -> (gst::Pad, Option<gst::Element>) {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .property("silent", true)
        .build()
        .unwrap();
    pipeline.add(&sink).unwrap();
    if scaffold {
        return (sink.static_pad("sink").unwrap(), None);
    }
    let stt = gst::ElementFactory::make("fireworksstt")
        .property("base-url", base_url)
        .property("api-key", "bench-key")
        .build()
        .unwrap();
    pipeline.add(&stt).unwrap();
    stt.link(&sink).unwrap();
    (stt.static_pad("sink").unwrap(), Some(stt))
}

/// The reference client's Python: `--python`, else `$FIREWORKS_BENCH_PYTHON`, else the venv
/// benches/setup-reference-client.sh makes (`~/.cache/fireworksstt/bench-venv`). `None` when
/// `--no-python` is given or the interpreter does not exist (the client is then skipped).
pub fn reference_python(args: &Args) -> Option<String> {
    let default_python = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
        .join("fireworksstt/bench-venv/bin/python")
        .display()
        .to_string();
    let python = args
        .get("--python")
        .or_else(|| std::env::var("FIREWORKS_BENCH_PYTHON").ok())
        .unwrap_or(default_python);
    if args.flag("--no-python") || !Path::new(&python).exists() {
        println!("(reference Python client skipped: no {python})");
        return None;
    }
    Some(python)
}
