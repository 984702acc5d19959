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
    let mut open: Option<(HeadingLevel, usize, ())> = None;
    for (event, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. })
                if matches!(level, HeadingLevel::H1 | HeadingLevel::H2) =>
            {
                open = Some((level, range.start, ()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, start, _)) = open.take() {
                    let name = heading_name(&text[start..range.end]);
                    headings.push((level, start..range.end, name));
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

/// A heading's name as written: its first line without the `#` marks around it (an ATX
/// heading) or the underline (a setext one), so `The \`store\` layer` keeps its backticks
/// and a section keeps its name through an edit.
fn heading_name(source: &str) -> String {
    let line = source.lines().next().unwrap_or("").trim();
    if !line.starts_with('#') {
        return line.to_string();
    }
    let line = line.trim_start_matches('#').trim();
    // A closing sequence of `#`s, after a space, is not part of the name.
    match line.trim_end_matches('#') {
        rest if rest.len() < line.len() && (rest.is_empty() || rest.ends_with(' ')) => {
            rest.trim_end().to_string()
        }
        _ => line.to_string(),
    }
}

/// Whether a title and sections come back unchanged from [`render`] through [`parse`]: a
/// section whose text holds a line that reads as a heading would not.
pub fn round_trips(title: &str, sections: &[(String, String)]) -> Result<(), String> {
    let back = parse(&render(title, sections));
    for (name, text) in sections {
        let again = back.sections.iter().find(|(n, _)| n == name);
        if again.is_none_or(|(_, t)| t.trim_end() != text.trim_end()) {
            return Err(name.clone());
        }
    }
    if back.sections.len() != sections.len() {
        return Err(back
            .sections
            .iter()
            .find(|(n, _)| !sections.iter().any(|(m, _)| m == n))
            .map(|(n, _)| n.clone())
            .unwrap_or_default());
    }
    Ok(())
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
    fn a_text_holding_a_heading_line_does_not_round_trip() {
        let fine = sections(&[("A", "text\n```\n## in code\n```\n")]);
        assert_eq!(round_trips("T", &fine), Ok(()));
        let split = sections(&[("A", "text\n## Not a section\nmore\n"), ("B", "b")]);
        assert_eq!(round_trips("T", &split), Err("A".to_string()));
        let setext = sections(&[("A", "text\n---\n")]);
        assert!(round_trips("T", &setext).is_err());
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
        assert_eq!(
            parsed.sections,
            sections(&[("The `store` layer", "text\n")])
        );
        let parsed = parse("## Risks ##\n\nnone\n## C# notes\n\nx\n");
        assert_eq!(
            parsed.sections,
            sections(&[("Risks", "none\n"), ("C# notes", "x\n")])
        );
    }
}
