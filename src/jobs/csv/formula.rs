//! Cells a spreadsheet would run as a formula.
//!
//! Excel, LibreOffice and Google Sheets take a cell that begins with `=`, `+`, `-` or `@`
//! (and some, one that begins with a tab or a carriage return) for a formula, in a CSV file
//! too: `=HYPERLINK("http://x","y")`, `+cmd|' /C calc'!A0`. A `'` before such a cell makes
//! it text (OWASP's advice against CSV injection): every file written here goes through
//! [`write_record`], which puts it there. The reader takes it away again: a cell that
//! begins with `'` and then one of those characters or another `'` is read without its
//! first `'`; any other cell is read as it is. So a value that itself begins with `'` and
//! one of them (`'=x`) is written with one more (`''=x`), and every value reads back as it
//! was: a phone `+380971234567`, a number `-5`, a lone `-`.

use std::borrow::Cow;
use std::io::Write;

use crate::error::AppError;

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

/// A value as a file's cell: with a [`MARK`] before one that begins with a trigger, or that
/// [`restored`] would take a mark from.
fn neutralised(value: &str) -> Cow<'_, str> {
    if value.starts_with(TRIGGERS) || marked(value) {
        Cow::Owned(format!("{MARK}{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// Writes one record of `values`, each [`neutralised`]: the only way a file is written.
pub fn write_record<'a, W: Write>(
    writer: &mut csv::Writer<W>,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), AppError> {
    for value in values {
        writer
            .write_field(neutralised(value).as_bytes())
            .map_err(AppError::internal)?;
    }
    writer
        .write_record(std::iter::empty::<&[u8]>())
        .map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_would_run_or_lose_their_mark_are_marked_and_no_other() {
        for (value, cell) in [
            (
                r#"=HYPERLINK("http://x","y")"#,
                r#"'=HYPERLINK("http://x","y")"#,
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("@SUM(1)", "'@SUM(1)"),
            ("-5", "'-5"),
            ("-", "'-"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=x", "''=x"),
            ("''", "'''"),
            ("'90s", "'90s"),
            ("'", "'"),
            (" =x", " =x"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(neutralised(value), cell, "{value:?}");
        }
    }

    #[test]
    fn every_value_written_reads_back_as_it_was() {
        let values = [
            "=1+1",
            "+380971111111",
            "-5",
            "-",
            "@x",
            "\t",
            "\r\n",
            "'",
            "''",
            "'=x",
            "'-",
            "''=x",
            "'a",
            "a'",
            "x",
            "",
            " ",
            "\n=x",
        ];
        let mut writer = csv::Writer::from_writer(Vec::new());
        write_record(&mut writer, values).unwrap();
        let file = writer.into_inner().unwrap();
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(file.as_slice())
            .into_records()
            .next()
            .unwrap()
            .unwrap();
        let read: Vec<String> = record.iter().map(|c| restored(c.to_owned())).collect();
        assert_eq!(read, values);
    }

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
