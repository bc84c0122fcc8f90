//! The one way commands write to standard output: lines, tables (aligned text, Markdown, CSV)
//! and JSON. Logs and progress bars go to standard error and are not the printer's.

use serde::Serialize;
use std::fmt::Display;
use std::io::Write;

/// How `inspect` (and any command with `--format`) writes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text.
    Table,
    Markdown,
    Csv,
    Json,
}

/// Where a column's cells sit within its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A column: header, alignment and the bounds of its text width (the widest cell, clamped;
/// a longer cell overflows rather than widen the others' rows).
#[derive(Debug, Clone)]
pub struct Column {
    pub header: String,
    pub align: Align,
    pub min: usize,
    pub max: usize,
}

impl Column {
    /// As wide as its widest cell.
    pub fn fit(header: &str, align: Align) -> Self {
        Self { header: header.into(), align, min: 0, max: usize::MAX }
    }

    /// Always `width` wide.
    pub fn fixed(header: &str, align: Align, width: usize) -> Self {
        Self { header: header.into(), align, min: width, max: width }
    }
}

/// Rows of cells under named columns.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    /// Between two cells of aligned text.
    separator: &'static str,
}

impl Table {
    pub fn new(columns: Vec<Column>, separator: &'static str) -> Self {
        Self { columns, rows: Vec::new(), separator }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Each column's width: its widest cell or header (in bytes, as the tables always were),
    /// clamped to the column's bounds.
    fn widths(&self) -> Vec<usize> {
        let widest = |c: usize| self.rows.iter().map(|r| r[c].len()).chain([self.columns[c].header.len()]).max();
        (0..self.columns.len())
            .map(|c| widest(c).unwrap_or(0).clamp(self.columns[c].min, self.columns[c].max))
            .collect()
    }

    /// One line of aligned text with the given widths.
    fn line<S: AsRef<str>>(&self, widths: &[usize], cells: &[S]) -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&self.columns)
            .zip(widths)
            .map(|((cell, column), &w)| match column.align {
                Align::Left => format!("{:<w$}", cell.as_ref()),
                Align::Right => format!("{:>w$}", cell.as_ref()),
            })
            .collect();
        padded.join(self.separator) + "\n"
    }

    /// The header line alone, for tables printed a row at a time (fixed widths).
    pub fn header(&self) -> String {
        let headers: Vec<&str> = self.columns.iter().map(|c| c.header.as_str()).collect();
        self.line(&self.widths(), &headers)
    }

    /// One row alone, at the widths of the rows pushed so far.
    pub fn row(&self, cells: &[String]) -> String {
        self.line(&self.widths(), cells)
    }

    /// Header and rows as aligned text.
    pub fn text(&self) -> String {
        let widths = self.widths();
        let mut out = self.header();
        for row in &self.rows {
            out.push_str(&self.line(&widths, row));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let headers: Vec<&str> = self.columns.iter().map(|c| c.header.as_str()).collect();
        let mut out = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }

    pub fn csv(&self) -> anyhow::Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(self.columns.iter().map(|c| c.header.as_str()))?;
        for row in &self.rows {
            w.write_record(row)?;
        }
        Ok(String::from_utf8(w.into_inner()?)?)
    }

    /// One object per row, keyed by the headers.
    pub fn json(&self) -> anyhow::Result<String> {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = self
            .rows
            .iter()
            .map(|row| self.columns.iter().zip(row).map(|(c, v)| (c.header.clone(), v.clone().into())).collect())
            .collect();
        Ok(serde_json::to_string_pretty(&rows)? + "\n")
    }

    pub fn render(&self, format: Format) -> anyhow::Result<String> {
        match format {
            Format::Table => Ok(self.text()),
            Format::Markdown => Ok(self.markdown()),
            Format::Csv => self.csv(),
            Format::Json => self.json(),
        }
    }
}

/// Standard output, written through one handle; a closed pipe is an error, not a panic.
#[derive(Debug)]
pub struct Printer {
    out: std::io::Stdout,
}

impl Printer {
    pub fn stdout() -> Self {
        Self { out: std::io::stdout() }
    }

    /// One line.
    pub fn line(&mut self, text: impl Display) -> std::io::Result<()> {
        writeln!(self.out.lock(), "{text}")
    }

    /// Text as it is (tables end their lines themselves).
    pub fn text(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    pub fn table(&mut self, table: &Table, format: Format) -> anyhow::Result<()> {
        Ok(self.text(&table.render(format)?)?)
    }

    /// A value as pretty JSON and a newline.
    pub fn json(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        Ok(self.text(&(serde_json::to_string_pretty(value)? + "\n"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(vec![Column::fit("name", Align::Left), Column::fit("size ×", Align::Right)], "  ");
        t.push(vec!["a".into(), "1.5".into()]);
        t.push(vec!["longer".into(), "12.25".into()]);
        t
    }

    #[test]
    fn text_aligns_to_the_widest_cell_and_markdown_and_csv_keep_the_cells() {
        let t = table();
        // Widths count bytes: "size ×" is 7 of them.
        assert_eq!(t.text(), "name     size ×\na           1.5\nlonger    12.25\n");
        assert_eq!(t.markdown(), "| name | size × |\n|---|---|\n| a | 1.5 |\n| longer | 12.25 |\n");
        assert_eq!(t.csv().unwrap(), "name,size ×\na,1.5\nlonger,12.25\n");
        assert!(t.json().unwrap().contains("\"size ×\": \"12.25\""));
    }

    #[test]
    fn fixed_columns_let_a_long_cell_overflow() {
        let mut t = Table::new(vec![Column::fixed("#", Align::Right, 3), Column::fixed("op", Align::Left, 4)], " ");
        t.push(vec!["1".into(), "Conv".into()]);
        assert_eq!(t.header(), "  # op  \n");
        assert_eq!(t.row(&["12".into(), "MatMul".into()]), " 12 MatMul\n");
    }
}
