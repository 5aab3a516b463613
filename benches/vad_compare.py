# SPDX-License-Identifier: MPL-2.0
"""Compares two offline voice-activity detectors on the same noisy recordings: Silero VAD v6
(PyPI silero-vad==6.2.3, ONNX, run on PyPI onnxruntime==1.23.2) and earshot 1.2.2 (the Python
build of the same Rust crate and weights the test server links).

    benches/setup-vad-compare.sh            # venv with numpy, onnxruntime, earshot
    VENV/bin/python benches/vad_compare.py  # prints the tables recorded in BENCHMARKS.md

Speech: the LibriVox clips of Debian's pocketsphinx-testdata and ten espeak-ng sentences (five
voices), each followed by 1.5 s of pause, mixed with steady noise (white, pink, brown, mains hum
over pink, cafe murmur made of reversed speech) at 20, 10, 5 and 0 dB SNR (speech power over
its active frames against the noise's). Reference activity: frames of the clean recording within
35 dB of its loudest frame, gaps under 250 ms bridged. Non-speech: silence, a tone running into
white noise, beeps, sweeps, a chord sequence, a door slam between silences.

Figures (per detector, threshold 0.5 unless said, a frame is "speech" above it):
  recall    share of reference speech frames flagged
  FA        share of reference pause frames (noise only) flagged
  pauses    share of the 1.5 s pauses in which the detector sees >= 1.0 s without speech (so an
            utterance ends there at the default text_timeout_seconds)
  end p50   median delay from the reference end of speech to the detector's last speech frame
            followed by >= 300 ms without speech (what a segmenter with a 300 ms hangover sees)
  non-sp    share of non-speech frames flagged, and the longest flagged run (ms)
  CPU       ms of CPU per second of audio
"""

import math
import os
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

SR = 16000
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back when you have finished reading the report.",
    "We should leave early tomorrow morning to avoid the heavy traffic.",
    "She opened the window and listened to the birds singing outside.",
    "The meeting has been moved to Thursday afternoon at the usual place.",
    "He bought fresh bread, some cheese and a bottle of milk.",
    "Turn left at the next corner and walk straight for two blocks.",
    "The children played in the garden until the sun went down.",
    "Our train was late, so we missed the beginning of the concert.",
    "Remember to switch off the lights before you go to bed.",
]
VOICES = ["en-us", "en", "en+f3", "en-us+m3", "en+f2"]
GAP = 1.5


def read_wav(path):
    with wave.open(path) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    x = data.astype(np.float32) / 32768.0
    if rate != SR:
        t = np.arange(int(len(x) * SR / rate)) * rate / SR
        x = np.interp(t, np.arange(len(x)), x).astype(np.float32)
    return x


def utterances():
    out = []
    for name in sorted(f for f in os.listdir(LIBRIVOX) if f.endswith(".wav")):
        out.append(read_wav(os.path.join(LIBRIVOX, name)))
    with tempfile.TemporaryDirectory() as d:
        for i, s in enumerate(SENTENCES):
            p = os.path.join(d, f"{i}.wav")
            subprocess.run(
                ["espeak-ng", "-v", VOICES[i % 5], "-s", str(160 + 5 * (i % 4)), "-w", p, s],
                check=True,
            )
            out.append(read_wav(p) * 0.7)
    return out


def active(x, frame=160):
    """Reference speech activity per 10 ms frame of a clean recording."""
    n = len(x) // frame
    e = np.array([np.sqrt(np.mean(x[i * frame:(i + 1) * frame] ** 2)) + 1e-9 for i in range(n)])
    db = 20 * np.log10(e)
    a = db > db.max() - 35
    # bridge gaps under 250 ms
    last = None
    for i in range(n):
        if a[i]:
            if last is not None and 0 < i - last - 1 < 25:
                a[last + 1:i] = True
            last = i
    return a


def stream(utts):
    """Utterances with GAP s of pause before each and after the last; per-10-ms reference
    activity and each utterance's reference end (s)."""
    gap = np.zeros(int(GAP * SR), np.float32)
    parts, act, ends = [gap], [np.zeros(len(gap) // 160, bool)], []
    pos = len(gap)
    for u in utts:
        u = u[: len(u) // 160 * 160]
        a = active(u)
        parts += [u, gap]
        act += [a, np.zeros(len(gap) // 160, bool)]
        last = np.nonzero(a)[0].max()
        ends.append((pos + (last + 1) * 160) / SR)
        pos += len(u) + len(gap)
    return np.concatenate(parts), np.concatenate(act), ends


def noise(kind, n, rng):
    w = rng.standard_normal(n).astype(np.float32)
    if kind == "white":
        return w
    f = np.fft.rfft(w)
    k = np.arange(len(f)) + 1.0
    if kind == "pink":
        return np.fft.irfft(f / np.sqrt(k), n).astype(np.float32)
    if kind == "brown":
        return np.fft.irfft(f / k, n).astype(np.float32)
    if kind == "hum":
        t = np.arange(n) / SR
        h = sum(np.sin(2 * np.pi * 50 * m * t) / m for m in range(1, 8))
        return (h / np.std(h) + 0.5 * noise("pink", n, rng) / np.std(noise("pink", n, rng))).astype(np.float32)
    raise ValueError(kind)


def murmur(n, utts, rng):
    """Cafe murmur: eight voices of reversed speech at random offsets, summed."""
    out = np.zeros(n, np.float32)
    pool = np.concatenate([u[::-1] for u in utts])
    for _ in range(8):
        off = rng.integers(0, len(pool))
        rolled = np.roll(pool, -off)
        reps = int(np.ceil(n / len(rolled)))
        out += np.tile(rolled, reps)[:n]
    return out


def mix(x, act, kind, snr, utts, seed):
    rng = np.random.default_rng(seed)
    nz = murmur(len(x), utts, rng) if kind == "murmur" else noise(kind, len(x), rng)
    frames = np.repeat(act, 160)[: len(x)]
    ps = np.mean(x[: len(frames)][frames] ** 2)
    pn = np.mean(nz ** 2)
    nz *= math.sqrt(ps / (pn * 10 ** (snr / 10)))
    y = x + nz
    peak = np.abs(y).max()
    return (y / peak * 0.9 if peak > 0.99 else y).astype(np.float32)


class Silero:
    name = "silero v6"
    hop = 512

    def __init__(self, path):
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        self.s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])

    def probs(self, x):
        state = np.zeros((2, 1, 128), np.float32)
        ctx = np.zeros(64, np.float32)
        sr = np.array(SR, np.int64)
        out = []
        for i in range(len(x) // 512):
            chunk = x[i * 512:(i + 1) * 512]
            inp = np.concatenate([ctx, chunk])[None, :]
            p, state = self.s.run(None, {"input": inp, "state": state, "sr": sr})
            ctx = chunk[-64:]
            out.append(float(p[0][0]))
        return np.array(out)


class Earshot:
    name = "earshot"
    hop = 256

    def probs(self, x):
        import earshot

        d = earshot.Detector()
        return np.array([d.predict_f32(x[i * 256:(i + 1) * 256]) for i in range(len(x) // 256)])


def to10ms(p, hop, n):
    """Detector decisions resampled onto 10 ms frames."""
    idx = (np.arange(n) * 160 + 80) // hop
    return p[np.minimum(idx, len(p) - 1)]


def evaluate(det, x, act, ends, th):
    t0 = time.process_time()
    p = det.probs(x)
    cpu = (time.process_time() - t0) / (len(x) / SR) * 1000
    s = to10ms(p, det.hop, len(act)) > th
    recall = s[act].mean()
    # pause frames: the middle of each gap (outside the 250 ms around the speech)
    pause = ~act
    fa = s[pause].mean()
    found, delays = 0, []
    for e in ends:
        a = int(e * 100)
        b = min(a + int(GAP * 100), len(s))
        # longest run without speech inside the pause
        run, best = 0, 0
        for v in s[a:b]:
            run = 0 if v else run + 1
            best = max(best, run)
        found += best >= 100
        # detector's end: last speech frame before a 300 ms quiet run, searched from 1 s before
        i = max(a - 100, 0)
        last = None
        run = 0
        while i < b:
            if s[i]:
                last, run = i, 0
            else:
                run += 1
                if run >= 30 and last is not None:
                    break
            i += 1
        if last is not None:
            delays.append((last + 1 + 30) / 100 - e)
    return recall, fa, found / len(ends), np.median(delays) if delays else float("nan"), cpu


def nonspeech():
    t = np.arange(2 * SR) / SR
    sil = np.zeros(3 * SR, np.float32)
    rng = np.random.default_rng(7)
    tone_noise = np.concatenate([sil, 0.25 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(2 * SR)])
    beeps = np.concatenate([sil] + [np.concatenate([0.3 * np.sin(2 * np.pi * f * t[: SR // 5]), np.zeros(SR // 5)]) for f in (1000, 800, 1000, 1200, 600, 1000)])
    ph = 2 * np.pi * np.cumsum(np.linspace(200, 3000, 3 * SR)) / SR
    sweep = np.concatenate([sil, 0.3 * np.sin(ph), 0.3 * np.sin(ph[::-1])])
    chords = []
    for root in (220, 247, 262, 294, 330, 349):
        tt = np.arange(SR // 2) / SR
        c = sum(np.sin(2 * np.pi * root * r * tt) for r in (1, 1.25, 1.5)) * np.exp(-3 * tt)
        chords.append(0.15 * c)
    music = np.concatenate([sil] + chords)
    slam = rng.standard_normal(SR // 2) * np.exp(-np.arange(SR // 2) / (0.04 * SR))
    slam = np.convolve(slam, np.ones(8) / 8, "same") * 0.8
    door = np.concatenate([sil, slam, sil])
    white = np.concatenate([sil, 0.05 * rng.standard_normal(3 * SR)])
    return {
        "tone into noise": tone_noise, "beeps": beeps, "sweeps": sweep,
        "chords": music, "door slam": door, "white -26 dBFS": white,
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    onnx = os.environ.get("SILERO_ONNX") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
        "fireworksstt/models/silero-vad/silero_vad.onnx")
    dets = [Silero(onnx), Earshot()]
    utts = utterances()
    x, act, ends = stream(utts)
    print(f"speech set: {len(utts)} utterances, {len(x) / SR:.1f} s, {len(ends)} pauses of {GAP} s")
    conds = [("clean", None, None)] + [(f"{k} {snr} dB", k, snr) for k in ("white", "pink", "brown", "hum", "murmur") for snr in (20, 10, 5, 0)]
    ths = [float(t) for t in os.environ.get("VAD_THRESHOLDS", "0.5").split(",")]
    print("| condition | detector | threshold | recall | FA | pauses found | end p50 (ms) | CPU ms/s |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {}
    for name, kind, snr in conds:
        y = x if kind is None else mix(x, act, kind, snr, utts, seed=hash(name) & 0xFFFF)
        for d in dets:
            for th in ths:
                r, fa, pf, ed, cpu = evaluate(d, y, act, ends, th)
                totals.setdefault((d.name, th), []).append((r, fa, pf, ed, cpu))
                print(f"| {name} | {d.name} | {th} | {r:.3f} | {fa:.3f} | {pf:.2f} | {ed * 1000:.0f} | {cpu:.2f} |")
    print()
    print("| detector | threshold | mean recall | mean FA | pauses found | median end delay (ms) | CPU ms/s |")
    print("|---|---|---|---|---|---|---|")
    for (n, th), v in totals.items():
        a = np.array(v)
        print(f"| {n} | {th} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.2f} | {np.nanmedian(a[:, 3]) * 1000:.0f} | {a[:, 4].mean():.2f} |")
    print()
    print("| non-speech | detector | frames flagged | longest flagged run (ms) |")
    print("|---|---|---|---|")
    for name, y in nonspeech().items():
        y = y.astype(np.float32)
        for d in dets:
            p = d.probs(y) > 0.5
            run, best = 0, 0
            for v in p:
                run = run + 1 if v else 0
                best = max(best, run)
            print(f"| {name} | {d.name} | {p.mean():.3f} | {best * d.hop * 1000 // SR} |")


if __name__ == "__main__":
    sys.exit(main())
