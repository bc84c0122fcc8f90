//! The page: self-contained HTML (inline style, no scripts, relative image paths) that reads
//! well on a laptop screen.

use std::fmt::Write;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[derive(Debug, Default)]
pub struct Page {
    body: String,
}

impl Page {
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.body, "<h2>{}</h2>", escape(text));
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    /// A section that cannot be drawn, and why.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// A figure with the caption that says what to look for.
    pub fn figure(&mut self, src: &str, alt: &str, caption: &str) {
        let _ = writeln!(
            self.body,
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            escape(src),
            escape(alt),
            escape(caption)
        );
    }

    /// A table; the first row is the header.
    pub fn table(&mut self, rows: &[Vec<String>]) {
        self.body.push_str("<table>\n");
        for (i, row) in rows.iter().enumerate() {
            let cell = if i == 0 { "th" } else { "td" };
            self.body.push_str("<tr>");
            for value in row {
                let _ = write!(self.body, "<{cell}>{}</{cell}>", escape(value));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
    }

    /// A grid of images: `header` labels the columns, each row is a label and image paths.
    pub fn image_grid(&mut self, header: &[String], rows: &[(String, Vec<Option<String>>)]) {
        self.body.push_str("<table class=\"grid\">\n<tr><th></th>");
        for h in header {
            let _ = write!(self.body, "<th>{}</th>", escape(h));
        }
        self.body.push_str("</tr>\n");
        for (label, images) in rows {
            let _ = write!(self.body, "<tr><th>{}</th>", escape(label));
            for image in images {
                match image {
                    Some(src) => {
                        let _ = write!(self.body, "<td><img src=\"{}\" alt=\"{}\"></td>", escape(src), escape(label));
                    }
                    None => self.body.push_str("<td>—</td>"),
                }
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
    }

    pub fn render(&self, title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
             content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>\n{STYLE}</style>\n\
             </head>\n<body>\n<h1>{title}</h1>\n{}</body>\n</html>\n",
            self.body,
            title = escape(title)
        )
    }
}

const STYLE: &str =
    "body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
table.grid img { width: 160px; image-rendering: pixelated; }
p.note { background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.5em 1em; }
";
