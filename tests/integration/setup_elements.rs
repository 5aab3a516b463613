// SPDX-License-Identifier: MPL-2.0
//! Set-up installs every GStreamer element the project uses.
//!
//! `scripts/gstreamer-elements.txt` maps each element used by the tests, examples and benchmarks
//! to the Debian package (or build script) that provides it; `scripts/setup.sh` installs those
//! packages. These tests keep that list complete (every element named in a pipeline description
//! or an `ElementFactory::make` call in `tests/`, `examples/` and `benches/` is listed) and true
//! (every Debian-packaged element in it is installed), and name the package to install otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ELEMENTS_FILE: &str = "scripts/gstreamer-elements.txt";

/// Marks elements built by `scripts/build-transcriberbin-plugins.sh` rather than packaged;
/// `tests/integration/transcriberbin.rs` checks those, with the plugin path it needs.
const BUILT_FROM_SOURCE: &str = "build-transcriberbin-plugins";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// element → package, from the list.
fn listed_elements() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join(ELEMENTS_FILE))
        .unwrap_or_else(|e| panic!("{ELEMENTS_FILE}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let element = fields.next().unwrap().to_owned();
            let package = fields
                .next()
                .unwrap_or_else(|| panic!("{ELEMENTS_FILE}: no package for {element}"))
                .to_owned();
            (element, package)
        })
        .collect()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A token that can only be an element factory name (not caps, a property, a tee branch
/// reference like `t.`, a `{placeholder}` or a word of a parenthesised label).
fn as_element_name(token: &str) -> Option<&str> {
    if token.starts_with('(') {
        return None;
    }
    let token = token.trim_matches(|c: char| "\"\\),;`'".contains(c));
    let mut chars = token.chars();
    let first = chars.next()?;
    (first.is_ascii_lowercase()
        && token.len() > 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
    .then_some(token)
}

/// Element names in one line of source: the elements on both sides of every ` ! ` link (the one
/// before a link may be followed by `key=value` properties), and `ElementFactory::make("…")`.
fn elements_in_line(line: &str, found: &mut BTreeSet<String>) {
    let parts: Vec<&str> = line.split(" ! ").collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            if let Some(name) = part.split_whitespace().next().and_then(as_element_name) {
                found.insert(name.to_owned());
            }
        }
        if i + 1 < parts.len() {
            let before_link = part
                .split_whitespace()
                .rev()
                .find(|token| !token.contains('='));
            if let Some(name) = before_link.and_then(as_element_name) {
                found.insert(name.to_owned());
            }
        }
    }
    for call in line.split("ElementFactory::make(\"").skip(1) {
        if let Some(name) = call.split('"').next().and_then(as_element_name) {
            found.insert(name.to_owned());
        }
    }
}

fn elements_used_by_the_project() -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    for dir in ["tests", "examples", "benches"] {
        rust_sources(&root().join(dir), &mut files);
    }
    let mut used = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut found = BTreeSet::new();
        for line in text.lines() {
            elements_in_line(line, &mut found);
        }
        for name in found {
            used.entry(name)
                .or_insert_with(|| file.strip_prefix(root()).unwrap().to_owned());
        }
    }
    used
}

#[test]
fn every_element_the_tests_and_examples_use_is_listed_with_its_package() {
    let listed = listed_elements();
    let used = elements_used_by_the_project();
    // The scan itself must see the elements we know the examples use.
    for known in ["textoverlay", "srtenc", "wavparse", "transcriberbin"] {
        assert!(
            used.contains_key(known),
            "the scan missed {known}: {used:?}"
        );
    }
    let unlisted: Vec<String> = used
        .into_iter()
        .filter(|(name, _)| name != "fireworksstt" && !listed.contains_key(name))
        .map(|(name, file)| format!("{name} (used in {})", file.display()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "elements used but not in {ELEMENTS_FILE}, so set-up may not install them: {unlisted:?}; \
         add each with the Debian package that provides it (`dpkg -S` on its plugin library)"
    );
}

#[test]
fn every_listed_packaged_element_is_installed() {
    gst::init().unwrap();
    let missing: Vec<String> = listed_elements()
        .into_iter()
        .filter(|(_, package)| package != BUILT_FROM_SOURCE)
        .filter(|(element, _)| gst::ElementFactory::find(element).is_none())
        .map(|(element, package)| format!("{element}: apt-get install {package}"))
        .collect();
    assert!(
        missing.is_empty(),
        "GStreamer elements missing (run scripts/setup.sh, or install the package named): \
         {missing:?}"
    );
}

#[test]
fn the_scan_finds_elements_on_both_sides_of_a_link() {
    let mut found = BTreeSet::new();
    elements_in_line(
        r#"  "filesrc location={} ! wavparse ! audio/x-raw,rate=16000 ! queue max-size-time=0 ! \"#,
        &mut found,
    );
    elements_in_line(
        r#"" t. ! queue ! srtenc ! filesink name=srt" gst::ElementFactory::make("fakesink")"#,
        &mut found,
    );
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(
        found,
        ["fakesink", "filesink", "filesrc", "queue", "srtenc", "wavparse"]
    );
}
