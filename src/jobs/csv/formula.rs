//! Cells a spreadsheet would run as a formula.
//!
//! Excel, LibreOffice and Google Sheets take a cell that begins with `=`, `+`, `-` or `@`
//! (and some, one that begins with a tab or a carriage return) for a formula, in a CSV file
//! too: `=HYPERLINK("http://x","y")`, `+cmd|' /C calc'!A0`. A `'` before such a cell makes
//! it text (OWASP's advice against CSV injection). The reader takes that `'` away again: a
//! cell that begins with `'` and then one of those characters or another `'` is read
//! without its first `'`; any other cell is read as it is.

/// The characters that make a spreadsheet run a cell that begins with one.
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// What keeps a cell from running.
const MARK: char = '\'';

/// Whether a cell begins with [`MARK`] and then a trigger or another mark: a cell the reader
/// takes the first mark from.
fn marked(cell: &str) -> bool {
    let mut chars = cell.chars();
    chars.next() == Some(MARK)
        && chars
            .next()
            .is_some_and(|next| next == MARK || TRIGGERS.contains(&next))
}

/// A cell of a file as its value: without the [`MARK`] before a trigger or another mark.
pub fn restored(mut cell: String) -> String {
    if marked(&cell) {
        cell.remove(0);
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cell: &str) -> String {
        restored(cell.to_owned())
    }

    #[test]
    fn a_mark_before_a_trigger_or_a_mark_is_dropped_and_any_other_cell_kept() {
        for (cell, value) in [
            (
                r#"'=HYPERLINK("http://x","y")"#,
                r#"=HYPERLINK("http://x","y")"#,
            ),
            ("'+380971111111", "+380971111111"),
            ("'-5", "-5"),
            ("'-", "-"),
            ("'@SUM(1)", "@SUM(1)"),
            ("'\tx", "\tx"),
            ("'\rx", "\rx"),
            ("''=x", "'=x"),
            ("''", "'"),
            ("'90s", "'90s"),
            ("'", "'"),
            (" '=x", " '=x"),
            ("=x", "=x"),
            ("", ""),
        ] {
            assert_eq!(read(cell), value, "{cell:?}");
        }
    }
}
