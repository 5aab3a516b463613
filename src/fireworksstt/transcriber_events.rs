// SPDX-License-Identifier: MPL-2.0
//! The events of the transcriber conventions that carry data, built in one place: the upstream
//! `rstranscribe/new-item` event sent for every text buffer pushed (the dubbing chain's voice
//! cloner reads them), and the `LanguageCode` tag pushed downstream when the language becomes
//! known or changes.

/// Upstream custom event announcing one item of text.
pub const NEW_ITEM_EVENT: &str = "rstranscribe/new-item";

/// `rstranscribe/new-item` with the fields `deepgramtranscriber` and `speechmaticstranscriber`
/// send: `speaker` (string or NULL: the Fireworks streaming API has no diarization, so always
/// NULL), `content` (the buffer's text), `running-time` and `duration`. The caller gives the
/// running time of the buffer's PTS in the input segment: the event travels upstream, where
/// that is the audio's running time (the peers use their output segment, which differs only by
/// `lateness`).
pub fn new_item(
    content: &str,
    running_time: gst::ClockTime,
    duration: gst::ClockTime,
) -> gst::Event {
    let structure = gst::Structure::builder(NEW_ITEM_EVENT)
        .field("speaker", None::<String>)
        .field("content", content.trim_end())
        .field("running-time", running_time)
        .field("duration", duration)
        .build();
    gst::event::CustomUpstream::new(structure)
}

/// A stream tag event holding `language` as `LanguageCode` (an ISO 639 code, as the service and
/// `language-code` give it).
pub fn language_tag(language: &str) -> gst::Event {
    let mut tags = gst::TagList::new();
    tags.get_mut()
        .expect("new tag list is writable")
        .add::<gst::tags::LanguageCode>(&language, gst::TagMergeMode::Replace);
    gst::event::Tag::new(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_item_has_the_conventional_fields() {
        gst::init().unwrap();
        let event = new_item(
            "hello\n",
            gst::ClockTime::from_mseconds(1500),
            gst::ClockTime::from_mseconds(300),
        );
        let s = event.structure().unwrap();
        assert_eq!(s.name(), NEW_ITEM_EVENT);
        assert_eq!(s.get::<Option<String>>("speaker").unwrap(), None);
        assert_eq!(s.get::<String>("content").unwrap(), "hello");
        assert_eq!(
            s.get::<gst::ClockTime>("running-time").unwrap(),
            gst::ClockTime::from_mseconds(1500)
        );
        assert_eq!(event.type_(), gst::EventType::CustomUpstream);
    }

    #[test]
    fn language_tag_carries_the_code() {
        gst::init().unwrap();
        let event = language_tag("de");
        let gst::EventView::Tag(tag) = event.view() else {
            panic!("{event:?}")
        };
        let code = tag.tag().get::<gst::tags::LanguageCode>().unwrap();
        assert_eq!(code.get(), "de");
    }
}
