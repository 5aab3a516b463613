# SPDX-License-Identifier: MPL-2.0
"""The reference client for `cargo bench --bench cpu`: LiveKit's `livekit-plugins-fireworksai`
STT, driven through livekit-agents' `STT.stream()` with the same audio as fireworksstt, against
the same local test server.

    python reference_client.py --audio FILE.s16le --url ws://127.0.0.1:PORT/v1 [--frame-ms 10]
                               [--realtime]

Set-up (once): python3 -m venv VENV && VENV/bin/pip install livekit-plugins-fireworksai

The minimal way to drive it: an aiohttp session handed to `fireworksai.STT(http_session=…)`
(so no livekit job context is needed), `stt.stream()`, `push_frame(rtc.AudioFrame)` for each
16 kHz mono frame, `end_input()`, and `async for event in stream` until it ends. Frames are
pushed one per event-loop turn, as frames from a LiveKit room's AudioStream arrive.

Prints one line `RESULT {json}` with the CPU (getrusage) of the streaming part only: the audio
frames are built before the clock starts, and the imports are not counted (the benchmark's
driver takes the whole process's CPU by wait4 as well).
"""

import argparse
import asyncio
import json
import resource
import time

import aiohttp
from livekit import rtc
from livekit.agents import stt as agents_stt
from livekit.plugins import fireworksai


def fnv1a(texts):
    h = 0xCBF29CE484222325
    data = "\n".join(texts).encode()
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--frame-ms", type=int, default=10)
    # Push each frame when its audio would have been heard (a LiveKit room's audio stream),
    # instead of as fast as the event loop turns.
    ap.add_argument("--realtime", action="store_true")
    a = ap.parse_args()

    with open(a.audio, "rb") as f:
        data = f.read()
    samples = 16 * a.frame_ms
    step = samples * 2
    frames = [
        rtc.AudioFrame(data[off : off + step], 16000, 1, samples)
        for off in range(0, len(data) - step + 1, step)
    ]

    counts = {}
    finals = []
    async with aiohttp.ClientSession() as session:
        stt = fireworksai.STT(
            api_key="bench-key",
            base_url=a.url,
            http_session=session,
            # What fireworksstt asks for by default, so the server sends the same messages.
            timestamp_granularities=["word", "segment"],
        )
        u0, s0 = cpu()
        w0 = time.monotonic()
        stream = stt.stream()

        async def feed():
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, frame in enumerate(frames):
                if a.realtime:
                    due = start + i * a.frame_ms / 1000.0
                    await asyncio.sleep(max(0.0, due - loop.time()))
                else:
                    await asyncio.sleep(0)
                stream.push_frame(frame)
            stream.end_input()

        feeder = asyncio.create_task(feed())
        async for ev in stream:
            counts[ev.type.name] = counts.get(ev.type.name, 0) + 1
            if ev.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(ev.alternatives[0].text)
        await feeder
        await stream.aclose()
        w1 = time.monotonic()
        u1, s1 = cpu()

    print(
        "RESULT "
        + json.dumps(
            {
                "cpu_user": u1 - u0,
                "cpu_sys": s1 - s0,
                "wall": w1 - w0,
                "audio_seconds": len(frames) * samples / 16000.0,
                "frames": len(frames),
                "finals": len(finals),
                "hash": "%016x" % fnv1a(finals),
                "events": counts,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
