//! The users export: every user of a tenant as CSV, produced page by page so that memory
//! stays flat however many users there are.

use entity::{user_attributes, users};
use futures_util::stream::{self, Stream, StreamExt};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::store::{self, UserFilter};
use crate::auth::TenantId;
use crate::error::{AppError, AppResult};

/// Users read and written per step.
pub const CHUNK: u64 = 200;

/// The fixed columns, in the contract's input names, so that an export can be edited and
/// imported again; then one `attr:<name>` column per attribute name used in the tenant.
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
    let attribute_names: Vec<String> = user_attributes::Entity::find()
        .select_only()
        .column(user_attributes::Column::Name)
        .distinct()
        .filter(user_attributes::Column::Tenant.eq(tenant.as_str()))
        .order_by_asc(user_attributes::Column::Name)
        .into_tuple()
        .all(&db)
        .await?;
    let mut header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    header.extend(attribute_names.iter().map(|name| format!("attr:{name}")));
    let header = write_rows([header])?;

    let pages = stream::try_unfold(Some(0_i64), move |after| {
        let db = db.clone();
        let tenant = tenant.clone();
        let attribute_names = attribute_names.clone();
        async move {
            let Some(after) = after else { return Ok(None) };
            let users =
                store::page(&db, &tenant, &UserFilter::default(), Some(after), CHUNK).await?;
            let Some(last) = users.last().map(|u| u.id) else {
                return Ok(None);
            };
            let next = (users.len() as u64 == CHUNK).then_some(last);
            let chunk = rows(&db, &tenant, &users, &attribute_names).await?;
            Ok::<_, AppError>(Some((chunk, next)))
        }
    });
    Ok(stream::once(async { Ok(header) }).chain(pages))
}

async fn rows(
    db: &DatabaseConnection,
    tenant: &TenantId,
    users: &[users::Model],
    attribute_names: &[String],
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
            tags.remove(&u.id).unwrap_or_default().join(","),
            u.custom_info
                .as_ref()
                .map(|info| info.to_string())
                .unwrap_or_default(),
            u.created_at.to_rfc3339(),
            u.updated_at.to_rfc3339(),
        ];
        let own = attributes.remove(&u.id).unwrap_or_default();
        record.extend(attribute_names.iter().map(|name| {
            own.iter()
                .find(|a| &a.name == name)
                .map(|a| a.value.clone())
                .unwrap_or_default()
        }));
        record
    });
    write_rows(records)
}

fn write_rows(records: impl IntoIterator<Item = Vec<String>>) -> AppResult<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        writer.write_record(&record).map_err(AppError::internal)?;
    }
    writer
        .into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("CSV buffer: {e}")))
}
