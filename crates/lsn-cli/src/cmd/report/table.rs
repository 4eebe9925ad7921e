//! A report table: cells (some marked: a difference after the table's correction), a note and a verdict, rendered as
//! markdown and as HTML from the same data.

use serde::Serialize;

/// One cell; `marked` when it holds a difference (higher or lower after the table's correction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub text: String,
    pub marked: bool,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), marked: false }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::plain(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::plain(s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub id: String,
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Rows drawn in grey: reference numbers that are not ours (the paper's).
    pub reference_rows: Vec<usize>,
    pub note: String,
    pub verdict: Option<String>,
    /// The verdict's class, for tables that judge the paper's claim.
    pub verdict_class: Option<lsn_eval::verdict::TableVerdict>,
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn html_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Table {
    /// "Verdict" for a table that judges the paper's claim, "Summary" for one that only sums its numbers up (PPXC,
    /// backend agreement).
    fn verdict_label(&self) -> &'static str {
        if self.verdict_class.is_some() { "Verdict" } else { "Summary" }
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        s += &format!("| {} |\n", self.header.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | "));
        s += &format!("|{}\n", "---|".repeat(self.header.len()));
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    let t = md_escape(&c.text);
                    if c.marked {
                        format!("**{t}**\\*")
                    } else if self.reference_rows.contains(&i) && !t.is_empty() {
                        format!("_{t}_")
                    } else {
                        t
                    }
                })
                .collect();
            s += &format!("| {} |\n", cells.join(" | "));
        }
        if !self.note.is_empty() {
            s += &format!("\n{}\n", self.note);
        }
        if let Some(v) = &self.verdict {
            s += &format!("\n**{}:** {v}\n", self.verdict_label());
        }
        s
    }

    pub fn html(&self) -> String {
        let mut s = format!("<h3 id=\"{}\">{}</h3>\n<table>\n<tr>", html_text(&self.id), html_text(&self.title));
        for h in &self.header {
            s += &format!("<th>{}</th>", html_text(h));
        }
        s += "</tr>\n";
        for (i, row) in self.rows.iter().enumerate() {
            s += if self.reference_rows.contains(&i) { "<tr class=\"ref\">" } else { "<tr>" };
            for c in row {
                if c.marked {
                    s += &format!("<td class=\"sig\">{}*</td>", html_text(&c.text));
                } else {
                    s += &format!("<td>{}</td>", html_text(&c.text));
                }
            }
            s += "</tr>\n";
        }
        s += "</table>\n";
        if !self.note.is_empty() {
            s += &format!("<p class=\"note\">{}</p>\n", html_text(&self.note));
        }
        if let Some(v) = &self.verdict {
            s += &format!("<p class=\"verdict\"><b>{}:</b> {}</p>\n", self.verdict_label(), html_text(v));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_show_the_same_cells_and_marks() {
        let t = Table {
            id: "t1".into(),
            title: "XNLI <vi>".into(),
            header: vec!["lang".into(), "No Int".into(), "μ".into()],
            rows: vec![
                vec!["vi".into(), "46.80".into(), Cell { text: "−1.20 [−2.40, −0.20]".into(), marked: true }],
                vec!["vi, paper".into(), "80.61".into(), "78.33".into()],
            ],
            reference_rows: vec![1],
            note: "a | note".into(),
            verdict: Some("holds".into()),
            verdict_class: None,
        };
        let md = t.markdown();
        assert!(md.contains("| vi | 46.80 | **−1.20 [−2.40, −0.20]**\\* |"), "{md}");
        assert!(md.contains("_80.61_") && md.contains("a | note") && md.contains("**Summary:** holds"), "{md}");
        let judged = Table { verdict_class: Some(lsn_eval::verdict::TableVerdict::Consistent), ..t.clone() };
        assert!(judged.markdown().contains("**Verdict:** holds") && judged.html().contains("<b>Verdict:</b>"));
        let html = t.html();
        assert!(html.contains("<td class=\"sig\">−1.20 [−2.40, −0.20]*</td>") && html.contains("XNLI &lt;vi&gt;"));
        assert!(html.contains("<tr class=\"ref\">"), "{html}");
    }
}
