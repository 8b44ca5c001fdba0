//! Content negotiation for GraphQL over HTTP.

use axum::http::{HeaderMap, header};

/// The media type a GraphQL response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/graphql-response+json`: request errors answer HTTP 400 without `data`.
    GraphQLResponseJson,
    /// `application/json`: the legacy type; request errors still answer HTTP 200.
    Json,
}

impl ResponseFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Graphql(ResponseFormat),
    /// A browser asking for the GraphiQL page (only offered on GET).
    Html,
    NotAcceptable,
}

/// (q, specificity, -position in Accept, -position in offers): higher wins.
type Score = (f32, u8, isize, isize);

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
const HTML: &str = "text/html";

/// Picks the offered type with the highest `q`; on a tie an exact match beats a wildcard,
/// then the client's own order decides, then ours (plain JSON first, as the spec advises
/// for `*/*`). No `Accept` at all means JSON.
pub fn negotiate(headers: &HeaderMap, offer_html: bool) -> Accepted {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    else {
        return Accepted::Graphql(ResponseFormat::Json);
    };
    let mut offers = vec![JSON, GRAPHQL_RESPONSE_JSON];
    if offer_html {
        offers.push(HTML);
    }
    let ranges: Vec<(&str, f32)> = accept.split(',').filter_map(parse_range).collect();

    let mut best: Option<(Score, &str)> = None;
    for (offer_index, offer) in offers.iter().enumerate() {
        let matched = ranges
            .iter()
            .enumerate()
            .filter_map(|(i, (range, q))| specificity(range, offer).map(|s| (*q, s, i)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
        if let Some((q, spec, position)) = matched
            && q > 0.0
        {
            let score = (q, spec, -(position as isize), -(offer_index as isize));
            if best.is_none_or(|(b, _)| score.partial_cmp(&b).is_some_and(|o| o.is_gt())) {
                best = Some((score, offer));
            }
        }
    }
    match best.map(|(_, offer)| offer) {
        Some(GRAPHQL_RESPONSE_JSON) => Accepted::Graphql(ResponseFormat::GraphQLResponseJson),
        Some(JSON) => Accepted::Graphql(ResponseFormat::Json),
        Some(_) => Accepted::Html,
        None => Accepted::NotAcceptable,
    }
}

fn parse_range(item: &str) -> Option<(&str, f32)> {
    let mut parts = item.split(';').map(str::trim);
    let range = parts.next().filter(|r| !r.is_empty())?;
    let q = parts
        .filter_map(|p| p.strip_prefix("q="))
        .find_map(|q| q.parse::<f32>().ok())
        .unwrap_or(1.0);
    Some((range, q))
}

/// 2 for an exact match, 1 for `type/*`, 0 for `*/*`.
fn specificity(range: &str, offer: &str) -> Option<u8> {
    if range.eq_ignore_ascii_case(offer) {
        return Some(2);
    }
    let (range_type, range_sub) = range.split_once('/')?;
    let (offer_type, _) = offer.split_once('/')?;
    match (range_type, range_sub) {
        ("*", "*") => Some(0),
        (t, "*") if t.eq_ignore_ascii_case(offer_type) => Some(1),
        _ => None,
    }
}

/// The kind of a POST body, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    /// The GraphQL multipart request spec (file uploads); holds the whole header value.
    Multipart(String),
}

pub fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime: mime::Mime = value.parse().ok()?;
    match (mime.type_(), mime.subtype()) {
        (mime::APPLICATION, mime::JSON) => {
            let utf8 = mime
                .get_param(mime::CHARSET)
                .is_none_or(|c| c == mime::UTF_8);
            utf8.then_some(BodyKind::Json)
        }
        (mime::MULTIPART, mime::FORM_DATA) => Some(BodyKind::Multipart(value.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str, html: bool) -> Accepted {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers, html)
    }

    #[test]
    fn picks_the_requested_type() {
        use ResponseFormat::*;
        assert_eq!(accept("application/json", false), Accepted::Graphql(Json));
        assert_eq!(
            accept("application/graphql-response+json", false),
            Accepted::Graphql(GraphQLResponseJson)
        );
        assert_eq!(accept("*/*", false), Accepted::Graphql(Json));
        assert_eq!(accept("application/*", false), Accepted::Graphql(Json));
        assert_eq!(
            accept(
                "application/graphql-response+json, application/json;q=0.9",
                false
            ),
            Accepted::Graphql(GraphQLResponseJson)
        );
        assert_eq!(
            accept("application/json, application/graphql-response+json", false),
            Accepted::Graphql(Json)
        );
        assert_eq!(
            accept("application/json;q=0, */*", false),
            Accepted::Graphql(GraphQLResponseJson)
        );
        assert_eq!(accept("text/plain", false), Accepted::NotAcceptable);
    }

    #[test]
    fn browsers_get_html_only_where_offered() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(accept(browser, true), Accepted::Html);
        assert_eq!(
            accept(browser, false),
            Accepted::Graphql(ResponseFormat::Json)
        );
    }

    #[test]
    fn body_kinds() {
        let kind = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            body_kind(&headers)
        };
        assert_eq!(kind("application/json"), Some(BodyKind::Json));
        assert_eq!(
            kind("application/json; charset=utf-8"),
            Some(BodyKind::Json)
        );
        assert_eq!(kind("application/json; charset=latin1"), None);
        assert_eq!(kind("text/plain"), None);
        assert!(matches!(
            kind("multipart/form-data; boundary=x"),
            Some(BodyKind::Multipart(_))
        ));
    }
}
