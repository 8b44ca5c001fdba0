//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed into a tree.
//!
//! Beside the RFC's grammar, `emails[type eq "work"].value eq "x"` is accepted as a filter:
//! identity providers send it. Every error says where the text went wrong.

use serde_json::Value as Json;

use super::{ScimError, ScimType};

/// An attribute path: an optional schema URN, an attribute, an optional sub-attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Json),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`, whose paths
    /// are its sub-attributes; with `then`, that value's sub-attribute also compares so.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
        then: Option<(String, Op, Json)>,
    },
}

/// A PATCH path: an attribute, maybe a filter on its values, maybe a sub-attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

/// The longest filter accepted, in characters.
const MAX_LEN: usize = 4096;
/// The deepest nesting of parentheses and `not`.
const MAX_DEPTH: usize = 32;

pub fn parse(text: &str) -> Result<Filter, ScimError> {
    let mut parser = Parser::new(text, ScimType::InvalidFilter)?;
    let filter = parser.or()?;
    parser.end()?;
    Ok(filter)
}

pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let mut parser = Parser::new(text, ScimType::InvalidPath)?;
    let attr = parser.attr_path()?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.eat(&Token::Open('[')) {
        if path.attr.sub.is_some() {
            return Err(parser.error("a filter follows the attribute, not its sub-attribute"));
        }
        path.filter = Some(parser.or()?);
        parser.expect(&Token::Close(']'))?;
        if let Some(Token::Word(word)) = parser.peek().cloned()
            && let Some(sub) = word.strip_prefix('.')
        {
            parser.next();
            path.sub = Some(sub.to_owned());
        }
    }
    parser.end()?;
    Ok(path)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Value(Json),
    Open(char),
    Close(char),
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    depth: usize,
    kind: ScimType,
    len: usize,
}

impl Parser {
    fn new(text: &str, kind: ScimType) -> Result<Self, ScimError> {
        if text.chars().count() > MAX_LEN {
            return Err(ScimError::bad(
                kind,
                format!("longer than {MAX_LEN} characters"),
            ));
        }
        Ok(Self {
            tokens: tokenize(text, kind)?,
            at: 0,
            depth: 0,
            kind,
            len: text.len(),
        })
    }

    fn error(&self, message: &str) -> ScimError {
        let position = self.tokens.get(self.at).map_or(self.len, |(at, _)| *at);
        ScimError::bad(
            self.kind,
            format!("{message} (at character {})", position + 1),
        )
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        token
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token) -> Result<(), ScimError> {
        if self.eat(token) {
            Ok(())
        } else {
            let wanted = match token {
                Token::Close(c) | Token::Open(c) => format!("{c:?}"),
                _ => "more".to_owned(),
            };
            Err(self.error(&format!("expected {wanted}")))
        }
    }

    fn end(&self) -> Result<(), ScimError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected text after the end")),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let filter = if self.keyword("not") {
            self.expect(&Token::Open('('))?;
            let inner = self.or()?;
            self.expect(&Token::Close(')'))?;
            Filter::Not(Box::new(inner))
        } else if self.eat(&Token::Open('(')) {
            let inner = self.or()?;
            self.expect(&Token::Close(')'))?;
            inner
        } else {
            self.attr_expression()?
        };
        self.depth -= 1;
        Ok(filter)
    }

    fn attr_expression(&mut self) -> Result<Filter, ScimError> {
        let attr = self.attr_path()?;
        if self.eat(&Token::Open('[')) {
            if attr.sub.is_some() {
                return Err(self.error("a filter follows the attribute, not its sub-attribute"));
            }
            let filter = self.or()?;
            self.expect(&Token::Close(']'))?;
            let then = match self.peek().cloned() {
                Some(Token::Word(word)) if word.starts_with('.') => {
                    self.next();
                    let (op, value) = self.comparison()?;
                    let value =
                        value.ok_or_else(|| self.error("pr does not follow a value filter"))?;
                    Some((word[1..].to_owned(), op, value))
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                attr,
                filter: Box::new(filter),
                then,
            });
        }
        let (op, value) = self.comparison()?;
        Ok(match value {
            None => Filter::Present(attr),
            Some(value) => Filter::Compare(attr, op, value),
        })
    }

    /// An operator and its value; `None` for `pr`.
    fn comparison(&mut self) -> Result<(Op, Option<Json>), ScimError> {
        let Some(Token::Word(word)) = self.peek().cloned() else {
            return Err(self.error("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"));
        };
        let op = match word.to_ascii_lowercase().as_str() {
            "pr" => {
                self.next();
                return Ok((Op::Eq, None));
            }
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => {
                return Err(self.error(&format!(
                    "{word:?} is not an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"
                )));
            }
        };
        self.next();
        match self.next() {
            Some(Token::Value(value)) => Ok((op, Some(value))),
            _ => {
                self.at -= 1;
                Err(self.error("expected a value: a quoted string, a number, true, false or null"))
            }
        }
    }

    fn attr_path(&mut self) -> Result<AttrPath, ScimError> {
        let Some(Token::Word(word)) = self.peek().cloned() else {
            return Err(self.error("expected an attribute name"));
        };
        let path = split_path(&word)
            .ok_or_else(|| self.error(&format!("{word:?} is not an attribute path")))?;
        self.next();
        Ok(path)
    }
}

/// `urn:…:User:manager.value` into its URN, attribute and sub-attribute.
fn split_path(word: &str) -> Option<AttrPath> {
    let (urn, rest) = if word.to_ascii_lowercase().starts_with("urn:") {
        let at = word.rfind(':')?;
        (Some(word[..at].to_owned()), &word[at + 1..])
    } else {
        (None, word)
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((attr, sub)) => (attr, Some(sub.to_owned())),
        None => (rest, None),
    };
    let name_ok = |name: &str| {
        name.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    (name_ok(attr) && sub.as_deref().is_none_or(name_ok)).then(|| AttrPath {
        urn,
        attr: attr.to_owned(),
        sub,
    })
}

fn tokenize(text: &str, kind: ScimType) -> Result<Vec<(usize, Token)>, ScimError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' | b'[' => {
                tokens.push((i, Token::Open(c as char)));
                i += 1;
            }
            b')' | b']' => {
                tokens.push((i, Token::Close(c as char)));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return Err(ScimError::bad(
                        kind,
                        format!("the string at character {} never ends", start + 1),
                    ));
                }
                i += 1;
                let value: String = serde_json::from_str(&text[start..i]).map_err(|_| {
                    ScimError::bad(
                        kind,
                        format!("the string at character {} is not valid", start + 1),
                    )
                })?;
                tokens.push((start, Token::Value(Json::String(value))));
            }
            _ => {
                let start = i;
                while i < bytes.len() && !b" \t\r\n()[]\"".contains(&bytes[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                let token = match word.to_ascii_lowercase().as_str() {
                    "true" => Token::Value(Json::Bool(true)),
                    "false" => Token::Value(Json::Bool(false)),
                    "null" => Token::Value(Json::Null),
                    _ => match word.parse::<serde_json::Number>() {
                        Ok(number)
                            if word.starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
                        {
                            Token::Value(Json::Number(number))
                        }
                        _ => Token::Word(word.to_owned()),
                    },
                };
                tokens.push((start, token));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: None,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        }
    }

    #[test]
    fn what_identity_providers_send() {
        assert_eq!(
            parse(r#"userName eq "ann@example.com""#).unwrap(),
            Filter::Compare(
                path("userName", None),
                Op::Eq,
                Json::from("ann@example.com")
            )
        );
        let Filter::ValuePath { attr, filter, then } =
            parse(r#"emails[type eq "work"].value eq "a@b.co""#).unwrap()
        else {
            panic!("a value path");
        };
        assert_eq!(attr, path("emails", None));
        assert_eq!(
            *filter,
            Filter::Compare(path("type", None), Op::Eq, Json::from("work"))
        );
        assert_eq!(
            then,
            Some(("value".to_owned(), Op::Eq, Json::from("a@b.co")))
        );
        let manager = parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"7\"",
        )
        .unwrap();
        let Filter::Compare(attr, ..) = manager else {
            panic!("a comparison")
        };
        assert_eq!(
            attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            (attr.attr.as_str(), attr.sub.as_deref()),
            ("manager", Some("value"))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let filter = parse(r#"title pr or userName sw "a" AND not (active eq false)"#).unwrap();
        let Filter::Or(left, right) = filter else {
            panic!("or at the top")
        };
        assert_eq!(*left, Filter::Present(path("title", None)));
        assert!(matches!(*right, Filter::And(_, ref not) if matches!(**not, Filter::Not(_))));
    }

    #[test]
    fn errors_say_where() {
        for (bad, says) in [
            (r#"userName eq"#, "expected a value"),
            (r#"userName xx "a""#, "is not an operator"),
            (r#"userName eq "a"#, "never ends"),
            (r#"(userName eq "a""#, "expected ')'"),
            (r#"userName eq "a" junk"#, "unexpected text"),
            ("", "expected an attribute name"),
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{bad}");
            assert!(error.detail.contains(says), "{bad}: {}", error.detail);
        }
    }

    #[test]
    fn patch_paths() {
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr, path("emails", None));
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(p.filter.is_some());
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(p.attr, path("name", Some("givenName")));
        assert_eq!(
            parse_path("a b").unwrap_err().scim_type,
            Some(ScimType::InvalidPath)
        );
    }
}
