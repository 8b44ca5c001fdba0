use async_graphql::{Context, Guard, Object, SimpleObject};

use super::{Principal, Role};
use crate::error::{AppError, AppResult};

/// Admits callers whose role satisfies the required one (`admin` satisfies everything).
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let principal = principal(ctx)?;
        if principal.role.satisfies(self.0) {
            Ok(())
        } else {
            Err(AppError::Forbidden(self.0.as_str()).into())
        }
    }
}

/// The caller of the current request; every resolver reads its tenant from here.
pub fn principal<'a>(ctx: &Context<'a>) -> AppResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AppError::Unauthenticated("no verified caller for this request".into()))
}

/// Who the token belongs to.
#[derive(SimpleObject)]
pub struct Viewer {
    /// The token's `sub` claim.
    pub subject: String,
    /// `admin` or `viewer`.
    pub role: String,
    /// The tenant every read and write of this token is scoped to.
    pub tenant: String,
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The caller, as its token describes it.
    async fn viewer(&self, ctx: &Context<'_>) -> AppResult<Viewer> {
        let principal = principal(ctx)?;
        Ok(Viewer {
            subject: principal.subject.clone(),
            role: principal.role.as_str().to_owned(),
            tenant: principal.tenant.as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptySubscription, Object, Request, Schema};
    use serde_json::json;

    use super::*;
    use crate::auth::TenantId;
    use crate::graphql::ErrorPolicy;

    struct Query;

    #[Object]
    impl Query {
        async fn open(&self) -> bool {
            true
        }
    }

    struct Mutation;

    #[Object]
    impl Mutation {
        #[graphql(guard = "RoleGuard(Role::Admin)")]
        async fn change(&self) -> bool {
            true
        }
    }

    async fn run(principal: Option<Role>) -> serde_json::Value {
        let schema = Schema::build(Query, Mutation, EmptySubscription)
            .extension(ErrorPolicy)
            .finish();
        let mut request = Request::new("mutation { change }");
        if let Some(role) = principal {
            request = request.data(Principal {
                subject: "s".into(),
                role,
                tenant: TenantId::parse("t").unwrap(),
            });
        }
        serde_json::to_value(schema.execute(request).await).unwrap()
    }

    #[tokio::test]
    async fn admin_passes_the_admin_guard() {
        assert_eq!(
            run(Some(Role::Admin)).await["data"],
            json!({ "change": true })
        );
    }

    #[tokio::test]
    async fn viewer_is_forbidden() {
        let response = run(Some(Role::Viewer)).await;
        assert_eq!(response["errors"][0]["extensions"]["code"], "FORBIDDEN");
        assert_eq!(
            response["errors"][0]["message"],
            "this operation needs the admin role"
        );
    }

    #[tokio::test]
    async fn no_caller_is_unauthenticated() {
        let response = run(None).await;
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );
    }

    #[test]
    fn admin_satisfies_every_role() {
        assert!(Role::Admin.satisfies(Role::Viewer));
        assert!(Role::Admin.satisfies(Role::Admin));
        assert!(Role::Viewer.satisfies(Role::Viewer));
        assert!(!Role::Viewer.satisfies(Role::Admin));
    }
}
