//! The stories the walkthroughs tell: titled chapters of plain sentences, printed by the binaries.

use std::fmt;

/// One titled part of a story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chapter {
    /// The title.
    pub title: String,
    /// The paragraphs, in order.
    pub lines: Vec<String>,
}

/// A story being written: chapters, each a title and its paragraphs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Story(pub Vec<Chapter>);

impl Story {
    /// Starts a chapter.
    pub fn chapter(&mut self, title: &str) {
        self.0.push(Chapter {
            title: title.to_owned(),
            lines: Vec::new(),
        });
    }

    /// Adds a paragraph to the current chapter.
    pub fn say(&mut self, line: impl Into<String>) {
        if let Some(chapter) = self.0.last_mut() {
            chapter.lines.push(line.into());
        }
    }
}

impl fmt::Display for Story {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chapter in &self.0 {
            let underline = "-".repeat(chapter.title.chars().count());
            writeln!(f, "\n{}\n{underline}", chapter.title)?;
            for line in &chapter.lines {
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

/// An amount of cents as currency units: `12050` is `"120.50"`. Any amount, the most
/// negative included.
pub fn cents(amount: impl Into<i128>) -> String {
    let amount = amount.into();
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}
