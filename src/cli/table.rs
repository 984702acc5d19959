//! Tables for lists: a header row, columns padded by display width (so CJK titles and
//! emoji line up), one column that gives way on a narrow terminal, and whole cells when
//! the output is a pipe or a file (a script, `grep`, `less -S`).

use anyhow::Result;
use unicode_width::UnicodeWidthStr;

use super::{Out, Tone};

/// A cell: its text and the tone it is coloured in.
pub struct Cell {
    text: String,
    tone: Option<Tone>,
}

impl Cell {
    /// Plain text (made printable: control characters become `?`).
    pub fn new(text: impl AsRef<str>) -> Cell {
        Cell {
            text: super::printable(text.as_ref()).into_owned(),
            tone: None,
        }
    }

    /// Text in a tone.
    pub fn toned(text: impl AsRef<str>, tone: Tone) -> Cell {
        Cell {
            tone: Some(tone),
            ..Cell::new(text)
        }
    }
}

/// A row and the lines printed under it (a proposal's obstacles).
struct Row {
    cells: Vec<Cell>,
    notes: Vec<String>,
}

/// A table of rows under a header.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Row>,
    /// The column shortened to fit a terminal (a title).
    elastic: Option<usize>,
}

/// The narrowest the elastic column gets on a terminal.
const ELASTIC_MIN: usize = 20;

/// Spaces between columns.
const GAP: usize = 2;

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
            elastic: None,
        }
    }

    /// Lets column `index` be shortened (with `…`) so rows fit a terminal's width.
    pub fn elastic(mut self, index: usize) -> Table {
        self.elastic = Some(index);
        self
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row {
            cells,
            notes: Vec::new(),
        });
    }

    /// Adds a line under the last row, indented.
    pub fn note(&mut self, text: String) {
        if let Some(row) = self.rows.last_mut() {
            row.notes.push(text);
        }
    }

    /// The width of each column, by display width, with the elastic one shortened when a
    /// terminal of `terminal` columns is too narrow for the rows.
    fn widths(&self, terminal: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, cell) in row.cells.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.text.width());
                }
            }
        }
        if let (Some(columns), Some(elastic)) = (terminal, self.elastic) {
            let total: usize = widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1);
            if total > columns && elastic < widths.len() {
                let over = total - columns;
                widths[elastic] = widths[elastic]
                    .saturating_sub(over)
                    .max(ELASTIC_MIN.min(widths[elastic]));
            }
        }
        widths
    }

    /// Prints the header and the rows; on a terminal the elastic column fits its width.
    pub fn print(&self, out: &Out) -> Result<()> {
        let terminal = out
            .is_terminal()
            .then(|| terminal_size::terminal_size().map(|(w, _)| w.0 as usize))
            .flatten();
        let widths = self.widths(terminal);
        let last = widths.len().saturating_sub(1);
        let line = |cells: Vec<(String, Option<Tone>)>| -> String {
            let mut text = String::new();
            for (i, (cell, tone)) in cells.into_iter().enumerate() {
                let cell = if cell.width() > widths[i] {
                    shorten(&cell, widths[i])
                } else {
                    cell
                };
                let pad = if i == last {
                    0
                } else {
                    widths[i].saturating_sub(cell.width()) + GAP
                };
                match tone {
                    Some(tone) => text.push_str(&out.paint(tone, &cell)),
                    None => text.push_str(&cell),
                }
                text.extend(std::iter::repeat_n(' ', pad));
            }
            text.trim_end().to_string()
        };
        let header = self
            .header
            .iter()
            .map(|h| (h.to_string(), Some(Tone::Heading)))
            .collect();
        say!(out, "{}", line(header));
        for row in &self.rows {
            let cells = row.cells.iter().map(|c| (c.text.clone(), c.tone)).collect();
            say!(out, "{}", line(cells));
            for note in &row.notes {
                say!(out, "    {note}");
            }
        }
        Ok(())
    }
}

/// `text` in exactly `width` display columns: cut with `…`, or padded with spaces.
pub fn pad(text: &str, width: usize) -> String {
    let text = shorten(text, width);
    let fill = width.saturating_sub(text.width());
    let mut padded = text;
    padded.extend(std::iter::repeat_n(' ', fill));
    padded
}

/// `text` cut to `width` display columns, ending in `…` when cut.
pub fn shorten(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        cut.push(c);
        used += w;
    }
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_count_twice() {
        let mut table = Table::new(&["TITLE", "BY"]);
        table.row(vec![Cell::new("設計レビュー"), Cell::new("Ana")]);
        table.row(vec![Cell::new("Ship 🚢"), Cell::new("Bo")]);
        table.row(vec![Cell::new("Plain"), Cell::new("Cy")]);
        assert_eq!(table.widths(None), [12, 3]);
    }

    #[test]
    fn the_elastic_column_gives_way_on_a_narrow_terminal() {
        let mut table = Table::new(&["ID", "TITLE", "BY"]).elastic(1);
        table.row(vec![
            Cell::new("1a2b3c4d"),
            Cell::new("A title much longer than the terminal is wide, by far"),
            Cell::new("Ana"),
        ]);
        // 8 + 2 + title + 2 + 3 <= 40.
        assert_eq!(table.widths(Some(40)), [8, 25, 3]);
        // Not narrower than ELASTIC_MIN, even when the rows overflow.
        assert_eq!(table.widths(Some(10))[1], ELASTIC_MIN);
        // Off a terminal, whole.
        assert_eq!(table.widths(None)[1], 53);
    }

    #[test]
    fn padding_fills_display_columns() {
        assert_eq!(pad("田中アナ", 12), "田中アナ    ");
        assert_eq!(pad("Cyrille Müller-Lüdenscheidt", 12), "Cyrille Mül…");
        assert_eq!(pad("Bo", 4), "Bo  ");
    }

    #[test]
    fn shortening_respects_display_width() {
        assert_eq!(shorten("設計レビュー", 7), "設計レ…");
        assert_eq!(shorten("Store workspaces", 8), "Store w…");
        assert_eq!(shorten("short", 8), "short");
    }
}
