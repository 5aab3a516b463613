// SPDX-License-Identifier: MPL-2.0
//! The element as GStreamer sees it: metadata, properties, caps, events and queries, mostly
//! through gst-check's Harness and without any network.

use std::time::Duration;

use crate::common::*;
use gst::prelude::*;

fn element() -> gst::Element {
    init();
    gst::ElementFactory::make("fireworksstt").build().unwrap()
}

#[test]
fn metadata_and_pads_follow_the_transcriber_conventions() {
    init();
    let factory = gst::ElementFactory::find("fireworksstt").unwrap();
    assert_eq!(factory.metadata("klass"), Some("Audio/Text/Filter"));
    // The transcriber convention's "Transcriber", with the service named.
    assert_eq!(
        factory.metadata("long-name"),
        Some("Fireworks AI Transcriber")
    );
    let author = factory.metadata("author").unwrap();
    assert!(author.contains("gst-plugin-fireworks") && author.contains("README"));
    // What gst-inspect-1.0 shows as the plugin's origin is a real page, not a placeholder.
    let plugin = factory.plugin().unwrap();
    let origin = plugin.origin();
    assert!(origin.starts_with("https://"), "{origin}");
    assert!(
        !origin.contains("example") && !origin.contains(".invalid"),
        "{origin}"
    );
    assert!(factory
        .metadata("description")
        .unwrap()
        .contains("transcriberbin"));
    let stt = element();
    let sink_caps = stt.static_pad("sink").unwrap().pad_template_caps();
    assert!(sink_caps.can_intersect(&audio_caps()));
    assert!(!sink_caps.can_intersect(
        &gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 44_100i32)
            .field("channels", 1i32)
            .build()
    ));
    let src_caps = stt.static_pad("src").unwrap().pad_template_caps();
    assert_eq!(src_caps.to_string(), "text/x-raw, format=(string)utf8");
}

#[test]
fn properties_have_documented_defaults() {
    let stt = element();
    // Unset: the model picks the endpoint (the blurb names both).
    assert_eq!(stt.property::<Option<String>>("base-url"), None);
    let blurb = stt
        .find_property("base-url")
        .unwrap()
        .blurb()
        .unwrap()
        .to_string();
    assert!(
        blurb.contains("wss://audio-streaming-v2.api.fireworks.ai/v1")
            && blurb.contains("fireworks-asr-v2")
            && blurb.contains("wss://audio-streaming.us-virginia-1.direct.fireworks.ai/v1"),
        "{blurb}"
    );
    assert!(stt.property::<gst::Array>("keyterms").is_empty());
    assert_eq!(stt.property::<Option<String>>("api-key"), None);
    assert_eq!(stt.property::<Option<String>>("model"), None);
    assert_eq!(stt.property::<Option<String>>("language-code"), None);
    assert_eq!(stt.property::<f64>("text-timeout-seconds"), 1.0);
    assert_eq!(stt.property::<String>("response-format"), "verbose_json");
    assert_eq!(stt.property::<u32>("chunk-duration"), 50);
    assert_eq!(stt.property::<u32>("max-retries"), 3);
    assert_eq!(stt.property::<u32>("retry-interval"), 2000);
    assert_eq!(stt.property::<u32>("connect-timeout"), 10_000);
    assert_eq!(stt.property::<u32>("drain-timeout"), 5000);
    assert_eq!(stt.property::<u32>("lateness"), 0);
    assert_eq!(stt.property::<u32>("max-observed-delay"), 0);
    assert!(stt.property::<bool>("interim-results"));
    assert_eq!(stt.property::<u32>("usage-interval"), 10_000);
    let flags = stt.property_value("timestamp-granularities");
    assert_eq!(
        gst::glib::FlagsValue::from_value(&flags).map(|(_, v)| v.len()),
        Some(2)
    );
    let mode = stt.property_value("output-mode");
    assert_eq!(
        gst::glib::EnumValue::from_value(&mode).unwrap().1.nick(),
        "words"
    );
}

#[test]
fn api_key_is_never_readable_in_clear() {
    let stt = element();
    stt.set_property("api-key", "fw-super-secret");
    let read = stt.property::<Option<String>>("api-key").unwrap();
    assert!(!read.contains("fw-super-secret"));
    assert_eq!(read, "*****");
}

#[test]
fn out_of_range_values_are_refused_by_the_property_specs() {
    let stt = element();
    let uint_range = |name: &str| {
        let pspec = stt.find_property(name).unwrap();
        let spec = pspec.downcast_ref::<gst::glib::ParamSpecUInt>().unwrap();
        (spec.minimum(), spec.maximum(), spec.default_value())
    };
    let double_range = |name: &str| {
        let pspec = stt.find_property(name).unwrap();
        let spec = pspec.downcast_ref::<gst::glib::ParamSpecDouble>().unwrap();
        (spec.minimum(), spec.maximum(), spec.default_value())
    };
    assert_eq!(uint_range("chunk-duration"), (50, 400, 50));
    assert_eq!(double_range("text-timeout-seconds"), (1.0, 29.0, 1.0));
    assert_eq!(uint_range("connect-timeout").0, 100);
    assert_eq!(uint_range("drain-timeout").0, 100);
    assert_eq!(double_range("temperature").0, 0.0);
    assert!(!stt
        .find_property("max-observed-delay")
        .unwrap()
        .flags()
        .contains(gst::glib::ParamFlags::WRITABLE));
    stt.set_property("chunk-duration", 200u32);
    assert_eq!(stt.property::<u32>("chunk-duration"), 200);
}

#[test]
fn eos_without_any_data_reaches_downstream_without_network() {
    init();
    let mut h = gst_check::Harness::new("fireworksstt");
    // No key, an unreachable URL: nothing may be needed to pass EOS on.
    h.element()
        .unwrap()
        .set_property("base-url", "wss://unreachable.invalid/v1");
    h.set_src_caps(audio_caps());
    assert!(h.push_event(gst::event::Eos::new()));
    loop {
        let event = h.pull_event().expect("EOS comes out");
        if event.type_() == gst::EventType::Eos {
            break;
        }
    }
}

#[test]
fn wrong_caps_are_not_negotiated() {
    init();
    let mut h = gst_check::Harness::new("fireworksstt");
    h.set_src_caps_str("audio/x-raw, format=S16LE, rate=44100, channels=2, layout=interleaved");
    let buffer = audio_buffer(&[0i16; 1600], 0);
    assert_eq!(h.push(buffer), Err(gst::FlowError::NotNegotiated));
}

#[test]
fn latency_query_in_paused_needs_no_network_and_adds_latency_when_live() {
    // What transcriberbin does: a live fakesrc linked in, PAUSED, a LATENCY query.
    init();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("fakesrc")
        .property("is-live", true)
        .build()
        .unwrap();
    let stt = element();
    stt.set_property("base-url", "wss://unreachable.invalid/v1");
    stt.set_property("latency", 3000u32);
    pipeline.add_many([&src, &stt]).unwrap();
    src.link(&stt).unwrap();
    assert_eq!(
        pipeline.set_state(gst::State::Paused).unwrap(),
        gst::StateChangeSuccess::NoPreroll
    );
    let mut q = gst::query::Latency::new();
    assert!(stt.static_pad("src").unwrap().query(&mut q));
    let (live, min, _max) = q.result();
    assert!(live);
    assert_eq!(min, gst::ClockTime::from_mseconds(3000));
    pipeline.set_state(gst::State::Null).unwrap();

    // Not live: upstream's answer passes through.
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("fakesrc").build().unwrap();
    let stt = element();
    pipeline.add_many([&src, &stt]).unwrap();
    src.link(&stt).unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let mut q = gst::query::Latency::new();
    assert!(stt.static_pad("src").unwrap().query(&mut q));
    assert!(!q.result().0);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn segment_is_forwarded_with_lateness_added_to_the_base() {
    init();
    let mut h = gst_check::Harness::new("fireworksstt");
    h.element().unwrap().set_property("lateness", 250u32);
    h.set_src_caps(audio_caps());
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_seconds(2));
    segment.set_base(gst::ClockTime::from_seconds(1));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    assert!(h.push_event(gst::event::Eos::new()));
    let mut seen = None;
    // Output goes out from the element's own task: wait for it, up to EOS.
    while let Ok(event) = h.pull_event() {
        if event.type_() == gst::EventType::Eos {
            break;
        }
        if let gst::EventView::Segment(s) = event.view() {
            seen = Some(
                s.segment()
                    .downcast_ref::<gst::ClockTime>()
                    .unwrap()
                    .clone(),
            );
        }
    }
    let seen = seen.expect("segment forwarded");
    assert_eq!(seen.start(), Some(gst::ClockTime::from_seconds(2)));
    assert_eq!(seen.base(), Some(gst::ClockTime::from_mseconds(1250)));
}

#[test]
fn flush_drops_the_session_and_the_next_buffer_reconnects() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    init();
    let mut h = gst_check::Harness::new("fireworksstt");
    let stt = h.element().unwrap();
    point_at(&stt, &server);
    h.set_src_caps(audio_caps());
    let first = synthesize_utterances(&["before flush"]).unwrap();
    for chunk in first.samples.chunks(1600).take(10) {
        h.push(audio_buffer(chunk, 0)).unwrap();
    }
    assert!(server.wait_for_connections(1, Duration::from_secs(5)));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.set_src_caps(audio_caps());
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::ZERO);
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let second = synthesize_utterances(&["after flush"]).unwrap();
    let mut pts = 0;
    for chunk in second.samples.chunks(1600) {
        h.push(audio_buffer(chunk, pts)).unwrap();
        pts += chunk.len() as u64 * 62_500;
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let words = pull_until_eos(&mut h)
        .into_iter()
        .map(|w| w.0)
        .collect::<Vec<String>>();
    assert_eq!(words, ["after", "flush"]);
    assert!(server.wait_for_connections(2, Duration::from_secs(5)));
    let records = server.connections();
    assert_eq!(
        records.len(),
        2,
        "flush aborts the first session, the next buffer opens another"
    );
}

#[test]
fn keyterms_can_be_set_from_a_launch_line() {
    init();
    let stt = gst::parse::launch(r#"fireworksstt keyterms="<GStreamer, \"Fireworks AI\">""#)
        .expect("a launch line with keyterms");
    let terms: Vec<String> = stt
        .property::<gst::Array>("keyterms")
        .iter()
        .map(|t| t.get::<String>().unwrap())
        .collect();
    assert_eq!(terms, ["GStreamer", "Fireworks AI"]);
}
