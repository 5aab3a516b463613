#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Reads what fireworksstt says from a Python application (PyGObject).

usage: read-transcripts.py AUDIO [--base-url URL] [--language CODE] [--keyterm TERM]...

Transcribes an audio file (any format GStreamer decodes) with

    filesrc ! decodebin ! audioconvert ! audioresample ! fireworksstt ! fakesink

and prints, one tab-separated line each on stdout:

    speech-started  UTTERANCE
    interim         UTTERANCE  TEXT
    final           UTTERANCE  TEXT  END-TO-FINAL-MS
    speech-ended    UTTERANCE
    word            TEXT  utterance=N  final=True|False  probability=P  language=L
    usage           TOTAL-SECONDS

The transcript, speech and usage lines come from the bus (element messages
fireworksstt/transcript, fireworksstt/speech-started, fireworksstt/speech-ended,
fireworksstt/usage); the word lines come from a pad probe on fireworksstt's src pad, which reads
the FireworksItemMeta every word buffer carries. Warnings go to stderr; an ERROR is printed on
stderr with the kind from its details structure, and the exit status is then 1.

Needs the Debian packages python3-gi and gir1.2-gstreamer-1.0 (scripts/setup.sh installs them;
they belong to the system Python, /usr/bin/python3), and fireworksstt where GStreamer finds it:
GST_PLUGIN_PATH=target/debug after `cargo build`. The API key comes from FIREWORKS_API_KEY; with
--base-url pointing at the bundled local server none is needed.
"""

import argparse
import os
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

# Give up if nothing at all happens on the bus for this long (fireworksstt bounds its own waits).
NO_PROGRESS_SECONDS = 120


# The probe runs on fireworksstt's src pad thread, the bus is read on the main thread: one lock
# keeps their lines whole.
_output = threading.Lock()


def emit(*fields):
    """Writes one tab-separated line on stdout."""
    with _output:
        sys.stdout.write("\t".join(str(f) for f in fields) + "\n")
        sys.stdout.flush()


def word_probe(pad, info):
    """Prints each word buffer with what its FireworksItemMeta says."""
    buffer = info.get_buffer()
    meta = buffer.get_custom_meta("FireworksItemMeta") if buffer else None
    if meta is not None:
        s = meta.get_structure()
        text = buffer.extract_dup(0, buffer.get_size()).decode("utf-8").strip()
        fields = [
            "word",
            text,
            "utterance=%d" % s.get_uint64("utterance")[1],
            "final=%s" % s.get_boolean("final")[1],
        ]
        has_p, probability = s.get_double("probability")
        if has_p:
            fields.append("probability=%g" % probability)
        language = s.get_string("language")
        if language is not None:
            fields.append("language=%s" % language)
        emit(*fields)
    return Gst.PadProbeReturn.OK


def on_element_message(s):
    name = s.get_name()
    if name == "fireworksstt/transcript":
        utterance = s.get_uint64("utterance")[1]
        text = s.get_string("text")
        if s.get_boolean("final")[1]:
            # End of speech to final, when the running times are known (gint64 nanoseconds).
            has_delay, delay = s.get_int64("end-to-final")
            delay_ms = "%d" % (delay // 1_000_000) if has_delay else "-"
            emit("final", utterance, text, delay_ms)
        else:
            emit("interim", utterance, text)
    elif name in ("fireworksstt/speech-started", "fireworksstt/speech-ended"):
        kind = name.split("/", 1)[1]
        emit(kind, s.get_uint64("utterance")[1])
    elif name == "fireworksstt/usage":
        total = s.get_value("total-audio-duration")
        emit("usage", "%.2f" % (total / Gst.SECOND))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", help="audio file to transcribe")
    parser.add_argument("--base-url", help="service endpoint, e.g. ws://127.0.0.1:8765/v1")
    parser.add_argument("--language", help="spoken language, e.g. en")
    parser.add_argument("--keyterm", action="append", default=[], help="a term to favour")
    args = parser.parse_args()

    Gst.init(None)
    if Gst.ElementFactory.find("fireworksstt") is None:
        print(
            "error: GStreamer has no fireworksstt element: build it (cargo build) and set "
            "GST_PLUGIN_PATH to the directory holding libgstfireworks.so",
            file=sys.stderr,
        )
        return 1
    if not os.path.isfile(args.audio):
        print("error: %s: no such file" % args.audio, file=sys.stderr)
        return 1

    pipeline = Gst.parse_launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! "
        "fireworksstt name=stt ! fakesink"
    )
    pipeline.get_by_name("src").set_property("location", args.audio)
    stt = pipeline.get_by_name("stt")
    if args.base_url:
        stt.set_property("base-url", args.base_url)
        if not os.environ.get("FIREWORKS_API_KEY"):
            stt.set_property("api-key", "local")  # the local server takes any key
    if args.language:
        stt.set_property("language-code", args.language)
    if args.keyterm:
        # A GstValueArray of strings, from its text form: Gst.ValueArray cannot be built from
        # a list without gst-python's overrides (Debian package python3-gst-1.0).
        quoted = ('"%s"' % t.replace("\\", "\\\\").replace('"', '\\"') for t in args.keyterm)
        Gst.util_set_object_arg(stt, "keyterms", "<%s>" % ", ".join(quoted))
    stt.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, word_probe)

    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    status = 0
    while True:
        msg = bus.timed_pop(NO_PROGRESS_SECONDS * Gst.SECOND)
        if msg is None:
            print("error: nothing happened for %d s" % NO_PROGRESS_SECONDS, file=sys.stderr)
            status = 1
            break
        if msg.type == Gst.MessageType.ELEMENT and msg.get_structure() is not None:
            on_element_message(msg.get_structure())
        elif msg.type == Gst.MessageType.WARNING:
            error, _debug = msg.parse_warning()
            print("warning: %s" % error.message, file=sys.stderr)
        elif msg.type == Gst.MessageType.ERROR:
            error, _debug = msg.parse_error()
            details = msg.parse_error_details()
            kind = details.get_string("kind") if details is not None else None
            print("error: %s (kind=%s)" % (error.message, kind), file=sys.stderr)
            status = 1
            break
        elif msg.type == Gst.MessageType.EOS:
            break
    pipeline.set_state(Gst.State.NULL)
    return status


if __name__ == "__main__":
    sys.exit(main())
