//! Tokens of the `.kir` format, each with its line and column (1-based).

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A bare word: keywords, op spellings, dtypes, symbolic dims, `inf`, `true`.
    Word(String),
    /// `%name`, `%"quoted name"`: a named value.
    Name(String),
    /// `%12`: a numbered value.
    Num(u64),
    /// `@name` or `@"quoted"`: a node's source name.
    At(String),
    Int(i64),
    /// An integer above `i64::MAX` that fits in u64 (u64 tensor literals).
    BigInt(u64),
    Float(f64),
    Str(String),
    Punct(char),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Name(n) => format!("`%{n}`"),
            Tok::Num(n) => format!("`%{n}`"),
            Tok::At(n) => format!("`@{n}`"),
            Tok::Int(i) => format!("`{i}`"),
            Tok::BigInt(i) => format!("`{i}`"),
            Tok::Float(x) => format!("`{x}`"),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

pub struct LexError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

pub fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    macro_rules! bump {
        () => {{
            if chars[i] == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let err = |msg: String| LexError {
            line: tl,
            col: tc,
            msg,
        };
        if c.is_whitespace() {
            bump!();
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                bump!();
            }
            continue;
        }
        let tok = if c == '%' || c == '@' {
            bump!();
            let name = if i < chars.len() && chars[i] == '"' {
                read_string(&chars, &mut i, &mut col).map_err(err)?
            } else {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_./-".contains(chars[i]))
                {
                    bump!();
                }
                chars[start..i].iter().collect()
            };
            if name.is_empty() {
                return Err(err(format!("expected a name after `{c}`")));
            }
            if c == '@' {
                Tok::At(name)
            } else if name.chars().all(|d| d.is_ascii_digit()) && !chars[i - 1].eq(&'"') {
                Tok::Num(
                    name.parse()
                        .map_err(|_| err(format!("value number `{name}` is too large")))?,
                )
            } else {
                Tok::Name(name)
            }
        } else if c == '"' {
            Tok::Str(read_string(&chars, &mut i, &mut col).map_err(err)?)
        } else if c.is_ascii_digit()
            || (c == '-'
                && i + 1 < chars.len()
                && (chars[i + 1].is_ascii_digit() || chars[i + 1] == 'i'))
        {
            let start = i;
            bump!();
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                bump!();
            }
            let text: String = chars[start..i].iter().collect();
            if text == "-inf" {
                Tok::Float(f64::NEG_INFINITY)
            } else if text.contains(['.', 'e', 'E']) {
                Tok::Float(
                    text.parse()
                        .map_err(|_| err(format!("malformed number `{text}`")))?,
                )
            } else if let Ok(v) = text.parse() {
                Tok::Int(v)
            } else {
                // Only u64 values above i64::MAX get here.
                Tok::BigInt(
                    text.parse()
                        .map_err(|_| err(format!("malformed or out-of-range integer `{text}`")))?,
                )
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                bump!();
            }
            Tok::Word(chars[start..i].iter().collect())
        } else if "{}()[]<>,=:".contains(c) {
            bump!();
            Tok::Punct(c)
        } else {
            return Err(err(format!("unexpected character `{c}`")));
        };
        out.push(Token {
            tok,
            line: tl,
            col: tc,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}

/// Read a double-quoted string starting at `chars[*i] == '"'`, with Rust-style
/// escapes (`\"`, `\\`, `\n`, `\t`, `\u{..}`). Strings do not span lines.
fn read_string(chars: &[char], i: &mut usize, col: &mut usize) -> Result<String, String> {
    let mut s = String::new();
    *i += 1;
    *col += 1;
    loop {
        let Some(&c) = chars.get(*i) else {
            return Err("unterminated string".into());
        };
        *i += 1;
        *col += 1;
        match c {
            '"' => return Ok(s),
            '\n' => return Err("unterminated string".into()),
            '\\' => {
                let Some(&e) = chars.get(*i) else {
                    return Err("unterminated string".into());
                };
                *i += 1;
                *col += 1;
                match e {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    '0' => s.push('\0'),
                    '\\' => s.push('\\'),
                    '"' => s.push('"'),
                    '\'' => s.push('\''),
                    'u' => {
                        if chars.get(*i) != Some(&'{') {
                            return Err("expected `{` after \\u".into());
                        }
                        let start = *i + 1;
                        let end = chars[start..]
                            .iter()
                            .position(|&c| c == '}')
                            .map(|p| start + p);
                        let Some(end) = end else {
                            return Err("unterminated \\u{...} escape".into());
                        };
                        let hex: String = chars[start..end].iter().collect();
                        let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        s.push(ch.ok_or_else(|| format!("invalid unicode escape \\u{{{hex}}}"))?);
                        *col += end + 1 - *i;
                        *i = end + 1;
                    }
                    other => return Err(format!("unknown escape `\\{other}`")),
                }
            }
            c => s.push(c),
        }
    }
}
