//! A proposal as one Markdown file: `# Title`, then one `## Section` heading per section.
//!
//! Headings are found by a CommonMark parser (pulldown-cmark), so a `## line` inside a fenced
//! code block stays text, and setext headings count as headings. Each section's text is its
//! source exactly as written between its heading and the next, so Markdown round-trips.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// A proposal read from Markdown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    /// The text of a `# Title` heading before the first section, if any.
    pub title: Option<String>,
    /// Text before the first `## Section` (after the title), trimmed; empty if none.
    pub preamble: String,
    /// Each `## Section`: its name and text.
    pub sections: Vec<(String, String)>,
}

/// The section a preamble becomes when a file has text before its first section.
pub const PREAMBLE_SECTION: &str = "Introduction";

/// Reads `# Title` and `## Section` blocks from Markdown.
pub fn parse(text: &str) -> Document {
    // Every level-1 and level-2 heading: where its source starts and ends, and its text.
    let mut headings: Vec<(HeadingLevel, std::ops::Range<usize>, String)> = Vec::new();
    let mut open: Option<(HeadingLevel, usize, String)> = None;
    for (event, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. })
                if matches!(level, HeadingLevel::H1 | HeadingLevel::H2) =>
            {
                open = Some((level, range.start, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, start, name)) = open.take() {
                    headings.push((level, start..range.end, name.trim().to_string()));
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, name)) = open.as_mut() {
                    name.push_str(&t);
                }
            }
            _ => {}
        }
    }
    let mut document = Document::default();
    let first_section = headings
        .iter()
        .position(|(level, _, _)| *level == HeadingLevel::H2);
    let mut body_start = 0;
    // A title is a level-1 heading before any section; later level-1 headings are text.
    if let Some((_, range, name)) = headings
        .iter()
        .take(first_section.unwrap_or(headings.len()))
        .find(|(level, _, _)| *level == HeadingLevel::H1)
    {
        document.title = Some(name.clone());
        body_start = range.end;
    }
    let sections: Vec<&(HeadingLevel, std::ops::Range<usize>, String)> = headings
        .iter()
        .filter(|(level, _, _)| *level == HeadingLevel::H2)
        .collect();
    let preamble_end = sections.first().map_or(text.len(), |(_, r, _)| r.start);
    let preamble_start = if document.title.is_some() {
        body_start
    } else {
        0
    };
    document.preamble = tidy(&text[preamble_start.min(preamble_end)..preamble_end]);
    for (i, (_, range, name)) in sections.iter().enumerate() {
        let end = sections.get(i + 1).map_or(text.len(), |(_, r, _)| r.start);
        document
            .sections
            .push((name.clone(), tidy(&text[range.end..end])));
    }
    document
}

/// A section's text without the blank lines around it, ending in one newline.
fn tidy(text: &str) -> String {
    let trimmed = text.trim_matches(|c| c == '\n' || c == '\r');
    if trimmed.trim().is_empty() {
        String::new()
    } else {
        format!("{}\n", trimmed.trim_end())
    }
}

/// Renders a title and sections as Markdown that [`parse`] reads back.
pub fn render(title: &str, sections: &[(String, String)]) -> String {
    let mut out = format!("# {title}\n");
    for (name, text) in sections {
        out.push_str(&format!("\n## {name}\n\n{text}"));
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn title_and_sections_round_trip() {
        let given = sections(&[
            ("Summary", "Use redb.\n"),
            ("Design", "One file.\n\nTwo paragraphs.\n"),
            ("Empty", ""),
        ]);
        let parsed = parse(&render("Storage", &given));
        assert_eq!(parsed.title.as_deref(), Some("Storage"));
        assert_eq!(parsed.sections, given);
        assert_eq!(parsed.preamble, "");
    }

    #[test]
    fn text_before_the_first_section_is_kept_as_a_preamble() {
        let parsed = parse("# T\n\nWhy this matters.\n\n## Summary\n\nx\n");
        assert_eq!(parsed.preamble, "Why this matters.\n");
        let untitled = parse("Some context.\n## A\nb\n");
        assert_eq!(untitled.title, None);
        assert_eq!(untitled.preamble, "Some context.\n");
        assert_eq!(untitled.sections, sections(&[("A", "b\n")]));
    }

    #[test]
    fn a_heading_inside_a_code_block_is_text() {
        let text = "## Design\n\n```sh\n## not a heading\necho hi\n```\n\n## Risks\n\nnone\n";
        let parsed = parse(text);
        assert_eq!(
            parsed.sections,
            sections(&[
                ("Design", "```sh\n## not a heading\necho hi\n```\n"),
                ("Risks", "none\n"),
            ])
        );
    }

    #[test]
    fn setext_and_inline_markup_in_headings() {
        let parsed = parse("Title\n=====\n\nThe `store` layer\n-----\n\ntext\n");
        assert_eq!(parsed.title.as_deref(), Some("Title"));
        assert_eq!(parsed.sections, sections(&[("The store layer", "text\n")]));
    }
}
