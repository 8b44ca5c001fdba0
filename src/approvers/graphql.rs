//! The GraphQL face of approvers: links, loaders and the three mutations.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, InputObject, Object};
use sea_orm::DatabaseConnection;

use super::store::{self, ResolvedLink, Side};
use super::{ApproverSpec, Label, RawApprover, RawLookup};
use crate::auth::{Role, RoleGuard, TenantId, principal};
use crate::error::{AppError, AppResult};
use crate::users::graphql::{User, UserLookup};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
#[graphql(remote = "Label")]
pub enum ApproverLabel {
    /// The direct manager: sees bookings and compliance, approves.
    #[default]
    Manager,
    /// Sees bookings and compliance, never approves.
    NonApprovingManager,
    /// The manager's manager: sees, and approves bookings over a certain price.
    HigherManager,
}

/// One approver of a user.
#[derive(InputObject)]
pub struct ApproverInput {
    /// An existing, active user of the tenant.
    pub approver: UserLookup,
    #[graphql(default_with = "ApproverLabel::Manager")]
    pub label: ApproverLabel,
    /// Defaults to true for `MANAGER` and `HIGHER_MANAGER`; a `NON_APPROVING_MANAGER` never
    /// approves, so `true` is refused for one.
    pub can_approve: Option<bool>,
}

/// The specs of a list of approvers, every bad lookup named (not only the first).
pub fn specs(approvers: &[ApproverInput], prefix: &str) -> AppResult<Vec<(ApproverSpec, String)>> {
    let raw: Vec<RawApprover> = approvers.iter().map(RawApprover::from).collect();
    super::specs(&raw, prefix)
}

impl From<&ApproverInput> for RawApprover {
    fn from(input: &ApproverInput) -> Self {
        Self {
            approver: RawLookup::from(&input.approver),
            label: input.label.into(),
            can_approve: input.can_approve,
        }
    }
}

impl ApproverInput {
    pub fn spec(&self, path: &str) -> AppResult<ApproverSpec> {
        Ok(ApproverSpec {
            approver: self.approver.key(&format!("{path}.approver"))?,
            label: self.label.into(),
            can_approve: self.can_approve,
        })
    }
}

/// Who approves for whom.
pub struct ApproverLink(pub ResolvedLink);

#[Object]
impl ApproverLink {
    /// The user whose bookings are approved.
    async fn user(&self) -> User {
        User::from(self.0.user.clone())
    }
    /// The user who approves (or only sees, for `NON_APPROVING_MANAGER`).
    async fn approver(&self) -> User {
        User::from(self.0.approver.clone())
    }
    async fn label(&self) -> ApproverLabel {
        Label::from_stored(&self.0.link.label)
            .unwrap_or(Label::NonApprovingManager)
            .into()
    }
    async fn can_approve(&self) -> bool {
        self.0.link.can_approve
    }
}

/// Links with their users, grouped by the user they are for, or by their approver.
pub struct LinksLoader {
    pub db: DatabaseConnection,
    pub tenant: TenantId,
    pub side: Side,
}

impl LinksLoader {
    async fn load_links(&self, ids: &[i64]) -> AppResult<HashMap<i64, Vec<ResolvedLink>>> {
        Ok(store::resolved_links_by(&self.db, &self.tenant, self.side, ids).await?)
    }
}

/// `User.approvers`: links for the user.
pub struct ApproversLoader(pub LinksLoader);
/// `User.managees`: links where the user approves.
pub struct ManageesLoader(pub LinksLoader);

impl Loader<i64> for ApproversLoader {
    type Value = Vec<ResolvedLink>;
    type Error = AppError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, AppError> {
        self.0.load_links(ids).await
    }
}

impl Loader<i64> for ManageesLoader {
    type Value = Vec<ResolvedLink>;
    type Error = AppError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, AppError> {
        self.0.load_links(ids).await
    }
}

/// The approver loaders of one request, bound to its tenant.
pub fn loaders(data: &mut async_graphql::Data, db: &DatabaseConnection, tenant: &TenantId) {
    let links = |side| LinksLoader {
        db: db.clone(),
        tenant: tenant.clone(),
        side,
    };
    data.insert(DataLoader::new(
        ApproversLoader(links(Side::User)),
        tokio::spawn,
    ));
    data.insert(DataLoader::new(
        ManageesLoader(links(Side::Approver)),
        tokio::spawn,
    ));
}

#[derive(Default)]
pub struct ApproversMutation;

#[Object]
impl ApproversMutation {
    /// Replaces the user's whole approver set; `[]` removes every approver. All or nothing.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_approvers(
        &self,
        ctx: &Context<'_>,
        user: UserLookup,
        approvers: Vec<ApproverInput>,
    ) -> AppResult<User> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let key = user.key("user")?;
        let specs: Vec<ApproverSpec> = specs(&approvers, "approvers")?
            .into_iter()
            .map(|(spec, _)| spec)
            .collect();
        Ok(User::from(
            super::set_approvers(db, &principal.tenant, &key, &specs).await?,
        ))
    }

    /// Adds one approver (or changes `canApprove` of the same approver and label).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn add_approver(
        &self,
        ctx: &Context<'_>,
        user: UserLookup,
        approver: ApproverInput,
    ) -> AppResult<User> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let key = user.key("user")?;
        let spec = approver.spec("approver")?;
        Ok(User::from(
            super::add_approver(db, &principal.tenant, &key, &spec).await?,
        ))
    }

    /// Removes every link from the user to this approver, whatever its label.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn remove_approver(
        &self,
        ctx: &Context<'_>,
        user: UserLookup,
        approver: UserLookup,
    ) -> AppResult<User> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let key = user.key("user")?;
        let approver = approver.key("approver")?;
        Ok(User::from(
            super::remove_approver(db, &principal.tenant, &key, &approver).await?,
        ))
    }
}
