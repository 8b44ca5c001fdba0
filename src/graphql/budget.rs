//! The response-size budget: a response is cut off, with one clear error, as soon as what
//! it has resolved would serialize past `ROSTER_MAX_RESPONSE` bytes.
//!
//! Complexity bounds a response by estimates (a list's `first`, or its typical size); this
//! bounds it by what is actually there, while it is resolved, so no query can grow the
//! process without limit whatever its lists hold. Each field's value is counted once: a
//! field of an object type counts its name and braces (its own fields count themselves as
//! they resolve), a scalar or enum field counts its whole value as JSON would write it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextResolve, NextSubscribe,
    ResolveInfo,
};
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use async_graphql::{Response, ServerError, ServerResult, Value};
use futures_util::stream::{BoxStream, StreamExt};

use crate::error::ErrorCode;

/// Builds one budget per operation (a subscription's budget starts afresh for each event).
pub struct ResponseBudget {
    max_bytes: usize,
    composite: Arc<HashSet<String>>,
}

impl ResponseBudget {
    /// `sdl` is the schema's, read once for its object, interface and union type names.
    pub fn new(max_bytes: usize, sdl: &str) -> Self {
        let composite = async_graphql::parser::parse_schema(sdl)
            .map(|document| {
                document
                    .definitions
                    .into_iter()
                    .filter_map(|definition| match definition {
                        TypeSystemDefinition::Type(ty) => match ty.node.kind {
                            TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_) => {
                                Some(ty.node.name.node.to_string())
                            }
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            max_bytes,
            composite: Arc::new(composite),
        }
    }
}

impl ExtensionFactory for ResponseBudget {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Budget {
            max_bytes: self.max_bytes,
            composite: self.composite.clone(),
            spent: Arc::new(AtomicUsize::new(0)),
            exceeded: Arc::new(AtomicBool::new(false)),
        })
    }
}

struct Budget {
    max_bytes: usize,
    composite: Arc<HashSet<String>>,
    spent: Arc<AtomicUsize>,
    exceeded: Arc<AtomicBool>,
}

impl Budget {
    fn error(max_bytes: usize) -> ServerError {
        let mut error = ServerError::new(
            format!(
                "the response would be larger than {max_bytes} bytes (ROSTER_MAX_RESPONSE) and \
                 was cut off (what a mutation wrote stays written): select fewer fields or ask \
                 for smaller pages (`first`)"
            ),
            None,
        );
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", ErrorCode::BadUserInput.as_str());
        error
    }

    fn is_composite(&self, return_type: &str) -> bool {
        let named = return_type.trim_matches(|c| matches!(c, '[' | ']' | '!'));
        named.starts_with("__") || self.composite.contains(named)
    }

    /// What a resolved value adds to the response. A field adds its key, a list item a
    /// comma; then a scalar or enum adds its whole value, while a list or an object adds
    /// only its brackets or braces: its items and fields are resolved one by one, and count
    /// themselves.
    fn cost(&self, info: &ResolveInfo<'_>) -> impl Fn(Option<&Value>) -> usize + use<> {
        let item = info.parent_type.starts_with('[');
        let key = if item {
            1
        } else {
            info.alias.unwrap_or(info.name).len() + 4 // "key": and a comma
        };
        let list = info.return_type.trim_end_matches('!').starts_with('[');
        let container = list || self.is_composite(info.return_type);
        move |value| {
            key + match value {
                None => 4,
                Some(_) if container => 2,
                Some(value) => json_len(value),
            }
        }
    }
}

/// Bytes `value` takes as compact JSON, near enough: escapes are not counted.
fn json_len(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Boolean(true) => 4,
        Value::Boolean(false) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Enum(name) => name.len() + 2,
        Value::Binary(bytes) => bytes.len() * 4 / 3 + 4,
        Value::List(items) => 2 + items.iter().map(|item| json_len(item) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(key, item)| key.len() + 4 + json_len(item))
                .sum::<usize>()
        }
    }
}

#[async_trait::async_trait]
impl Extension for Budget {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let response = next.run(ctx).await;
        if self.exceeded.load(Ordering::Acquire) {
            return Response::from_errors(vec![Self::error(self.max_bytes)]);
        }
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let (spent, exceeded, max_bytes) =
            (self.spent.clone(), self.exceeded.clone(), self.max_bytes);
        next.run(ctx, stream)
            .map(move |response| {
                spent.store(0, Ordering::Release);
                if exceeded.swap(false, Ordering::AcqRel) {
                    Response::from_errors(vec![Self::error(max_bytes)])
                } else {
                    response
                }
            })
            .boxed()
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if self.exceeded.load(Ordering::Acquire) {
            return Err(Self::error(self.max_bytes));
        }
        let cost_of = self.cost(&info);
        let value = next.run(ctx, info).await?;
        let cost = cost_of(value.as_ref());
        let spent = self.spent.fetch_add(cost, Ordering::AcqRel) + cost;
        if spent > self.max_bytes {
            self.exceeded.store(true, Ordering::Release);
            return Err(Self::error(self.max_bytes));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    use super::*;

    #[derive(SimpleObject, Clone)]
    struct Item {
        name: String,
    }

    struct Query;

    #[Object]
    impl Query {
        async fn items(&self, count: usize) -> Vec<Item> {
            vec![
                Item {
                    name: "x".repeat(100)
                };
                count
            ]
        }
        async fn blob(&self, bytes: usize) -> String {
            "y".repeat(bytes)
        }
        async fn names(&self, count: usize) -> Vec<String> {
            vec!["z".repeat(50); count]
        }
    }

    fn schema(max_bytes: usize) -> Schema<Query, EmptyMutation, EmptySubscription> {
        let sdl = Schema::new(Query, EmptyMutation, EmptySubscription).sdl();
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(ResponseBudget::new(max_bytes, &sdl))
            .finish()
    }

    fn written(response: &Response) -> usize {
        serde_json::to_string(response).unwrap().len()
    }

    #[tokio::test]
    async fn a_response_within_the_budget_is_whole() {
        let response = schema(20_000)
            .execute("{ items(count: 100) { name } }")
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert!(written(&response) > 10_000);
    }

    #[tokio::test]
    async fn many_small_values_past_the_budget_cut_the_response_off() {
        let response = schema(5_000)
            .execute("{ items(count: 100) { name } }")
            .await;
        assert_eq!(response.data, Value::Null);
        assert_eq!(response.errors.len(), 1);
        assert!(response.errors[0].message.contains("ROSTER_MAX_RESPONSE"));
    }

    #[tokio::test]
    async fn one_large_value_past_the_budget_cuts_the_response_off() {
        let response = schema(5_000).execute("{ blob(bytes: 6000) }").await;
        assert_eq!(response.data, Value::Null);
        assert!(response.errors[0].message.contains("5000 bytes"));
    }

    #[tokio::test]
    async fn the_count_is_close_to_what_is_written() {
        let query = "{ items(count: 50) { name } blob(bytes: 3000) names(count: 200) }";
        let whole = written(&schema(usize::MAX).execute(query).await);
        assert!(schema(whole + whole / 10).execute(query).await.is_ok());
        assert!(schema(whole - whole / 10).execute(query).await.is_err());
    }
}
