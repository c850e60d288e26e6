//! A bound on how deeply a SPARQL query nests, checked on the query text before any parser
//! sees it.
//!
//! oxigraph parses SPARQL with a recursive-descent (PEG) parser: every `{`, `(` or `[` costs
//! it stack frames, so two kilobytes of nested braces overflow a thread's stack, which aborts
//! the whole process. Chains without brackets do not recurse in the parser but become trees
//! as deep as the chain is long (`a || b || c` is folded into `Or(Or(a, b), c)`, and so are
//! `&&`, `+`, `-`, `*`, `/`, property paths, `!!!!x`, and a group's `OPTIONAL`s, `UNION`s,
//! `FILTER`s and `BIND`s), which recursive code then walks: the query optimiser, evaluation,
//! `Drop`. So the scan estimates the height of the tree the parser would build: every bracket
//! is one level, and every chaining operator or extra sibling group adds one level to the
//! bracket it is in. The estimate is an upper bound of the real height in all but a constant
//! factor, cheap (one pass, no allocation per token), and never runs the parser.
//!
//! The scan knows just enough of the SPARQL grammar to see brackets where the parser does:
//! string literals (all four quote forms, with escapes), comments, IRIs and prefixed names are
//! skipped, and `\u` escapes are decoded first, as the parser does. One thing a scanner cannot
//! always tell is whether `<` starts an IRI or is "less than" (`(?a <b> ?c)` is a collection
//! of three terms; `(?a<b&&c>d)` is an expression): where both are possible, both readings
//! are scanned and each must stay within the limit.

use crate::error::SparqlError;

/// Ambiguous `<` whose two readings may differ in what they skip (a `#` or `'` inside):
/// each doubles the work of the scan, so there may be only this many.
const MAX_FORKS: usize = 8;

/// Refuses `query` if the tree the parser would build from it is deeper than `max`.
pub(crate) fn check(query: &str, max: usize) -> Result<(), SparqlError> {
    let text = unescape_codepoints(query);
    let mut forks = MAX_FORKS;
    let scan = Scan {
        pos: 0,
        frames: vec![Frame::new(0)],
        after_operand: false,
        floor: None,
    };
    match scan.run(text.as_bytes(), max, &mut forks) {
        Ok(()) => Ok(()),
        Err(Refusal::TooDeep) => Err(SparqlError::TooDeep { max }),
        Err(Refusal::Ambiguous) => Err(SparqlError::BadRequest(format!(
            "the query has more than {MAX_FORKS} '<' that could each start an IRI or be a \
             less-than operator, so its nesting cannot be checked; write a space after '<' \
             where it means less-than"
        ))),
    }
}

/// The parser's first step: `\uXXXX` and `\UXXXXXXXX` anywhere in the text become the
/// character they encode (SPARQL 1.1, 19.2), so they can spell brackets.
fn unescape_codepoints(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.contains("\\u") && !query.contains("\\U") {
        return query.into();
    }
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = match after.as_bytes().first() {
            Some(b'u') => 4,
            Some(b'U') => 8,
            _ => 0,
        };
        let decoded = (digits > 0)
            .then(|| after.get(1..=digits))
            .flatten()
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[1 + digits..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.into()
}

enum Refusal {
    TooDeep,
    Ambiguous,
}

/// One open bracket (or the query itself, at the bottom of the stack).
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// The opening bracket (`{`, `(`, `[`, or `<` for `<<`); 0 for the query.
    open: u8,
    /// Chaining operators and `FILTER`/`BIND` seen at this level.
    links: usize,
    /// `{ }` groups directly inside: siblings are joined into a chain.
    groups: usize,
    /// Height of the deepest bracket closed inside.
    deepest: usize,
}

impl Frame {
    fn new(open: u8) -> Self {
        Self {
            open,
            links: 0,
            groups: 0,
            deepest: 0,
        }
    }

    fn height(&self) -> usize {
        let own = usize::from(self.open != 0);
        own + self.links + self.groups.saturating_sub(1) + self.deepest
    }
}

#[derive(Debug, Clone)]
struct Scan {
    pos: usize,
    frames: Vec<Frame>,
    /// Whether the last token ends an operand (a term, a name, a closing bracket): only then
    /// can `<` be a less-than operator.
    after_operand: bool,
    /// While reading the inside of a possible IRI as code: (end of it, stack height at its
    /// start). Closing brackets there do not close what was open before it, so that a real
    /// IRI such as `<http://x/a)>` cannot lower the count.
    floor: Option<(usize, usize)>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'%') || b >= 0x80
}

/// Bytes that cannot be in an IRI reference (`[^<>"{}|^`\]-[#x00-#x20]`).
fn ends_iri(b: u8) -> bool {
    b <= b' ' || matches!(b, b'<' | b'"' | b'{' | b'}' | b'|' | b'^' | b'`' | b'\\')
}

impl Scan {
    fn top(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("the query's own frame is never closed")
    }

    fn link(&mut self) {
        self.top().links += 1;
    }

    fn open(&mut self, bracket: u8, max: usize) -> Result<(), Refusal> {
        if bracket == b'{' {
            self.top().groups += 1;
        }
        self.frames.push(Frame::new(bracket));
        // Each open bracket is one level already: stop early rather than scan on.
        if self.frames.len() - 1 > max {
            return Err(Refusal::TooDeep);
        }
        Ok(())
    }

    fn close(&mut self, max: usize) -> Result<(), Refusal> {
        if self.frames.len() == 1 {
            return Ok(()); // unbalanced: the parser reports it
        }
        if let Some((end, height)) = self.floor
            && self.pos < end
            && self.frames.len() <= height
        {
            return Ok(());
        }
        let closed = self.frames.pop().expect("more than one frame");
        let height = closed.height();
        if height > max {
            return Err(Refusal::TooDeep);
        }
        let parent = self.top();
        parent.deepest = parent.deepest.max(height);
        Ok(())
    }

    fn run(mut self, text: &[u8], max: usize, forks: &mut usize) -> Result<(), Refusal> {
        let at = |i: usize| text.get(i).copied().unwrap_or(0);
        while self.pos < text.len() {
            if let Some((end, _)) = self.floor
                && self.pos >= end
            {
                self.floor = None;
            }
            let c = text[self.pos];
            let next = at(self.pos + 1);
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    while self.pos < text.len() && !matches!(text[self.pos], b'\n' | b'\r') {
                        self.pos += 1;
                    }
                }
                b'\'' | b'"' => {
                    self.skip_string(text, c);
                    self.after_operand = true;
                }
                b'<' => {
                    if next == b'<' {
                        // `<<` opens a quoted or reified triple (SPARQL 1.2).
                        self.pos += 2;
                        self.open(b'<', max)?;
                        self.after_operand = false;
                        continue;
                    }
                    let mut end = self.pos + 1;
                    while end < text.len() && text[end] != b'>' && !ends_iri(text[end]) {
                        end += 1;
                    }
                    if at(end) != b'>' {
                        // Less than (or less or equal).
                        self.pos += 1;
                        self.after_operand = false;
                        continue;
                    }
                    let ambiguous = self.after_operand && self.top().open == b'(';
                    if ambiguous {
                        let inside = &text[self.pos + 1..end];
                        let as_code = Scan {
                            pos: self.pos + 1,
                            after_operand: false,
                            floor: Some((end, self.frames.len())),
                            frames: self.frames.clone(),
                        };
                        if inside.iter().any(|b| matches!(b, b'#' | b'\'')) {
                            // Read as code, these may skip text that the IRI reading scans,
                            // and the other way round: scan both.
                            if *forks == 0 {
                                return Err(Refusal::Ambiguous);
                            }
                            *forks -= 1;
                            as_code.run(text, max, forks)?;
                        } else {
                            // Read as code, the inside can only count more than as an IRI.
                            self = as_code;
                            continue;
                        }
                    }
                    self.pos = end + 1;
                    self.after_operand = true;
                }
                b'>' => {
                    if next == b'>' && self.top().open == b'<' {
                        self.pos += 2;
                        self.close(max)?;
                        self.after_operand = true;
                    } else {
                        self.pos += 1;
                        self.after_operand = false;
                    }
                }
                b'{' | b'(' | b'[' => {
                    self.pos += 1;
                    self.open(c, max)?;
                    self.after_operand = false;
                }
                b'}' | b')' | b']' => {
                    self.close(max)?;
                    self.pos += 1;
                    self.after_operand = true;
                }
                b'|' | b'&' => {
                    // `||`, `&&`, and `|` of property paths.
                    self.pos += if next == c { 2 } else { 1 };
                    if c == b'|' || next == c {
                        self.link();
                    }
                    self.after_operand = false;
                }
                b'!' | b'^' => {
                    // `!=` and `^^` are no chains; `!x` and `^path` are.
                    if (c == b'!' && next == b'=') || (c == b'^' && next == b'^') {
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        self.link();
                    }
                    self.after_operand = false;
                }
                b'+' | b'-' | b'*' | b'/' => {
                    self.pos += 1;
                    self.link();
                    self.after_operand = false;
                }
                b'?' | b'$' if next.is_ascii_alphanumeric() || next == b'_' || next >= 0x80 => {
                    self.pos += 1;
                    while self.pos < text.len() && {
                        let b = text[self.pos];
                        b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
                    } {
                        self.pos += 1;
                    }
                    self.after_operand = true;
                }
                b'0'..=b'9' => {
                    self.skip_number(text);
                    self.after_operand = true;
                }
                b'.' if next.is_ascii_digit() => {
                    self.skip_number(text);
                    self.after_operand = true;
                }
                _ if c.is_ascii_alphabetic() || matches!(c, b'_' | b':' | b'@') || c >= 0x80 => {
                    self.word(text);
                    self.after_operand = true;
                }
                _ => {
                    // `=`, `,`, `;`, `.`, a lone `?` (path modifier) and anything invalid.
                    self.pos += 1;
                    self.after_operand = false;
                }
            }
        }
        while self.frames.len() > 1 {
            self.floor = None;
            self.close(max)?;
        }
        if self.frames[0].height() > max {
            return Err(Refusal::TooDeep);
        }
        Ok(())
    }

    /// Skips a string literal opened by `quote` at `self.pos`.
    fn skip_string(&mut self, text: &[u8], quote: u8) {
        let long = text.get(self.pos + 1) == Some(&quote) && text.get(self.pos + 2) == Some(&quote);
        self.pos += if long { 3 } else { 1 };
        while self.pos < text.len() {
            let b = text[self.pos];
            if b == b'\\' {
                self.pos += 2;
            } else if long {
                if text[self.pos..].starts_with(&[quote, quote, quote]) {
                    self.pos += 3;
                    return;
                }
                self.pos += 1;
            } else if b == quote {
                self.pos += 1;
                return;
            } else if b == b'\n' || b == b'\r' {
                return; // a short string ends at the line (the parser reports it)
            } else {
                self.pos += 1;
            }
        }
    }

    /// Skips a number: digits, a decimal point, an exponent with its sign.
    fn skip_number(&mut self, text: &[u8]) {
        while self.pos < text.len() {
            match text[self.pos] {
                b'0'..=b'9' | b'.' => self.pos += 1,
                b'e' | b'E' => {
                    self.pos += 1;
                    if matches!(text.get(self.pos), Some(b'+' | b'-')) {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// A keyword, prefixed name, blank node label or language tag, with `\` escapes of local
    /// names. `FILTER` and `BIND` chain the group they are in; so does `-` in a word without
    /// `:` (`true-false` is a subtraction, `ex:a-b` a name).
    fn word(&mut self, text: &[u8]) {
        let start = self.pos;
        while self.pos < text.len() {
            let b = text[self.pos];
            if b == b'\\' {
                self.pos += 2;
            } else if is_word_byte(b) || (self.pos == start && b == b'@') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let word = &text[start..self.pos.min(text.len())];
        if word.eq_ignore_ascii_case(b"filter") || word.eq_ignore_ascii_case(b"bind") {
            self.link();
        } else if word[0] != b'@' && !word.contains(&b':') {
            let dashes = word.iter().filter(|b| **b == b'-').count();
            self.top().links += dashes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn height(query: &str) -> usize {
        (0..1000)
            .find(|max| check(query, *max).is_ok())
            .expect("under 1000")
    }

    #[test]
    fn brackets_count_outside_strings_comments_and_iris() {
        assert_eq!(height("SELECT ?s WHERE { ?s ?p ?o }"), 1);
        assert_eq!(height("ASK { { { } } }"), 3);
        let hidden = "ASK { ?s ?p \"{{{(((\" , '''{{{''' , \"\"\"(((\\\"\"\"\" , 'x\\'{' \
                      # {{{{{{\n FILTER(?s != <http://x/((>) }";
        assert_eq!(height(hidden), 3); // `{`, FILTER, `(`
        assert_eq!(height("ASK { ?s ?p [ ?q [ ?r ( 1 ( 2 ) ) ] ] }"), 5);
        // `\u007B` is a brace to the parser.
        assert_eq!(height("ASK \\u007B \\u007B } }"), 2);
    }

    #[test]
    fn chains_count_per_level() {
        assert_eq!(height("ASK { FILTER(1 || 2 || 3 || 4) }"), 1 + 1 + 1 + 3);
        assert_eq!(height("ASK { FILTER(!!!!true) }"), 3 + 4);
        assert_eq!(height("ASK { FILTER(true-true-true) }"), 3 + 2);
        assert_eq!(height("ASK { FILTER(1e-5 > 2.5E+3) }"), 3);
        assert_eq!(height("ASK { ?s ex:a-b-c ?o ; ex:p 'x'@en-GB }"), 1);
        assert_eq!(height("ASK { {} {} {} {} }"), 1 + 3 + 1);
        assert_eq!(height("ASK { ?s <p>/<q>/<r> ?o }"), 1 + 2);
    }

    #[test]
    fn less_than_and_iris() {
        // `<` after an operand inside parentheses may be less-than: read as code, the `&&`
        // between counts.
        assert_eq!(height("ASK { FILTER(?a<?b&&?c>?d) }"), 3 + 1);
        assert_eq!(height("ASK { FILTER(?a < ?b && ?c > ?d) }"), 3 + 1);
        // An IRI with `)` cannot close what was open before it.
        assert!(height("SELECT * { ?s ?p (?a <http://x/)> ((((((?b)))))) }") >= 8);
        // A `'` inside: both readings are scanned; the one as code opens a long string that
        // would hide the brackets after it from the other.
        let q = format!("ASK {{ ?s ?p (?a <x'''> {} }}", "(".repeat(200));
        assert!(check(&q, 64).is_err());
    }
}
