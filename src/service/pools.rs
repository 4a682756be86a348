//! Printer pools: define, change, delete, and route a new job to a member.

use super::{Service, ServiceError, ServiceResult};
use crate::domain::{DocumentKind, DocumentType, JobOptions, OptionsMode, PrinterId};
use crate::engine::route::{self, Choice, JobNeeds, Policy};
use crate::store;
use crate::store::pools::{PoolFields, PoolRow};

/// Most members a pool may have.
pub const MEMBERS_MAX: usize = 32;

/// A pool as an operator defines it, before it is checked.
#[derive(Debug, Clone)]
pub struct PoolRequest {
    pub tenant: String,
    pub id: String,
    pub display_name: Option<String>,
    pub policy: String,
    pub members: Vec<String>,
}

/// The member a new pool job goes to first, and why.
#[derive(Debug, Clone)]
pub struct Routed {
    pub printer_id: String,
    pub why: String,
}

impl Service {
    async fn check_pool(&self, request: PoolRequest) -> ServiceResult<PoolFields> {
        PrinterId::parse(&request.id).map_err(|detail| {
            ServiceError::invalid(
                "invalid_field",
                format!("`id`: {detail} (a pool id is a slug like a printer id)"),
            )
        })?;
        if Policy::parse(&request.policy).is_none() {
            return Err(ServiceError::invalid(
                "invalid_field",
                format!(
                    "`policy` must be \"first_healthy\" or \"least_loaded\", got {:?}",
                    request.policy
                ),
            ));
        }
        if request.members.is_empty() || request.members.len() > MEMBERS_MAX {
            return Err(ServiceError::invalid(
                "invalid_field",
                format!("`members` lists 1 to {MEMBERS_MAX} printer ids"),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for member in &request.members {
            if seen.contains(&member.as_str()) {
                return Err(ServiceError::invalid(
                    "invalid_field",
                    format!("`members` names printer `{member}` twice"),
                ));
            }
            seen.push(member);
            let usable = match PrinterId::parse(member) {
                Ok(_) => store::printers::get(&self.pool, member)
                    .await?
                    .filter(|p| p.usable_by(&request.tenant)),
                Err(_) => None,
            };
            let Some(printer) = usable else {
                return Err(ServiceError::invalid(
                    "unknown_printer",
                    format!(
                        "Member `{}` is not a printer you can use; GET /v1/printers lists them.",
                        quote(member)
                    ),
                ));
            };
            let prints = self
                .backends
                .target(&printer.backend)
                .is_some_and(|b| b.accepts_jobs());
            if !prints {
                return Err(ServiceError::invalid(
                    "printer_takes_no_jobs",
                    format!(
                        "Member `{member}` is a {} printer, which takes no jobs from apps; a pool's members must print.",
                        printer.backend
                    ),
                ));
            }
        }
        let display_name = request
            .display_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| request.id.clone());
        if display_name.chars().count() > 200 {
            return Err(ServiceError::invalid(
                "invalid_field",
                "`display_name` is at most 200 characters",
            ));
        }
        Ok(PoolFields {
            id: request.id,
            owner_tenant: request.tenant,
            display_name,
            policy: request.policy,
            members: request.members,
        })
    }

    pub async fn create_pool(&self, request: PoolRequest) -> ServiceResult<PoolRow> {
        let fields = self.check_pool(request).await?;
        if store::printers::get(&self.pool, &fields.id)
            .await?
            .is_some()
        {
            return Err(ServiceError::conflict(
                "pool_exists",
                format!(
                    "`{}` is a printer's id; a pool needs an id of its own.",
                    fields.id
                ),
            ));
        }
        store::pools::insert(&self.pool, &fields)
            .await?
            .ok_or_else(|| {
                ServiceError::conflict(
                    "pool_exists",
                    format!("Pool `{}` already exists.", fields.id),
                )
            })
    }

    pub async fn update_pool(&self, request: PoolRequest) -> ServiceResult<PoolRow> {
        let id = request.id.clone();
        let fields = self.check_pool(request).await?;
        store::pools::update(&self.pool, &fields)
            .await?
            .ok_or_else(|| ServiceError::not_found(&format!("Pool {id}")))
    }

    pub async fn delete_pool(&self, tenant: &str, id: &str) -> ServiceResult<()> {
        if store::pools::delete(&self.pool, tenant, id).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found(&format!("Pool {id}")))
        }
    }

    /// The member a new job of `tenant` sent to pool `pool_id` starts on. The engine routes
    /// it again before the submit; here a job that no member could ever print is refused,
    /// and one that no member can print right now still starts on the first member that
    /// could (it waits, `no_member_available`).
    pub async fn route_new_job(
        &self,
        tenant: &str,
        pool_id: &str,
        kind: DocumentKind,
        doc_type: Option<DocumentType>,
        options: &JobOptions,
        mode: OptionsMode,
    ) -> ServiceResult<Routed> {
        let pool = store::pools::get(&self.pool, pool_id)
            .await?
            .filter(|p| p.owner_tenant == tenant)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "unknown_pool",
                    format!(
                        "Pool `{}` does not exist; GET /v1/pools lists the pools.",
                        quote(pool_id)
                    ),
                )
            })?;
        let needs = JobNeeds {
            tenant,
            kind,
            doc_type,
            options,
            strict: mode == OptionsMode::Strict,
        };
        let threshold = self.engine.settings().breaker_threshold;
        let (choice, members) = route::route(
            &self.pool,
            &self.backends,
            threshold,
            &pool,
            &needs,
            None,
            None,
        )
        .await?;
        match choice {
            Choice::Member { id, why } => Ok(Routed {
                printer_id: id,
                why: format!("pool {pool_id}: {why}"),
            }),
            Choice::NoneNow { why } => {
                // The first member that could print once healthy again.
                let now = chrono::Utc::now();
                let first = members
                    .iter()
                    .find(|p| {
                        !matches!(
                            route::fitness(Some(p), &self.backends, &needs, threshold, now),
                            Err(route::Unfit::Static(_))
                        )
                    })
                    .map(|p| p.id.clone())
                    .ok_or_else(|| ServiceError::Internal("no member in a waiting pool".into()))?;
                Ok(Routed {
                    printer_id: first,
                    why: format!(
                        "pool {pool_id}: no member can print now ({why}); the job waits for one"
                    ),
                })
            }
            Choice::Never { why } => Err(ServiceError::invalid(
                "no_member_can_print",
                format!("No member of pool `{pool_id}` can print this job: {why}."),
            )),
        }
    }
}

/// Caller text in a message, cut short.
fn quote(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
