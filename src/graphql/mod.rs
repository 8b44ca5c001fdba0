//! The GraphQL schema: merges the domain segments and applies the cross-cutting policies.

mod budget;
pub mod cost;
mod extensions;
mod limits;

pub use limits::count_tokens;
pub mod scalars;
mod types;

pub use extensions::{ErrorPolicy, ExecutionMarker};
pub use types::FieldErrorView;

use async_graphql::{MergedObject, MergedSubscription, SDLExportOptions, Schema};
use sea_orm::DatabaseConnection;

use crate::approvers::graphql::ApproversMutation;
use crate::attributes::graphql::AttributesMutation;
use crate::auth::{AuthQuery, Principal};
use crate::config::QueryLimits;
use crate::jobs::graphql::{JobsMutation, JobsQuery, JobsSubscription};
use crate::tracks::graphql::{TracksMutation, TracksQuery};
use crate::users::graphql::{UsersMutation, UsersQuery, loaders};

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(AuthQuery, UsersQuery, JobsQuery, TracksQuery);

/// Every mutation needs the `admin` role; each field carries its guard.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    UsersMutation,
    ApproversMutation,
    JobsMutation,
    AttributesMutation,
    TracksMutation,
);

/// Subscriptions are open to every role, like queries.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(JobsSubscription);

pub type RosterSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The one schema used by the server, the tests and `roster schema`.
///
/// It holds no request state: the caller, the database and the DataLoaders go into each
/// request's data (see [`request_data`]), so nothing can leak or batch across tenants.
pub fn build_schema(limits: &QueryLimits) -> RosterSchema {
    let bare = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .finish();
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_recursive_depth)
    .extension(limits::DocumentLimits::new(limits))
    .extension(budget::ResponseBudget::new(
        limits.max_response,
        &bare.sdl(),
    ))
    .extension(ErrorPolicy)
    .extension(extensions::ExecutionTracker)
    .finish()
}

/// The moment a request is judged at when it gives no `asOf`: one instant for all of its
/// fields, so two fields of one response never disagree across a boundary.
#[derive(Debug, Clone, Copy)]
pub struct RequestNow(pub chrono::DateTime<chrono::Utc>);

/// The request's [`RequestNow`]; outside a request (tests of a bare schema), the clock.
pub fn request_now(ctx: &async_graphql::Context<'_>) -> chrono::DateTime<chrono::Utc> {
    ctx.data_opt::<RequestNow>()
        .map_or_else(chrono::Utc::now, |now| now.0)
}

/// The SDL, sorted so that `schema.graphql` diffs stay readable.
pub fn sdl() -> String {
    build_schema(&QueryLimits::default()).sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// Per-request data: the verified caller and the database. DataLoaders belong here too,
/// created per request and never shared, so one batch never mixes tenants.
pub fn request_data(
    data: &mut async_graphql::Data,
    principal: Principal,
    db: &DatabaseConnection,
    queue: &crate::jobs::Queue,
) {
    data.insert(RequestNow(chrono::Utc::now()));
    loaders(data, db, &principal.tenant);
    crate::approvers::graphql::loaders(data, db, &principal.tenant);
    crate::tracks::graphql::loaders(data, db, &principal.tenant);
    data.insert(principal);
    data.insert(db.clone());
    data.insert(queue.clone());
}
