//! The bulk `INSERT`: rows of active models written straight to SQL, as bound values on
//! SQLite and as one JSON document on PostgreSQL.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, IdenStatic, Iterable,
};

/// Inserts rows with multi-row statements, as many rows per statement as the bind-parameter
/// limits of both databases allow.
pub async fn insert_in_chunks<A>(conn: &impl ConnectionTrait, rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    Insert::<A::Entity>::new().exec(conn, rows).await?;
    Ok(())
}

/// Bound values per multi-row statement, within SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_BINDS: usize = 30_000;

/// A multi-row `INSERT` of active models, written straight to SQL text and bound values,
/// in as many statements as [`MAX_BINDS`] requires.
///
/// sea-orm's `insert_many` wraps each value in an expression, copies it into its statement
/// builder and again into the statement, and on PostgreSQL reads back every new key. For
/// the tens of thousands of values a job's chunk writes, that was about a third of the
/// server's own work; here each value is moved once. Every row must set the columns the
/// first row sets: a row that does not is refused (sea-orm would store NULL). The syntax
/// (`ON CONFLICT … DO UPDATE`, `RETURNING`) is the same on SQLite and PostgreSQL.
///
/// On SQLite the rows are a `VALUES` list of bound parameters. On PostgreSQL they are one
/// JSON document, bound as a single parameter and read back into the table's row type by
/// `json_populate_recordset`, where a `VALUES` list of thousands of parameters is
/// planned value by value: the users insert of a 20,000-user job took 1.62 s as a
/// `VALUES` list and 0.99 s as a document (BENCHMARKS.md).
pub struct Insert<E: EntityTrait> {
    conflict: String,
    returning: String,
    entity: std::marker::PhantomData<E>,
}

impl<E: EntityTrait> Default for Insert<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: EntityTrait> Insert<E> {
    pub fn new() -> Self {
        Self {
            conflict: String::new(),
            returning: String::new(),
            entity: std::marker::PhantomData,
        }
    }

    /// A row whose `keys` are taken updates that row's `columns` instead.
    pub fn on_conflict_update(mut self, keys: &[E::Column], columns: &[E::Column]) -> Self {
        let keys: Vec<String> = keys.iter().map(|key| quoted(key.as_str())).collect();
        let sets: Vec<String> = columns
            .iter()
            .map(|column| {
                let column = quoted(column.as_str());
                format!("{column} = excluded.{column}")
            })
            .collect();
        self.conflict = format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            keys.join(", "),
            sets.join(", ")
        );
        self
    }

    /// A row whose `keys` are taken is left out.
    pub fn on_conflict_ignore(mut self, keys: &[E::Column]) -> Self {
        let keys: Vec<String> = keys.iter().map(|key| quoted(key.as_str())).collect();
        self.conflict = format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", "));
        self
    }

    /// Each statement returns these columns of the rows it inserted, in no promised order.
    pub fn returning(mut self, columns: &[E::Column]) -> Self {
        let columns: Vec<String> = columns.iter().map(|c| quoted(c.as_str())).collect();
        self.returning = format!(" RETURNING {}", columns.join(", "));
        self
    }

    /// Inserts `rows`; the rows [`Self::returning`] asked for, if any. Each statement is
    /// written from the rows just before it runs, so only one is held at a time. (The rows
    /// come as a `Vec`: an iterator of closures held across an await trips the compiler's
    /// `Send` check of the job's future.)
    pub async fn exec<A>(
        &self,
        conn: &impl ConnectionTrait,
        rows: Vec<A>,
    ) -> Result<Vec<sea_orm::QueryResult>, DbErr>
    where
        A: ActiveModelTrait<Entity = E> + Send,
    {
        let mut rows = rows.into_iter().peekable();
        let Some(columns) = rows.peek().map(Self::columns_of) else {
            return Ok(Vec::new());
        };
        let backend = conn.get_database_backend();
        let head = self.head(backend, &columns)?;
        let mut returned = Vec::new();
        while rows.peek().is_some() {
            let statement = self.statement(backend, &head, &columns, &mut rows)?;
            if self.returning.is_empty() {
                conn.execute_raw(statement).await?;
            } else {
                returned.extend(conn.query_all_raw(statement).await?);
            }
        }
        Ok(returned)
    }

    /// The columns a row sets.
    fn columns_of<A: ActiveModelTrait<Entity = E>>(row: &A) -> Vec<E::Column> {
        E::Column::iter()
            .filter(|column| !row.get(*column).is_not_set())
            .collect()
    }

    /// `INSERT INTO "table" ("a", "b") VALUES ` on SQLite; on PostgreSQL,
    /// `INSERT INTO "table" ("a", "b") SELECT "a", "b" FROM json_populate_recordset(…)`
    /// whole, as its rows are the one parameter.
    fn head(&self, backend: DatabaseBackend, columns: &[E::Column]) -> Result<String, DbErr> {
        let table = E::default().table_name();
        if columns.is_empty() {
            return Err(DbErr::Custom(format!(
                "an insert into {table} without columns"
            )));
        }
        let names = columns
            .iter()
            .map(|c| quoted(c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let table = quoted(table);
        Ok(match backend {
            DatabaseBackend::Postgres => format!(
                "INSERT INTO {table} ({names}) SELECT {names} \
                 FROM json_populate_recordset(NULL::{table}, $1::json)"
            ),
            _ => format!("INSERT INTO {table} ({names}) VALUES "),
        })
    }

    /// One statement of as many of `rows` as [`MAX_BINDS`] allows.
    fn statement<A: ActiveModelTrait<Entity = E>>(
        &self,
        backend: DatabaseBackend,
        head: &str,
        columns: &[E::Column],
        rows: &mut impl Iterator<Item = A>,
    ) -> Result<sea_orm::Statement, DbErr> {
        let per_statement = (MAX_BINDS / columns.len()).max(1);
        let rows = rows.take(per_statement);
        let (mut sql, values) = if backend == DatabaseBackend::Postgres {
            let mut document = Vec::new();
            for (n, mut row) in rows.enumerate() {
                document.push(if n == 0 { b'[' } else { b',' });
                for (i, column) in columns.iter().enumerate() {
                    document.push(if i == 0 { b'{' } else { b',' });
                    write_json(&mut document, column.as_str())?;
                    document.push(b':');
                    write_json_value(&mut document, Self::take(&mut row, *column)?)?;
                }
                document.push(b'}');
            }
            document.push(b']');
            let document = String::from_utf8(document)
                .map_err(|e| DbErr::Custom(format!("an insert's rows as JSON: {e}")))?;
            (head.to_owned(), vec![document.into()])
        } else {
            let mut sql = head.to_owned();
            let mut values = Vec::with_capacity(per_statement * columns.len());
            for (n, mut row) in rows.enumerate() {
                sql.push_str(if n == 0 { "(" } else { ", (" });
                for (i, column) in columns.iter().enumerate() {
                    values.push(Self::take(&mut row, *column)?);
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                }
                sql.push(')');
            }
            (sql, values)
        };
        sql.push_str(&self.conflict);
        sql.push_str(&self.returning);
        Ok(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
    }

    /// A row's value of `column`, which it must set.
    fn take<A: ActiveModelTrait<Entity = E>>(
        row: &mut A,
        column: E::Column,
    ) -> Result<sea_orm::Value, DbErr> {
        row.take(column).into_value().ok_or_else(|| {
            DbErr::Custom(format!(
                "a row of an insert into {} does not set {}",
                E::default().table_name(),
                column.as_str()
            ))
        })
    }

    /// Every statement of `rows`, written at once.
    #[cfg(test)]
    fn statements<A: ActiveModelTrait<Entity = E>>(
        &self,
        backend: DatabaseBackend,
        rows: impl IntoIterator<Item = A>,
    ) -> Result<Vec<sea_orm::Statement>, DbErr> {
        let mut rows = rows.into_iter().peekable();
        let Some(columns) = rows.peek().map(Self::columns_of) else {
            return Ok(Vec::new());
        };
        let head = self.head(backend, &columns)?;
        let mut statements = Vec::new();
        while rows.peek().is_some() {
            statements.push(self.statement(backend, &head, &columns, &mut rows)?);
        }
        Ok(statements)
    }
}

/// Writes a value as JSON that `json_populate_recordset` reads back as the same value of
/// its column: text and numbers as themselves, dates as ISO 8601, instants in UTC to the
/// microsecond PostgreSQL keeps (cut, as a bound value is), JSON as itself.
fn write_json_value(out: &mut Vec<u8>, value: sea_orm::Value) -> Result<(), DbErr> {
    use chrono::Datelike;
    use sea_orm::Value;
    use std::io::Write;
    let written = match value {
        Value::Bool(Some(b)) => write!(out, "{b}"),
        Value::TinyInt(Some(n)) => write!(out, "{n}"),
        Value::SmallInt(Some(n)) => write!(out, "{n}"),
        Value::Int(Some(n)) => write!(out, "{n}"),
        Value::BigInt(Some(n)) => write!(out, "{n}"),
        Value::TinyUnsigned(Some(n)) => write!(out, "{n}"),
        Value::SmallUnsigned(Some(n)) => write!(out, "{n}"),
        Value::Unsigned(Some(n)) => write!(out, "{n}"),
        Value::BigUnsigned(Some(n)) => write!(out, "{n}"),
        Value::String(Some(text)) => return write_json(out, &text),
        Value::Char(Some(c)) => return write_json(out, c.encode_utf8(&mut [0; 4])),
        Value::Json(Some(json)) => return write_json(out, &*json),
        // PostgreSQL has no year 0: the year before 1 is 1 BC.
        Value::ChronoDate(Some(date)) if date.year() <= 0 => write!(
            out,
            "\"{:04}-{:02}-{:02} BC\"",
            1 - date.year(),
            date.month(),
            date.day()
        ),
        Value::ChronoDate(Some(date)) => write!(out, "\"{}\"", date.format("%Y-%m-%d")),
        Value::ChronoDateTimeUtc(Some(at)) => {
            write!(out, "\"{}\"", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
        }
        // A null of any kind: `json_populate_recordset` reads JSON null as NULL.
        value if value == value.as_null() => write!(out, "null"),
        other => {
            return Err(DbErr::Custom(format!(
                "a bulk insert cannot write {other:?} on PostgreSQL"
            )));
        }
    };
    written.map_err(|e| DbErr::Custom(format!("writing an insert's rows: {e}")))
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Result<(), DbErr> {
    serde_json::to_writer(out, value)
        .map_err(|e| DbErr::Custom(format!("writing an insert's rows: {e}")))
}

/// An identifier as both databases quote it.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use entity::user_tags;
    use sea_orm::{NotSet, Set};

    use super::*;

    fn tag(user_id: i64) -> user_tags::ActiveModel {
        user_tags::ActiveModel {
            user_id: Set(user_id),
            tag: Set(format!("t{user_id}")),
            tenant: Set("acme".to_owned()),
        }
    }

    #[test]
    fn an_insert_is_split_at_the_bind_limit() {
        let rows = (0..10_001).map(tag);
        let statements = Insert::<user_tags::Entity>::new()
            .on_conflict_update(
                &[user_tags::Column::UserId, user_tags::Column::Tag],
                &[user_tags::Column::Tenant],
            )
            .returning(&[user_tags::Column::UserId])
            .statements(DatabaseBackend::Sqlite, rows)
            .expect("statements");
        // Three columns: 10,000 rows per statement.
        assert_eq!(statements.len(), 2);
        let first = &statements[0];
        assert!(first.sql.starts_with(
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") VALUES (?, ?, ?), (?, ?, ?)"#
        ));
        assert!(first.sql.ends_with(
            r#"(?, ?, ?) ON CONFLICT ("user_id", "tag") DO UPDATE SET "tenant" = excluded."tenant" RETURNING "user_id""#
        ));
        assert_eq!(first.values.as_ref().map(|v| v.0.len()), Some(30_000));
        let last = &statements[1];
        assert!(
            last.sql.contains("VALUES (?, ?, ?) ON CONFLICT"),
            "{}",
            last.sql
        );
        assert_eq!(
            last.values.as_ref().map(|v| v.0.clone()),
            Some(vec![
                10_000i64.into(),
                "t10000".to_owned().into(),
                "acme".to_owned().into()
            ])
        );
    }

    #[test]
    fn postgresql_rows_are_one_json_document_per_statement() {
        let statements = Insert::<user_tags::Entity>::new()
            .on_conflict_update(
                &[user_tags::Column::UserId, user_tags::Column::Tag],
                &[user_tags::Column::Tenant],
            )
            .returning(&[user_tags::Column::UserId])
            .statements(DatabaseBackend::Postgres, (0..10_001).map(tag))
            .expect("statements");
        // Split where SQLite's would be, so both run the same number of statements.
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[1].sql,
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") SELECT "user_id", "tag", "tenant" FROM json_populate_recordset(NULL::"user_tags", $1::json) ON CONFLICT ("user_id", "tag") DO UPDATE SET "tenant" = excluded."tenant" RETURNING "user_id""#
        );
        assert_eq!(
            statements[1].values.as_ref().map(|v| v.0.clone()),
            Some(vec![
                r#"[{"user_id":10000,"tag":"t10000","tenant":"acme"}]"#.into()
            ])
        );
        let first = statements[0].values.as_ref().expect("the rows");
        let rows: Vec<serde_json::Value> = match &first.0[..] {
            [sea_orm::Value::String(Some(document))] => {
                serde_json::from_str(document).expect("JSON")
            }
            other => panic!("one document, not {other:?}"),
        };
        assert_eq!(rows.len(), 10_000);
        assert_eq!(rows[9_999]["tag"], "t9999");
    }

    #[test]
    fn values_are_written_as_json_postgresql_reads_back_unchanged() {
        use chrono::{NaiveDate, TimeZone, Utc};
        use sea_orm::Value;
        let json = |value: Value| {
            let mut out = Vec::new();
            write_json_value(&mut out, value).expect("written");
            String::from_utf8(out).expect("UTF-8")
        };
        assert_eq!(
            json(Value::String(Some("a \"b\" \\ é\n".into()))),
            r#""a \"b\" \\ é\n""#
        );
        assert_eq!(json(Value::String(None)), "null");
        assert_eq!(
            json(Value::BigInt(Some(9_007_199_254_740_993))),
            "9007199254740993"
        );
        assert_eq!(json(Value::Bool(Some(false))), "false");
        assert_eq!(
            json(Value::Json(Some(Box::new(
                serde_json::json!({"k": [1, "2"]})
            )))),
            r#"{"k":[1,"2"]}"#
        );
        assert_eq!(json(Value::Json(None)), "null");
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a date");
        assert_eq!(
            json(Value::ChronoDate(Some(date(1988, 2, 29)))),
            r#""1988-02-29""#
        );
        assert_eq!(
            json(Value::ChronoDate(Some(date(0, 3, 1)))),
            r#""0001-03-01 BC""#
        );
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 22, 26, 35).unwrap()
            + chrono::Duration::nanoseconds(539_251_999);
        assert_eq!(
            json(Value::ChronoDateTimeUtc(Some(at))),
            r#""2026-11-24T22:26:35.539251Z""#
        );
        let mut out = Vec::new();
        let error = write_json_value(&mut out, Value::Double(Some(1.5))).expect_err("refused");
        assert!(error.to_string().contains("cannot write"), "{error}");
    }

    #[test]
    fn a_row_without_a_column_of_the_first_is_refused() {
        let mut second = tag(2);
        second.tenant = NotSet;
        let error = Insert::<user_tags::Entity>::new()
            .statements(DatabaseBackend::Sqlite, [tag(1), second])
            .expect_err("a row short of a column");
        assert!(error.to_string().contains("does not set tenant"), "{error}");
        let nothing = Insert::<user_tags::Entity>::new()
            .statements(
                DatabaseBackend::Sqlite,
                Vec::<user_tags::ActiveModel>::new(),
            )
            .expect("no rows");
        assert!(nothing.is_empty());
    }

    #[test]
    fn sqlite_parameters_are_question_marks() {
        let statements = Insert::<user_tags::Entity>::new()
            .statements(DatabaseBackend::Sqlite, [tag(1), tag(2)])
            .expect("statements");
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") VALUES (?, ?, ?), (?, ?, ?)"#
        );
    }
}
