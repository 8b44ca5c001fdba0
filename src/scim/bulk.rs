//! `POST /Bulk` (RFC 7644 §3.7): many operations in one request, answered synchronously with
//! a result for each. Each operation runs through the very service a request of its own
//! would, and stands alone: one failing writes nothing of its own and leaves the others.
//! `bulkId:x` anywhere in a path or a value names the resource the operation of `bulkId` x
//! created, whatever their order: the operations are ordered once by what they name
//! (a topological order), and one whose creator failed is answered as such.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use super::service::{self, Context};
use super::{BULK_REQUEST, BULK_RESPONSE, ScimError, ScimResult, ScimType, group};

/// The most operations one request may carry (`bulk.maxOperations`).
pub const MAX_OPERATIONS: usize = 1000;

/// One operation as sent.
struct Operation {
    method: String,
    bulk_id: Option<String>,
    path: String,
    data: Json,
    /// `version`: the operation's `If-Match`.
    version: Option<String>,
}

/// Runs a `BulkRequest`; the answer is a `BulkResponse` whatever the operations did.
pub async fn run(cx: &Context<'_>, body: &Json) -> ScimResult<Json> {
    let (operations, fail_on_errors) = parse(body)?;
    let named: Vec<Vec<Reference>> = operations.iter().map(named_ids).collect();
    let order = Order::of(&operations, &named);
    let mut ids: HashMap<String, Created> = HashMap::new();
    let mut results: Vec<Option<Json>> = vec![None; operations.len()];
    let mut errors = 0usize;
    let mut ready = order.ready();
    let mut waiting = order.waiting.clone();
    // Operations run as soon as every operation they name has run, in request order
    // where they are free to; each runs once.
    while let Some(std::cmp::Reverse(index)) = ready.pop() {
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
        let operation = &operations[index];
        let named = &named[index];
        let outcome = if let Some(r) = named.iter().find(|r| !order.creators.contains_key(&r.id)) {
            Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("bulkId:{} names no operation of this request", r.id),
            ))
        } else if let Some(r) = named.iter().find(|r| !ids.contains_key(&r.id)) {
            Err(ScimError::bad(
                ScimType::InvalidValue,
                format!(
                    "bulkId:{}: the operation that was to create it failed, so this one did not run",
                    r.id
                ),
            ))
        } else if let Err(error) = of_their_types(named, &ids) {
            Err(error)
        } else {
            let path = resolve(&Json::String(operation.path.clone()), &ids);
            let data = resolve(&operation.data, &ids);
            let path = path.as_str().unwrap_or("");
            let version = operation.version.as_deref();
            dispatch(cx, &operation.method, path, &data, version).await
        };
        results[index] = Some(result(operation, outcome, &mut ids, &mut errors));
        for &next in &order.dependents[index] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(std::cmp::Reverse(next));
            }
        }
    }
    let stopped = fail_on_errors.is_some_and(|limit| errors >= limit);
    let answers: Vec<Json> = operations
        .iter()
        .zip(results)
        .filter_map(|(operation, result)| match result {
            Some(result) => Some(result),
            None if stopped => None, // not run: failOnErrors was reached
            None => Some(failed(
                operation,
                &ScimError::bad(
                    ScimType::InvalidValue,
                    "its bulkIds wait on each other in a cycle",
                ),
            )),
        })
        .collect();
    Ok(json!({ "schemas": [BULK_RESPONSE], "Operations": answers }))
}

/// The order of a request's operations by what they name, built once: which POST declares
/// each bulkId, how many operations each waits for, and which wait for each.
struct Order {
    creators: HashMap<String, usize>,
    waiting: Vec<usize>,
    dependents: Vec<Vec<usize>>,
}

impl Order {
    fn of(operations: &[Operation], named: &[Vec<Reference>]) -> Self {
        let creators: HashMap<String, usize> = operations
            .iter()
            .enumerate()
            .filter(|(_, o)| o.method == "POST")
            .filter_map(|(index, o)| o.bulk_id.clone().map(|id| (id, index)))
            .collect();
        let mut waiting = vec![0; operations.len()];
        let mut dependents = vec![Vec::new(); operations.len()];
        for (index, references) in named.iter().enumerate() {
            let mut on: Vec<usize> = references
                .iter()
                .filter_map(|r| creators.get(&r.id).copied())
                .collect();
            on.sort_unstable();
            on.dedup();
            waiting[index] = on.len();
            for creator in on {
                dependents[creator].push(index);
            }
        }
        Self {
            creators,
            waiting,
            dependents,
        }
    }

    /// The operations that wait for none, smallest index first.
    fn ready(&self) -> std::collections::BinaryHeap<std::cmp::Reverse<usize>> {
        self.waiting
            .iter()
            .enumerate()
            .filter(|(_, waiting)| **waiting == 0)
            .map(|(index, _)| std::cmp::Reverse(index))
            .collect()
    }
}

fn parse(body: &Json) -> ScimResult<(Vec<Operation>, Option<usize>)> {
    let field = |object: &Json, name: &str| {
        object
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
    };
    let schemas_ok = field(body, "schemas")
        .and_then(|s| s.as_array().cloned())
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(BULK_REQUEST)));
    if !schemas_ok {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("schemas: must hold {BULK_REQUEST}"),
        ));
    }
    let fail_on_errors = match field(body, "failOnErrors") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
            n.as_u64().and_then(|n| usize::try_from(n).ok())
        }
        Some(other) => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("failOnErrors: {other} is not a number above 0"),
            ));
        }
    };
    let Some(Json::Array(items)) = field(body, "Operations") else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "Operations: must be a list",
        ));
    };
    if items.len() > MAX_OPERATIONS {
        return Err(ScimError {
            status: 413,
            scim_type: Some(ScimType::TooMany),
            detail: format!(
                "{} operations; at most {MAX_OPERATIONS} in one request (bulk.maxOperations), nothing was written",
                items.len()
            ),
        });
    }
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut operations = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let text = |name: &str| field(item, name).and_then(|v| v.as_str().map(str::to_owned));
        let method = text("method").unwrap_or_default().to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            problems.push(format!(
                "Operations[{index}].method: {method:?} is not POST, PUT, PATCH or DELETE"
            ));
        }
        let bulk_id = text("bulkId");
        if method == "POST" && bulk_id.is_none() {
            problems.push(format!("Operations[{index}].bulkId: a POST needs one"));
        }
        if let Some(id) = &bulk_id
            && !seen.insert(id.clone())
        {
            problems.push(format!(
                "Operations[{index}].bulkId: {id:?} names two operations"
            ));
        }
        let Some(path) = text("path") else {
            problems.push(format!("Operations[{index}].path: is required"));
            continue;
        };
        operations.push(Operation {
            method,
            bulk_id,
            path,
            data: field(item, "data").unwrap_or(Json::Null),
            version: text("version"),
        });
    }
    if problems.is_empty() {
        Ok((operations, fail_on_errors))
    } else {
        Err(ScimError::many(ScimType::InvalidValue, &problems))
    }
}

/// What operation of a request created, by its bulkId: the resource type and its id.
struct Created {
    kind: Kind,
    id: String,
}

/// The resource types an operation creates or names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    User,
    Group,
}

impl Kind {
    /// The type of the resources under a path's first segment (`/Users/…`).
    fn of_path(path: &str) -> Option<Self> {
        let first = path.trim_start_matches('/').split('/').next()?;
        match first {
            "Users" => Some(Self::User),
            "Groups" => Some(Self::Group),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// A `bulkId:x` an operation names, and the type of resource it must name there.
struct Reference {
    id: String,
    kind: Kind,
}

/// Every `bulkId:x` an operation names, in its path or anywhere in its data. In a path
/// (`/Groups/bulkId:x`, a `$ref`) the segment before names the type; alone in a value it is
/// a user, as every value that holds an id in Roster's resources (a member, a manager) is.
fn named_ids(operation: &Operation) -> Vec<Reference> {
    fn walk(value: &Json, out: &mut Vec<Reference>) {
        match value {
            Json::String(text) => {
                if let Some(id) = reference(text) {
                    let before = text[..text.len() - text.rsplit('/').next().unwrap_or("").len()]
                        .trim_end_matches('/');
                    let kind = match before.rsplit('/').next() {
                        Some("Groups") => Kind::Group,
                        _ => Kind::User,
                    };
                    out.push(Reference {
                        id: id.to_owned(),
                        kind,
                    });
                }
            }
            Json::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Json::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&Json::String(operation.path.clone()), &mut out);
    walk(&operation.data, &mut out);
    out
}

/// Refuses a bulkId that names a resource of another type than its place calls for (a
/// group as a member or a manager, a user in `/Groups/bulkId:x`).
fn of_their_types(named: &[Reference], ids: &HashMap<String, Created>) -> ScimResult<()> {
    let problems: Vec<String> = named
        .iter()
        .filter_map(|r| {
            let created = ids.get(&r.id)?;
            (created.kind != r.kind).then(|| {
                format!(
                    "bulkId:{} names a {}, where a {} is expected",
                    r.id,
                    created.kind.as_str(),
                    r.kind.as_str()
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ScimError::many(ScimType::InvalidValue, &problems))
    }
}

/// The bulkId a text names: `bulkId:x`, alone or as the last segment of a path.
fn reference(text: &str) -> Option<&str> {
    let last = text.rsplit('/').next().unwrap_or(text);
    last.strip_prefix("bulkId:")
}

/// `value` with every `bulkId:x` replaced by the id x's operation created.
fn resolve(value: &Json, ids: &HashMap<String, Created>) -> Json {
    match value {
        Json::String(text) => match reference(text).and_then(|id| ids.get(id)) {
            Some(Created { id, .. }) => {
                let prefix = &text[..text.len() - text.rsplit('/').next().unwrap_or("").len()];
                Json::String(format!("{prefix}{id}"))
            }
            None => value.clone(),
        },
        Json::Array(items) => Json::Array(items.iter().map(|v| resolve(v, ids)).collect()),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(v, ids)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Runs one operation as its own request would; the answer's status and resource.
async fn dispatch(
    cx: &Context<'_>,
    method: &str,
    path: &str,
    data: &Json,
    version: Option<&str>,
) -> ScimResult<(u16, Option<Json>)> {
    let path = path.trim_matches('/');
    let (kind, id) = match path.split_once('/') {
        Some((kind, id)) => (kind, Some(id)),
        None => (path, None),
    };
    match (kind, method, id) {
        ("Users", "POST", None) => Ok((201, Some(service::create(cx, data).await?))),
        ("Users", "PUT", Some(id)) => {
            Ok((200, Some(service::replace(cx, id, data, version).await?)))
        }
        ("Users", "PATCH", Some(id)) => {
            Ok((200, Some(service::patch(cx, id, data, version).await?)))
        }
        ("Users", "DELETE", Some(id)) => service::deactivate(cx, id, version)
            .await
            .map(|()| (204, None)),
        ("Groups", "POST", None) => Ok((201, Some(group::create(cx, data).await?))),
        ("Groups", "PUT", Some(id)) => {
            Ok((200, Some(group::replace(cx, id, data, version).await?)))
        }
        ("Groups", "PATCH", Some(id)) => {
            Ok((200, Some(group::patch(cx, id, data, version).await?)))
        }
        ("Groups", "DELETE", Some(id)) => {
            group::delete(cx, id, version).await.map(|()| (204, None))
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidPath,
            format!("{method} /{path} is not an operation of Users or Groups"),
        )),
    }
}

fn result(
    operation: &Operation,
    outcome: ScimResult<(u16, Option<Json>)>,
    ids: &mut HashMap<String, Created>,
    errors: &mut usize,
) -> Json {
    match outcome {
        Ok((status, resource)) => {
            let mut answer = json!({ "method": operation.method, "status": status.to_string() });
            if let Some(bulk_id) = &operation.bulk_id {
                answer["bulkId"] = json!(bulk_id);
            }
            if let Some(resource) = resource {
                if let (Some(bulk_id), Some(id), Some(kind)) = (
                    &operation.bulk_id,
                    resource["id"].as_str(),
                    Kind::of_path(&operation.path),
                ) {
                    ids.insert(
                        bulk_id.clone(),
                        Created {
                            kind,
                            id: id.to_owned(),
                        },
                    );
                }
                answer["location"] = resource["meta"]["location"].clone();
                answer["version"] = resource["meta"]["version"].clone();
            }
            answer
        }
        Err(error) => {
            *errors += 1;
            failed(operation, &error)
        }
    }
}

fn failed(operation: &Operation, error: &ScimError) -> Json {
    let mut answer = json!({
        "method": operation.method,
        "status": error.status.to_string(),
        "response": error.body(),
    });
    if let Some(bulk_id) = &operation.bulk_id {
        answer["bulkId"] = json!(bulk_id);
    }
    answer
}
