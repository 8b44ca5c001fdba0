//! The users export: every user of a tenant as CSV, produced page by page so that memory
//! stays flat however many users there are. A cell that a spreadsheet would run as a formula
//! is written as text ([`csv_format::write_record`]).

use entity::{user_attributes, users};
use futures_util::stream::{self, Stream, StreamExt};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::domain::AttributeType;
use super::profile::{Attribute, RawAttribute};
use super::store::{self, UserFilter};
use crate::auth::TenantId;
use crate::error::{AppError, AppResult};
use crate::jobs::csv as csv_format;

/// Users read and written per step.
pub const CHUNK: u64 = 200;

/// The fixed columns, in the contract's input names, so that an export can be edited and
/// imported again (`importUsersCsv` reads every cell back as it was); then the attribute
/// columns ([`AttributeColumns`]).
pub const COLUMNS: [&str; 29] = [
    "id",
    "externalId",
    "source",
    "email",
    "login",
    "firstName",
    "middleName",
    "lastName",
    "title",
    "birthDate",
    "gender",
    "active",
    "phone",
    "city",
    "department",
    "position",
    "company",
    "workContact",
    "structureUid",
    "language",
    "facebookId",
    "googleId",
    "employmentStartDate",
    "employmentEndDate",
    "positionAssignedDate",
    "tags",
    "customInfo",
    "createdAt",
    "updatedAt",
];

/// The CSV of every user of `tenant`, in id order, as a stream of byte chunks: the header
/// first, then up to [`CHUNK`] users per item.
pub async fn users_csv(
    db: DatabaseConnection,
    tenant: TenantId,
) -> AppResult<impl Stream<Item = AppResult<Vec<u8>>>> {
    let kinds: Vec<(String, String, Option<String>)> = user_attributes::Entity::find()
        .select_only()
        .column(user_attributes::Column::Name)
        .column(user_attributes::Column::Kind)
        .column(user_attributes::Column::Class)
        .distinct()
        .filter(user_attributes::Column::Tenant.eq(tenant.as_str()))
        .order_by_asc(user_attributes::Column::Name)
        .into_tuple()
        .all(&db)
        .await?;
    let attributes = AttributeColumns::new(&kinds);
    let mut header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    header.extend(attributes.header());
    let header = write_rows([header])?;

    let pages = stream::try_unfold(Some(0_i64), move |after| {
        let db = db.clone();
        let tenant = tenant.clone();
        let attributes = attributes.clone();
        async move {
            let Some(after) = after else { return Ok(None) };
            let users =
                store::page(&db, &tenant, &UserFilter::default(), Some(after), CHUNK).await?;
            let Some(last) = users.last().map(|u| u.id) else {
                return Ok(None);
            };
            let next = (users.len() as u64 == CHUNK).then_some(last);
            let chunk = rows(&db, &tenant, &users, &attributes).await?;
            Ok::<_, AppError>(Some((chunk, next)))
        }
    });
    Ok(stream::once(async { Ok(header) }).chain(pages))
}

/// How the tenant's attributes are written: a column per name whose attributes all have
/// one type and no class (`attr:<name>`, `attr:<name>:<TYPE>`), and the rest, typed and
/// classed, in one `attributes` column as JSON, so that every attribute reads back the same.
#[derive(Debug, Clone)]
struct AttributeColumns {
    /// The names with a column of their own, and their type.
    columns: Vec<(String, AttributeType)>,
    /// The names written in the `attributes` column.
    listed: Vec<String>,
}

impl AttributeColumns {
    /// From the tenant's distinct `(name, type, class)`, in name order.
    fn new(kinds: &[(String, String, Option<String>)]) -> Self {
        let mut columns: Vec<(String, AttributeType)> = Vec::new();
        let mut listed: Vec<String> = Vec::new();
        for (name, kind, class) in kinds {
            let kind = AttributeType::from_stored(kind).unwrap_or(AttributeType::String);
            let plain =
                class.is_none() && kinds.iter().filter(|(other, _, _)| other == name).count() == 1;
            if plain {
                columns.push((name.clone(), kind));
            } else if !listed.contains(name) {
                listed.push(name.clone());
            }
        }
        Self { columns, listed }
    }

    fn header(&self) -> impl Iterator<Item = String> {
        let columns = self
            .columns
            .iter()
            .map(|(name, kind)| csv_format::attribute_column(name, *kind));
        columns.chain((!self.listed.is_empty()).then(|| "attributes".to_owned()))
    }

    /// A user's cells under [`AttributeColumns::header`].
    fn cells(&self, own: &[Attribute]) -> impl Iterator<Item = String> {
        let columns = self.columns.iter().map(|(name, _)| {
            own.iter()
                .find(|a| &a.name == name)
                .map(|a| a.value.clone())
                .unwrap_or_default()
        });
        let listed: Vec<RawAttribute> = own
            .iter()
            .filter(|a| self.listed.contains(&a.name))
            .map(|a| RawAttribute {
                name: a.name.clone(),
                value: Some(a.value.clone()),
                kind: a.kind,
                class: a.class.clone(),
            })
            .collect();
        let listed = (!self.listed.is_empty()).then(|| {
            if listed.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&listed).unwrap_or_default()
            }
        });
        columns.chain(listed)
    }
}

async fn rows(
    db: &DatabaseConnection,
    tenant: &TenantId,
    users: &[users::Model],
    attribute_columns: &AttributeColumns,
) -> AppResult<Vec<u8>> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut tags = store::tags_of(db, tenant, &ids).await?;
    let mut attributes = store::attributes_of(db, tenant, &ids).await?;
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let records = users.iter().map(|u| {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut record = vec![
            u.id.to_string(),
            u.external_id.clone(),
            u.source.clone(),
            u.email.clone(),
            u.login.clone(),
            u.first_name.clone(),
            text(&u.middle_name),
            u.last_name.clone(),
            text(&u.title),
            date(u.birth_date).unwrap_or_default(),
            text(&u.gender),
            u.active.to_string(),
            text(&u.phone),
            text(&u.city),
            text(&u.department),
            text(&u.position),
            text(&u.company),
            text(&u.work_contact),
            text(&u.structure_uid),
            text(&u.language),
            text(&u.facebook_id),
            text(&u.google_id),
            date(u.employment_start_date).unwrap_or_default(),
            date(u.employment_end_date).unwrap_or_default(),
            date(u.position_assigned_date).unwrap_or_default(),
            tags.remove(&u.id)
                .filter(|tags| !tags.is_empty())
                .map(|tags| {
                    csv_format::tags_cell(&tags.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .unwrap_or_default(),
            u.custom_info
                .as_ref()
                .map(csv_format::custom_info_cell)
                .unwrap_or_default(),
            u.created_at.to_rfc3339(),
            u.updated_at.to_rfc3339(),
        ];
        let own = attributes.remove(&u.id).unwrap_or_default();
        record.extend(attribute_columns.cells(&own));
        record
    });
    write_rows(records)
}

fn write_rows(records: impl IntoIterator<Item = Vec<String>>) -> AppResult<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        csv_format::write_record(&mut writer, record.iter().map(String::as_str))?;
    }
    writer
        .into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("CSV buffer: {e}")))
}
