//! Splitting SQL text into what `polder sql` runs: statements (ended by `;` outside quotes
//! and comments), each with the line it starts on, and meta-commands (a line starting with `.`
//! or `\` where no statement is under way), as duckdb reads its scripts.

/// One thing to run, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A SQL statement, its text without the ending `;`.
    Sql { line: usize, text: String },
    /// A meta-command line, trimmed (`.tables`, `\d air_quality`).
    Meta { line: usize, text: String },
}

impl Item {
    pub(crate) fn line(&self) -> usize {
        match self {
            Item::Sql { line, .. } | Item::Meta { line, .. } => *line,
        }
    }
}

/// Whether a trimmed line quits the shell wherever it is typed, a statement half typed or not.
pub(crate) fn is_quit(line: &str) -> bool {
    matches!(line.trim(), "\\q" | ".quit" | ".exit")
}

/// Reads statements and meta-commands line by line; what is left unfinished stays pending.
#[derive(Debug, Default)]
pub(crate) struct Splitter {
    /// The statement under way.
    pending: String,
    /// The line the statement under way starts on (0: none yet).
    start: usize,
    /// Lines read so far.
    lines: usize,
    /// Whether the statement under way has more than blanks and comments.
    code: bool,
    /// Inside a `/* */` comment, a quoted string or identifier, across lines.
    state: Lex,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Lex {
    #[default]
    Code,
    Single,
    Double,
    Block,
}

impl Splitter {
    /// Whether part of a statement has been read and not ended yet.
    pub(crate) fn is_pending(&self) -> bool {
        self.code || self.state != Lex::Code
    }

    /// Forgets the statement under way (Ctrl-C at the prompt).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.start = 0;
        self.code = false;
        self.state = Lex::Code;
    }

    /// Reads one line (without its newline): the statements and meta-commands it completes.
    pub(crate) fn push_line(&mut self, line: &str) -> Vec<Item> {
        self.lines += 1;
        let trimmed = line.trim();
        if !self.is_pending() && (trimmed.starts_with('.') || trimmed.starts_with('\\')) {
            self.pending.clear();
            return vec![Item::Meta {
                line: self.lines,
                text: trimmed.to_string(),
            }];
        }
        let mut items = vec![];
        let mut chars = line.char_indices().peekable();
        let mut from = 0;
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            match (self.state, c) {
                (Lex::Code, '-') if next == Some('-') => break,
                (Lex::Code, '/') if next == Some('*') => {
                    chars.next();
                    self.state = Lex::Block;
                }
                (Lex::Code, ';') => {
                    self.pending.push_str(&line[from..i]);
                    from = i + 1;
                    let text = std::mem::take(&mut self.pending);
                    if self.code {
                        items.push(Item::Sql {
                            line: self.start,
                            text,
                        });
                    }
                    self.code = false;
                    self.start = 0;
                }
                (Lex::Code, c) => {
                    if !c.is_whitespace() && !self.code {
                        self.code = true;
                        self.start = self.lines;
                    }
                    match c {
                        '\'' => self.state = Lex::Single,
                        '"' => self.state = Lex::Double,
                        _ => {}
                    }
                }
                (Lex::Single, '\'') => self.state = Lex::Code,
                (Lex::Double, '"') => self.state = Lex::Code,
                (Lex::Block, '*') if next == Some('/') => {
                    chars.next();
                    self.state = Lex::Code;
                }
                _ => {}
            }
        }
        self.pending.push_str(&line[from..]);
        self.pending.push('\n');
        if !self.is_pending() {
            // Only comments or blanks since the last statement: nothing under way.
            self.pending.clear();
        }
        items
    }

    /// The statement left unfinished at the end of a script (a last statement without `;`).
    pub(crate) fn finish(&mut self) -> Option<Item> {
        let text = std::mem::take(&mut self.pending);
        let line = std::mem::take(&mut self.start);
        let code = std::mem::take(&mut self.code);
        self.state = Lex::Code;
        code.then_some(Item::Sql { line, text })
    }
}

/// Every statement and meta-command of a script, in order, up to a line that quits (a
/// statement half written before it is dropped, as in the shell).
pub(crate) fn split(script: &str) -> Vec<Item> {
    let mut splitter = Splitter::default();
    let mut items = vec![];
    for (i, line) in script.lines().enumerate() {
        if is_quit(line) {
            items.push(Item::Meta {
                line: i + 1,
                text: line.trim().to_string(),
            });
            return items;
        }
        items.extend(splitter.push_line(line));
    }
    items.extend(splitter.finish());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(line: usize, text: &str) -> Item {
        Item::Sql {
            line,
            text: text.into(),
        }
    }

    #[test]
    fn statements_with_their_lines_and_meta_commands_at_line_starts() {
        let script = "-- a comment\nSELECT 1;\n.tables\nSELECT 'a;b'\n  , \"x;\"\n; SELECT 2 /* ; */;\n\\d t\nSELECT\n.5";
        assert_eq!(
            split(script),
            vec![
                sql(2, "SELECT 1"),
                Item::Meta {
                    line: 3,
                    text: ".tables".into()
                },
                sql(4, "SELECT 'a;b'\n  , \"x;\"\n"),
                sql(6, " SELECT 2 /* ; */"),
                Item::Meta {
                    line: 7,
                    text: "\\d t".into()
                },
                sql(8, "SELECT\n.5\n"),
            ]
        );
    }

    #[test]
    fn a_quoted_newline_is_not_a_meta_command() {
        let items = split("SELECT '\n.tables';");
        assert_eq!(items, vec![sql(1, "SELECT '\n.tables'")]);
    }

    #[test]
    fn quit_anywhere() {
        assert!(is_quit(" \\q ") && is_quit(".quit") && !is_quit("\\dt"));
        let items = split("SELECT 1;\nSELECT\n\\q\nSELECT 2;");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].line(), 3);
    }
}
