//! What a document may cost, judged before the engine validates it.
//!
//! async-graphql computes depth and complexity by walking every fragment spread into its
//! fragment, so a small document whose fragments each spread the previous one twice costs
//! 2^n steps to validate: 25 such fragments took seconds of CPU before being refused as too
//! complex. These checks run right after parsing, in time linear in the document: its size
//! in tokens (before the parser runs), its aliases, and the number of fields it would have
//! with every spread expanded, computed once per fragment.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

use crate::config::QueryLimits;

/// Refuses a document that is too long, too aliased, or that would expand past the
/// complexity limit (each field costs at least 1), before any validation rule walks it.
pub struct DocumentLimits {
    pub max_tokens: usize,
    pub max_aliases: usize,
    pub max_fields: usize,
}

impl DocumentLimits {
    pub fn new(limits: &QueryLimits) -> Self {
        Self {
            max_tokens: limits.max_tokens,
            max_aliases: limits.max_aliases,
            max_fields: limits.max_complexity,
        }
    }
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Self { ..*self })
    }
}

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if count_tokens(query, self.max_tokens).is_none() {
            return Err(ServerError::new(
                format!(
                    "the document has more than {} tokens (ROSTER_MAX_TOKENS); send large \
                     inputs as variables",
                    self.max_tokens
                ),
                None,
            ));
        }
        // Parsed here first, because the engine's own check of recursion depth, which runs
        // with its parsing, walks every spread too; the engine then parses it again, a
        // cost linear in the tokens just bounded.
        let document = async_graphql::parser::parse_query(query)?;
        let aliases = count_aliases(&document);
        if aliases > self.max_aliases {
            return Err(ServerError::new(
                format!(
                    "the document has {aliases} aliased fields; at most {} are allowed",
                    self.max_aliases
                ),
                None,
            ));
        }
        let fields = expanded_fields(&document);
        drop(document);
        if fields > self.max_fields {
            return Err(ServerError::new(
                format!(
                    "the document has {} selections once its fragments are expanded; at \
                     most {} are allowed (ROSTER_MAX_COMPLEXITY)",
                    Count(fields),
                    self.max_fields
                ),
                None,
            ));
        }
        next.run(ctx, query, variables).await
    }
}

/// A count that may have saturated.
struct Count(usize);

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == usize::MAX {
            f.write_str("more than 10^19")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The number of lexical tokens of a GraphQL document, or `None` past `max`. Punctuators,
/// names, numbers and strings (block strings included) count one each; white space, commas,
/// byte order marks and comments count nothing, as in the spec's grammar. Any other
/// character counts one: a document the parser accepts is never counted short.
pub fn count_tokens(source: &str, max: usize) -> Option<usize> {
    const BOM: &[u8] = "\u{feff}".as_bytes();
    let bytes = source.as_bytes();
    let mut count = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            _ if bytes[i..].starts_with(BOM) => i += BOM.len(),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                count += 1;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                count += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                i += 3;
                count += 1;
            }
            b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'|'
            | b'}' => {
                i += 1;
                count += 1;
            }
            b'_' | b'A'..=b'Z' | b'a'..=b'z' => {
                i += 1;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                count += 1;
            }
            b'-' | b'0'..=b'9' => {
                i = number_end(bytes, i);
                count += 1;
            }
            _ => {
                // A character the parser refuses.
                i += 1;
                count += 1;
            }
        }
        if count > max {
            return None;
        }
    }
    Some(count)
}

/// Where the number starting at `start` ends: `-`, digits, then a fraction and an exponent
/// if they follow (at least one character, the `-` alone if no digit follows it).
fn number_end(bytes: &[u8], start: usize) -> usize {
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = start + usize::from(bytes[start] == b'-');
    let whole = digits(i);
    if whole == i {
        return start + 1;
    }
    i = whole;
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i = digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    i
}

/// The selections (fields, fragment spreads and inline fragments) of every operation of the
/// document once each fragment spread is replaced by its fragment, saturating: what the
/// engine's walks over the operation visit. Each fragment is expanded once and remembered;
/// a spread of an unknown fragment, or one that would recurse into a fragment being
/// expanded, counts itself alone (validation refuses both).
pub fn expanded_fields(document: &ExecutableDocument) -> usize {
    let mut expander = Expander {
        fragments: &document.fragments,
        sizes: HashMap::new(),
        expanding: Vec::new(),
    };
    match &document.operations {
        DocumentOperations::Single(op) => expander.selection_set(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops.values().fold(0, |sum, op| {
            sum.saturating_add(expander.selection_set(&op.node.selection_set.node))
        }),
    }
}

struct Expander<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    sizes: HashMap<&'a str, usize>,
    expanding: Vec<&'a str>,
}

impl<'a> Expander<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> usize {
        set.items.iter().fold(0, |sum, item| {
            let size = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.selection_set(&field.node.selection_set.node))
                }
                Selection::InlineFragment(fragment) => {
                    1usize.saturating_add(self.selection_set(&fragment.node.selection_set.node))
                }
                Selection::FragmentSpread(spread) => {
                    1usize.saturating_add(self.fragment(spread.node.fragment_name.node.as_str()))
                }
            };
            sum.saturating_add(size)
        })
    }

    fn fragment(&mut self, name: &'a str) -> usize {
        if let Some(size) = self.sizes.get(name) {
            return *size;
        }
        let Some((name, fragment)) = self.fragments.get_key_value(name) else {
            return 0; // an unknown fragment: validation names it
        };
        let name = name.as_str();
        if self.expanding.contains(&name) {
            return 0;
        }
        self.expanding.push(name);
        let size = self.selection_set(&fragment.node.selection_set.node);
        self.expanding.pop();
        self.sizes.insert(name, size);
        size
    }
}

/// Aliases multiply work without deepening a query, so the depth limit alone does not bound
/// them; each is counted where it is written.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    let operations: usize = match &document.operations {
        DocumentOperations::Single(op) => aliases_in(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops
            .values()
            .map(|op| aliases_in(&op.node.selection_set.node))
            .sum(),
    };
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| aliases_in(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

fn aliases_in(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases_in(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases_in(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    /// Fragments `F0`..`Fn`, each spreading the previous one twice.
    fn spread_bomb(levels: usize) -> String {
        let mut document = String::from("query { viewer { ...F0 } }\n");
        document.push_str("fragment F1 on Viewer { subject role }\n");
        for level in 2..=levels {
            let previous = level - 1;
            document.push_str(&format!(
                "fragment F{level} on Viewer {{ ...F{previous} ...F{previous} }}\n"
            ));
        }
        document.replace("...F0", &format!("...F{levels}"))
    }

    #[test]
    fn aliases_are_counted_in_operations_and_fragments() {
        let document = parse_query(
            "query { a: x b: y { c: z } ...F ... on Q { d: w } } fragment F on Q { e: v }",
        )
        .unwrap();
        assert_eq!(count_aliases(&document), 5);
    }

    #[test]
    fn spreads_expand_to_the_fields_they_stand_for() {
        let document = parse_query(
            "query One { a ...F ... on Q { b ...F } } fragment F on Q { c d { e } }\n\
             query Other { ...F }",
        )
        .unwrap();
        // a, the inline fragment, b, and three spreads of F (c, d, e).
        assert_eq!(expanded_fields(&document), 3 + 3 * (1 + 3));
    }

    #[test]
    fn doubling_fragments_are_counted_without_expanding_them() {
        let document = parse_query(spread_bomb(40)).unwrap();
        // viewer, the 2^40 - 1 spreads of F40..F1, and 2^39 copies of F1's two fields.
        assert_eq!(
            expanded_fields(&document),
            1 + (1usize << 40) - 1 + (1usize << 40)
        );
        let document = parse_query(spread_bomb(80)).unwrap();
        assert_eq!(expanded_fields(&document), usize::MAX);
    }

    #[test]
    fn fragment_cycles_end() {
        let document =
            parse_query("query { ...A } fragment A on Q { a ...B } fragment B on Q { b ...A }")
                .unwrap();
        // ...A, a, ...B, b, and the spread of A that closes the cycle.
        assert_eq!(expanded_fields(&document), 5);
    }

    #[test]
    fn spreads_of_unknown_fragments_are_counted() {
        // Doubling spreads that end in an unknown fragment select no field at all, but
        // walking them still visits every spread.
        let mut document = String::from("query { ...F30 }\nfragment F1 on Q { ...Missing }\n");
        for level in 2..=30 {
            let previous = level - 1;
            document.push_str(&format!(
                "fragment F{level} on Q {{ ...F{previous} ...F{previous} }}\n"
            ));
        }
        let document = parse_query(document).unwrap();
        assert!(expanded_fields(&document) > 1 << 30);
    }

    #[test]
    fn tokens_are_counted_as_the_grammar_reads_them() {
        let document = r#"
            # a comment { with [ punctuators ]
            query Q($id: ID! = "a \" }{ ", $n: [Int!] = [1, -2.5e3]) {
              user(lookup: {id: $id}) @include(if: true) { ...F }
              text: echo(s: """block " "" \""" string""")
            }
        "#;
        let expected = [
            "query", "Q", "(", "$", "id", ":", "ID", "!", "=", "\"a\"", "$", "n", ":", "[", "Int",
            "!", "]", "=", "[", "1", "-2.5e3", "]", ")", "{", "user", "(", "lookup", ":", "{",
            "id", ":", "$", "id", "}", ")", "@", "include", "(", "if", ":", "true", ")", "{",
            "...", "F", "}", "text", ":", "echo", "(", "s", ":", "\"\"\"", ")", "}",
        ];
        assert_eq!(count_tokens(document, 1000), Some(expected.len()));
        assert_eq!(count_tokens(document, expected.len()), Some(expected.len()));
        assert_eq!(count_tokens(document, expected.len() - 1), None);
    }

    #[test]
    fn tokens_run_together_are_counted_apart() {
        // Each of these parses as many tokens with nothing between them.
        assert_eq!(count_tokens("{a...F...F...F}", 100), Some(9));
        assert_eq!(count_tokens("[0-0-0-0]", 100), Some(6));
        assert_eq!(count_tokens("a\u{feff}b\u{feff}c", 100), Some(3));
        assert_eq!(count_tokens("1.5e-3 -2E+4 0.5", 100), Some(3));
    }
}
