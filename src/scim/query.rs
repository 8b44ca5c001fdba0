//! A SCIM filter as SQL over the tenant's users: filters run in the database, never over
//! users loaded into memory. Strings compare case-insensitively, but for the case-exact
//! `id` and `externalId`.

use entity::{approver_links, user_attributes, user_tags, users};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::Value as Json;

use super::filter::{AttrPath, Filter, Op};
use super::user::EMPLOYEE_NUMBER;
use super::{CORE_USER, ENTERPRISE_USER, ROSTER_USER, ScimError, ScimType};
use crate::auth::TenantId;

/// One page of the tenant's users that match, in id order, and how many match in all.
pub async fn page(
    conn: &impl ConnectionTrait,
    scope: &Scope<'_>,
    filter: Option<&Filter>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<users::Model>, u64), QueryError> {
    let mut condition = Condition::all().add(users::Column::Tenant.eq(scope.tenant.as_str()));
    if let Some(filter) = filter {
        condition = condition.add(sql(filter, scope)?);
    }
    let query = users::Entity::find().filter(condition);
    let total = query.clone().count(conn).await?;
    let users = if limit == 0 {
        Vec::new()
    } else {
        query
            .order_by_asc(users::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(conn)
            .await?
    };
    Ok((users, total))
}

/// Whose users a filter searches: a tenant's, and the source whose `externalId` is SCIM's.
pub struct Scope<'a> {
    pub tenant: &'a TenantId,
    /// The SCIM source (`ROSTER_SCIM_SOURCE`): `externalId` names a user within it only.
    pub source: &'a str,
}

#[derive(Debug)]
pub enum QueryError {
    Filter(ScimError),
    Db(DbErr),
}

impl From<DbErr> for QueryError {
    fn from(error: DbErr) -> Self {
        Self::Db(error)
    }
}

impl From<ScimError> for QueryError {
    fn from(error: ScimError) -> Self {
        Self::Filter(error)
    }
}

impl From<QueryError> for ScimError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Filter(error) => error,
            QueryError::Db(error) => error.into(),
        }
    }
}

pub(super) fn invalid(message: String) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, message)
}

fn always(yes: bool) -> SimpleExpr {
    Expr::cust(if yes { "1 = 1" } else { "1 = 0" })
}

fn sql(filter: &Filter, scope: &Scope<'_>) -> Result<SimpleExpr, ScimError> {
    Ok(match filter {
        Filter::And(a, b) => sql(a, scope)?.and(sql(b, scope)?),
        Filter::Or(a, b) => sql(a, scope)?.or(sql(b, scope)?),
        Filter::Not(inner) => sql(inner, scope)?.not(),
        Filter::Present(path) => target(path, scope)?.present(),
        Filter::Compare(path, op, value) => target(path, scope)?.compare(*op, value, path)?,
        Filter::ValuePath { attr, filter, then } => {
            let within = sub_filter(attr, filter, scope)?;
            match then {
                None => within,
                Some((sub, op, value)) => {
                    let path = AttrPath {
                        urn: attr.urn.clone(),
                        attr: attr.attr.clone(),
                        sub: Some(sub.clone()),
                    };
                    within.and(target(&path, scope)?.compare(*op, value, &path)?)
                }
            }
        }
    })
}

/// `emails[…]`, `phoneNumbers[…]`, `addresses[…]`: Roster keeps one value of each, of type
/// `work`, so a filter on their sub-attributes is a filter on that value.
fn sub_filter(
    attr: &AttrPath,
    filter: &Filter,
    scope: &Scope<'_>,
) -> Result<SimpleExpr, ScimError> {
    let inner = |path: &AttrPath| AttrPath {
        urn: attr.urn.clone(),
        attr: attr.attr.clone(),
        sub: Some(path.attr.clone()),
    };
    Ok(match filter {
        Filter::And(a, b) => sub_filter(attr, a, scope)?.and(sub_filter(attr, b, scope)?),
        Filter::Or(a, b) => sub_filter(attr, a, scope)?.or(sub_filter(attr, b, scope)?),
        Filter::Not(f) => sub_filter(attr, f, scope)?.not(),
        Filter::Present(path) => target(&inner(path), scope)?.present(),
        Filter::Compare(path, op, value) => {
            let path = inner(path);
            target(&path, scope)?.compare(*op, value, &path)?
        }
        Filter::ValuePath { .. } => {
            return Err(invalid(format!(
                "{attr}: a value filter cannot nest another"
            )));
        }
    })
}

/// What an attribute path compares against.
enum Target {
    /// A column; `lower` when it compares case-insensitively; `required` when never null.
    Column {
        column: users::Column,
        lower: bool,
        kind: Value,
    },
    /// A value every user has, such as an email's type.
    Constant(Json),
    /// `externalId`, which only the users of the SCIM source (this) have: another source's
    /// `externalId` is that source's key, not SCIM's.
    ExternalId(String),
    /// Users with a row in another table whose column matches.
    Related(Related),
}

#[derive(Clone, Copy)]
enum Value {
    Text,
    /// A key column, which holds its text lower-cased already: compared as it is (so its
    /// unique index serves `eq`) with the value lower-cased.
    Key,
    Id,
    Bool,
    Time,
    Language,
}

#[derive(Clone)]
enum Related {
    Tag(String),
    Attribute(String),
    Manager(String),
}

impl Related {
    fn subquery(&self, value: Option<(Op, &Json, &AttrPath)>) -> Result<SimpleExpr, ScimError> {
        let mut query = Query::select();
        let matching = |column: SimpleExpr| -> Result<Option<SimpleExpr>, ScimError> {
            value
                .map(|(op, value, path)| text_compare(column, op, value, path))
                .transpose()
        };
        match self {
            Self::Tag(tenant) => {
                query
                    .column(user_tags::Column::UserId)
                    .from(user_tags::Entity)
                    .and_where(user_tags::Column::Tenant.eq(tenant.as_str()));
                if let Some(condition) = matching(Expr::col(user_tags::Column::Tag))? {
                    query.and_where(condition);
                }
            }
            Self::Attribute(tenant) => {
                query
                    .column(user_attributes::Column::UserId)
                    .from(user_attributes::Entity)
                    .and_where(user_attributes::Column::Tenant.eq(tenant.as_str()))
                    .and_where(user_attributes::Column::Name.eq(EMPLOYEE_NUMBER));
                if let Some(condition) =
                    matching(Func::lower(Expr::col(user_attributes::Column::Value)).into())?
                {
                    query.and_where(condition);
                }
            }
            Self::Manager(tenant) => {
                query
                    .column(approver_links::Column::UserId)
                    .from(approver_links::Entity)
                    .and_where(approver_links::Column::Tenant.eq(tenant.as_str()))
                    .and_where(approver_links::Column::Label.eq("MANAGER"));
                if let Some((op, value, path)) = value {
                    let id = id_value(value, path)?;
                    query.and_where(ordered(
                        Expr::col(approver_links::Column::ApproverId),
                        op,
                        id.into(),
                        path,
                    )?);
                }
            }
        }
        Ok(users::Column::Id.in_subquery(query.to_owned()))
    }
}

fn target(path: &AttrPath, scope: &Scope<'_>) -> Result<Target, ScimError> {
    let column = |column, lower, kind| Target::Column {
        column,
        lower,
        kind,
    };
    let urn = path.urn.as_deref().map(str::to_ascii_lowercase);
    let attr = path.attr.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    let unknown = || invalid(format!("{path}: Roster cannot filter on this attribute"));
    let tenant = scope.tenant.as_str().to_owned();
    use users::Column as C;
    let core = urn
        .as_deref()
        .is_none_or(|u| u == CORE_USER.to_ascii_lowercase());
    if core {
        return Ok(match (attr.as_str(), sub.as_deref()) {
            ("id", None) => column(C::Id, false, Value::Id),
            ("externalid", None) => Target::ExternalId(scope.source.to_owned()),
            ("username", None) => column(C::LoginKey, false, Value::Key),
            ("name", Some("givenname")) => column(C::FirstName, true, Value::Text),
            ("name", Some("familyname")) => column(C::LastName, true, Value::Text),
            ("name", Some("middlename")) => column(C::MiddleName, true, Value::Text),
            ("title", None) => column(C::Title, true, Value::Text),
            ("active", None) => column(C::Active, false, Value::Bool),
            ("preferredlanguage", None) => column(C::Language, false, Value::Language),
            ("emails", None | Some("value")) => column(C::EmailKey, false, Value::Key),
            ("phonenumbers", None | Some("value")) => column(C::Phone, false, Value::Text),
            ("addresses", Some("locality")) => column(C::City, true, Value::Text),
            ("emails" | "phonenumbers" | "addresses", Some("type")) => {
                Target::Constant(Json::from("work"))
            }
            ("emails", Some("primary")) => Target::Constant(Json::Bool(true)),
            ("meta", Some("created")) => column(C::CreatedAt, false, Value::Time),
            ("meta", Some("lastmodified")) => column(C::UpdatedAt, false, Value::Time),
            _ => return Err(unknown()),
        });
    }
    Ok(match urn.as_deref() {
        Some(u) if u == ENTERPRISE_USER.to_ascii_lowercase() => {
            match (attr.as_str(), sub.as_deref()) {
                ("department", None) => column(C::Department, true, Value::Text),
                ("organization", None) => column(C::Company, true, Value::Text),
                ("employeenumber", None) => Target::Related(Related::Attribute(tenant)),
                ("manager", None | Some("value")) => Target::Related(Related::Manager(tenant)),
                _ => return Err(unknown()),
            }
        }
        Some(u) if u == ROSTER_USER.to_ascii_lowercase() => match (attr.as_str(), sub.as_deref()) {
            ("tags", None) => Target::Related(Related::Tag(tenant)),
            ("structureuid", None) => column(C::StructureUid, true, Value::Text),
            ("position", None) => column(C::Position, true, Value::Text),
            ("source", None) => column(C::Source, false, Value::Text),
            _ => return Err(unknown()),
        },
        _ => return Err(invalid(format!("{path}: unknown schema"))),
    })
}

impl Target {
    fn present(self) -> SimpleExpr {
        match self {
            Self::Column {
                column,
                kind: Value::Text | Value::Key,
                ..
            } => Expr::col(column)
                .is_not_null()
                .and(Expr::col(column).ne("")),
            Self::Column { column, .. } => Expr::col(column).is_not_null(),
            Self::Constant(_) => always(true),
            Self::ExternalId(source) => users::Column::Source.eq(source).and(
                Self::Column {
                    column: users::Column::ExternalId,
                    lower: false,
                    kind: Value::Text,
                }
                .present(),
            ),
            Self::Related(related) => related.subquery(None).unwrap_or_else(|_| always(false)),
        }
    }

    fn compare(self, op: Op, value: &Json, path: &AttrPath) -> Result<SimpleExpr, ScimError> {
        match self {
            Self::ExternalId(source) => {
                let column = Self::Column {
                    column: users::Column::ExternalId,
                    lower: false,
                    kind: Value::Text,
                };
                Ok(users::Column::Source
                    .eq(source)
                    .and(column.compare(op, value, path)?))
            }
            Self::Constant(constant) => Ok(always(match (op, &constant, value) {
                (Op::Eq, Json::String(a), Json::String(b)) => a.eq_ignore_ascii_case(b),
                (Op::Ne, Json::String(a), Json::String(b)) => !a.eq_ignore_ascii_case(b),
                (Op::Eq, a, b) => a == b,
                (Op::Ne, a, b) => a != b,
                _ => false,
            })),
            Self::Related(related) => {
                if value.is_null() {
                    return Err(invalid(format!("{path}: compare with pr, not null")));
                }
                let matched = related.subquery(Some((
                    if op == Op::Ne { Op::Eq } else { op },
                    value,
                    path,
                )))?;
                Ok(if op == Op::Ne { matched.not() } else { matched })
            }
            Self::Column {
                column,
                lower,
                kind,
            } => {
                if value.is_null() {
                    return match op {
                        Op::Eq => Ok(Expr::col(column).is_null()),
                        Op::Ne => Ok(Expr::col(column).is_not_null()),
                        _ => Err(invalid(format!("{path}: only eq and ne compare with null"))),
                    };
                }
                let col: SimpleExpr = Expr::col(column);
                match kind {
                    Value::Text if lower => text_compare(Func::lower(col).into(), op, value, path),
                    Value::Text => exact_compare(col, op, value, path),
                    Value::Key => text_compare(col, op, value, path),
                    Value::Id => ordered(col, op, id_value(value, path)?.into(), path),
                    Value::Bool => match (op, value) {
                        (Op::Eq, Json::Bool(b)) => Ok(col.eq(*b)),
                        (Op::Ne, Json::Bool(b)) => Ok(col.ne(*b)),
                        _ => Err(invalid(format!(
                            "{path}: compare with eq or ne and true or false"
                        ))),
                    },
                    Value::Time => {
                        let time = value
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .ok_or_else(|| {
                                invalid(format!("{path}: {value} is not an RFC 3339 time"))
                            })?;
                        ordered(col, op, time.with_timezone(&chrono::Utc).into(), path)
                    }
                    Value::Language => {
                        let code = value.as_str().unwrap_or_default();
                        let code = code
                            .split(['-', '_'])
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        exact_compare(col, op, &Json::String(code), path)
                    }
                }
            }
        }
    }
}

pub(super) fn id_value(value: &Json, path: &AttrPath) -> Result<i64, ScimError> {
    let text = match value {
        Json::String(text) => text.clone(),
        Json::Number(number) => number.to_string(),
        _ => String::new(),
    };
    text.trim()
        .parse::<i64>()
        .map_err(|_| invalid(format!("{path}: {value} is not a user id")))
}

pub(super) fn ordered(
    col: SimpleExpr,
    op: Op,
    value: sea_orm::Value,
    path: &AttrPath,
) -> Result<SimpleExpr, ScimError> {
    Ok(match op {
        Op::Eq => col.eq(value),
        Op::Ne => col.ne(value),
        Op::Gt => col.gt(value),
        Op::Ge => col.gte(value),
        Op::Lt => col.lt(value),
        Op::Le => col.lte(value),
        Op::Co | Op::Sw | Op::Ew => {
            return Err(invalid(format!(
                "{path}: co, sw and ew compare strings only"
            )));
        }
    })
}

pub(super) fn text_compare(
    col: SimpleExpr,
    op: Op,
    value: &Json,
    path: &AttrPath,
) -> Result<SimpleExpr, ScimError> {
    let Some(text) = value.as_str() else {
        return Err(invalid(format!("{path}: compare with a quoted string")));
    };
    like_or_order(col, op, &text.to_lowercase(), path)
}

pub(super) fn exact_compare(
    col: SimpleExpr,
    op: Op,
    value: &Json,
    path: &AttrPath,
) -> Result<SimpleExpr, ScimError> {
    let Some(text) = value.as_str() else {
        return Err(invalid(format!("{path}: compare with a quoted string")));
    };
    like_or_order(col, op, text, path)
}

fn like_or_order(
    col: SimpleExpr,
    op: Op,
    text: &str,
    path: &AttrPath,
) -> Result<SimpleExpr, ScimError> {
    let escaped = crate::users::store::escape_like(text);
    let like = |pattern: String| LikeExpr::new(pattern).escape('\\');
    Ok(match op {
        Op::Co => col.like(like(format!("%{escaped}%"))),
        Op::Sw => col.like(like(format!("{escaped}%"))),
        Op::Ew => col.like(like(format!("%{escaped}"))),
        _ => return ordered(col, op, text.into(), path),
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, EntityTrait, QueryFilter, QueryTrait};

    use super::*;

    /// The SQL a filter compiles to, on `backend`.
    fn sql_of(filter: &str, backend: DbBackend) -> String {
        let tenant = TenantId::parse("t1").expect("a tenant");
        let scope = Scope {
            tenant: &tenant,
            source: "scim",
        };
        let filter = super::super::filter::parse(filter).expect("a filter");
        users::Entity::find()
            .filter(sql(&filter, &scope).expect("SQL"))
            .build(backend)
            .to_string()
    }

    /// `userName eq` and `emails eq`, the first call of every identity provider, compare
    /// the lower-cased key columns as they are, so their unique indexes serve them.
    #[test]
    fn user_name_and_email_eq_compare_the_key_columns_as_stored() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let login = sql_of(r#"userName eq "Ann@Example.com""#, backend);
            assert!(
                login.contains(r#"WHERE "login_key" = 'ann@example.com'"#),
                "{login}"
            );
            let email = sql_of(
                r#"emails[type eq "work"].value eq "Ann@Example.com""#,
                backend,
            );
            assert!(
                email.contains(r#""email_key" = 'ann@example.com'"#),
                "{email}"
            );
            assert!(!login.to_lowercase().contains("lower("), "{login}");
        }
    }
}
