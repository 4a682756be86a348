//! Pools: which member printer a job goes to. A member can take a job when it exists and
//! the job's tenant may use it, it is a print target that takes the document (natively or
//! by conversion), it can honour the job's options (strict mode, against cached
//! capabilities), it is enabled, not known to be offline, and its breaker is not open.
//! `first_healthy` takes the first such member in the pool's order; `least_loaded` the one
//! with the fewest pending + processing jobs (ties: the job's current member, then order).
//!
//! The engine routes a pending job each time it is about to submit it, and only then: a job
//! whose submit has started (`processing`, `unconfirmed`, or a submit cut off by a crash)
//! never moves, so failover can never print twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;
use crate::backends::{Backend, UnsupportedDocument};
use crate::domain::{DocumentKind, JobOptions, OptionsMode};
use crate::store::pools::PoolRow;

/// A pool's routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    FirstHealthy,
    LeastLoaded,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "first_healthy" => Some(Policy::FirstHealthy),
            "least_loaded" => Some(Policy::LeastLoaded),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::FirstHealthy => "first_healthy",
            Policy::LeastLoaded => "least_loaded",
        }
    }
}

/// Why a member cannot take a job now. `Static` reasons hold whatever the printer's health
/// (the job can never print there); the others may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    Static(String),
    Unhealthy(String),
}

impl Unfit {
    fn text(&self) -> &str {
        match self {
            Unfit::Static(s) | Unfit::Unhealthy(s) => s,
        }
    }
}

/// What the job asks of a member.
#[derive(Debug, Clone)]
pub struct JobNeeds<'a> {
    pub tenant: &'a str,
    pub kind: DocumentKind,
    pub doc_type: Option<DocumentType>,
    pub options: &'a JobOptions,
    pub strict: bool,
}

impl<'a> JobNeeds<'a> {
    /// What a stored job asks (its document as the API shows it: `kind`, `type`).
    pub fn of(job: &'a JobRow) -> JobNeeds<'a> {
        let info = &job.document_info;
        JobNeeds {
            tenant: &job.tenant,
            kind: info
                .get("kind")
                .and_then(|k| serde_json::from_value(k.clone()).ok())
                .unwrap_or(DocumentKind::Upload),
            doc_type: info
                .get("type")
                .and_then(|t| serde_json::from_value(t.clone()).ok()),
            options: &job.options.0,
            strict: job.options_mode == OptionsMode::Strict,
        }
    }
}

/// Whether a backend takes a document, natively or by conversion (a PDF it cannot take
/// is rendered to PNG pages when it takes rendered pages and the bytes are the gateway's).
pub fn takes_document(
    backend: &dyn Backend,
    kind: DocumentKind,
    doc_type: Option<DocumentType>,
) -> Result<Taking, UnsupportedDocument> {
    match backend.check_document(kind, doc_type) {
        Ok(()) => Ok(Taking::Natively),
        Err(detail) => {
            if converts(backend, kind, doc_type) {
                Ok(Taking::ByConversion)
            } else {
                Err(detail)
            }
        }
    }
}

/// How a printer takes a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taking {
    Natively,
    ByConversion,
}

/// Whether the gateway converts this document for this backend.
pub fn converts(backend: &dyn Backend, kind: DocumentKind, doc_type: Option<DocumentType>) -> bool {
    doc_type == Some(DocumentType::Pdf)
        && matches!(kind, DocumentKind::Upload | DocumentKind::Base64)
        && backend.takes_rendered_pages()
        && backend
            .check_document(DocumentKind::Base64, Some(DocumentType::Png))
            .is_ok()
}

/// The file types a backend's printers take as bytes (upload or base64): natively, and by
/// the gateway's conversion.
pub fn document_types(backend: &dyn Backend) -> (Vec<DocumentType>, Vec<DocumentType>) {
    let mut native = Vec::new();
    let mut converted = Vec::new();
    for name in DocumentType::all_names() {
        let Some(doc_type) = DocumentType::from_extension(&format!("x.{name}")) else {
            continue;
        };
        if native.contains(&doc_type) || converted.contains(&doc_type) {
            continue;
        }
        if backend
            .check_document(DocumentKind::Base64, Some(doc_type))
            .is_ok()
        {
            native.push(doc_type);
        } else if converts(backend, DocumentKind::Base64, Some(doc_type)) {
            converted.push(doc_type);
        }
    }
    (native, converted)
}

/// Judges one member for a job.
pub fn fitness(
    printer: Option<&PrinterRow>,
    backends: &BackendRegistry,
    needs: &JobNeeds<'_>,
    breaker_threshold: i32,
    now: DateTime<Utc>,
) -> Result<(), Unfit> {
    let Some(printer) = printer.filter(|p| p.usable_by(needs.tenant)) else {
        return Err(Unfit::Static("no such printer".into()));
    };
    let Some(backend) = backends.target(&printer.backend) else {
        return Err(Unfit::Static(format!(
            "backend {} is not a print target here",
            printer.backend
        )));
    };
    if !backend.accepts_jobs() {
        return Err(Unfit::Static("takes no jobs from the API".into()));
    }
    if let Err(detail) = takes_document(backend.as_ref(), needs.kind, needs.doc_type) {
        return Err(Unfit::Static(format!("cannot take the document: {detail}")));
    }
    if needs.strict
        && let Some(caps) = &printer.capabilities
        && let Err(problem) = caps.0.check(needs.options, OptionsMode::Strict)
    {
        return Err(Unfit::Static(format!("cannot honour {problem}")));
    }
    if !printer.enabled {
        return Err(Unfit::Unhealthy("disabled".into()));
    }
    if printer.online == Some(false) {
        return Err(Unfit::Unhealthy("offline".into()));
    }
    if printer.breaker_failures >= breaker_threshold
        && printer.breaker_open_until.is_some_and(|until| until > now)
    {
        return Err(Unfit::Unhealthy("breaker open".into()));
    }
    Ok(())
}

/// One member as the router sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub fit: Result<(), Unfit>,
    /// Pending + processing jobs on the member (not counting the job being routed).
    pub load: i64,
}

/// The router's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This member, and why.
    Member { id: String, why: String },
    /// No member can take the job now; the reasons per member.
    NoneNow { why: String },
    /// No member can ever take it.
    Never { why: String },
}

/// Picks a member. `current` is the job's member so far (kept on ties); `avoid` a member
/// the job just failed on, taken only when no other member fits; `turn` breaks the other
/// ties of `least_loaded`: the first tied member from position `turn` (cyclically) wins.
pub fn choose(
    policy: Policy,
    members: &[Member],
    current: Option<&str>,
    avoid: Option<&str>,
    turn: u64,
) -> Choice {
    let reasons = || {
        members
            .iter()
            .map(|m| match &m.fit {
                Ok(()) => format!("{}: fit", m.id),
                Err(unfit) => format!("{}: {}", m.id, unfit.text()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let fit: Vec<&Member> = members.iter().filter(|m| m.fit.is_ok()).collect();
    if fit.is_empty() {
        let never = members
            .iter()
            .all(|m| matches!(m.fit, Err(Unfit::Static(_))));
        return if never {
            Choice::Never { why: reasons() }
        } else {
            Choice::NoneNow { why: reasons() }
        };
    }
    let preferred: Vec<&Member> = match avoid {
        Some(avoid) if fit.iter().any(|m| m.id != avoid) => {
            fit.into_iter().filter(|m| m.id != avoid).collect()
        }
        _ => fit,
    };
    let skipped = |chosen: &str| {
        members
            .iter()
            .take_while(|m| m.id != chosen)
            .filter_map(|m| match (&m.fit, Some(m.id.as_str()) == avoid) {
                (_, true) => Some(format!("{}: the job's last try there failed", m.id)),
                (Err(unfit), _) => Some(format!("{}: {}", m.id, unfit.text())),
                (Ok(()), _) => None,
            })
            .collect::<Vec<_>>()
    };
    match policy {
        Policy::FirstHealthy => {
            let chosen = preferred[0];
            let skipped = skipped(&chosen.id);
            let why = if skipped.is_empty() {
                format!(
                    "first_healthy: {} is the first member and can print",
                    chosen.id
                )
            } else {
                format!(
                    "first_healthy: {} is the first member that can print (skipped {})",
                    chosen.id,
                    skipped.join("; ")
                )
            };
            Choice::Member {
                id: chosen.id.clone(),
                why,
            }
        }
        Policy::LeastLoaded => {
            let min = preferred.iter().map(|m| m.load).min().unwrap_or(0);
            let position = |m: &Member| members.iter().position(|x| x.id == m.id).unwrap_or(0);
            let start = (turn % members.len().max(1) as u64) as usize;
            let chosen = preferred
                .iter()
                .find(|m| m.load == min && Some(m.id.as_str()) == current)
                .or_else(|| {
                    preferred
                        .iter()
                        .filter(|m| m.load == min)
                        .min_by_key(|m| (position(m) + members.len() - start) % members.len())
                })
                .copied()
                .unwrap_or(preferred[0]);
            let loads: Vec<String> = members
                .iter()
                .map(|m| match &m.fit {
                    Ok(()) => format!("{} {}", m.id, m.load),
                    Err(unfit) => format!("{} ({})", m.id, unfit.text()),
                })
                .collect();
            Choice::Member {
                id: chosen.id.clone(),
                why: format!(
                    "least_loaded: {} has the fewest pending and processing jobs among the members that can print ({})",
                    chosen.id,
                    loads.join(", ")
                ),
            }
        }
    }
}

/// Everything the router reads about a pool's members, in one place for the engine and
/// the service (accepting a job routes it once; dispatch routes it again).
pub async fn route(
    pool_db: &sqlx::PgPool,
    backends: &BackendRegistry,
    breaker_threshold: i32,
    pool: &PoolRow,
    needs: &JobNeeds<'_>,
    current: Option<&str>,
    avoid: Option<&str>,
) -> Result<(Choice, Vec<PrinterRow>), StoreError> {
    let policy = Policy::parse(&pool.policy).ok_or_else(|| {
        StoreError::Corrupt(format!("pool {} has policy {:?}", pool.id, pool.policy))
    })?;
    let mut printers: HashMap<String, PrinterRow> = HashMap::new();
    for id in &pool.members {
        if let Some(row) = store::printers::get(pool_db, id).await? {
            printers.insert(id.clone(), row);
        }
    }
    let loads: HashMap<String, i64> = if policy == Policy::LeastLoaded {
        store::pools::loads(pool_db, &pool.members)
            .await?
            .into_iter()
            .collect()
    } else {
        HashMap::new()
    };
    let now = Utc::now();
    let members: Vec<Member> = pool
        .members
        .iter()
        .map(|id| Member {
            id: id.clone(),
            fit: fitness(printers.get(id), backends, needs, breaker_threshold, now),
            load: loads.get(id).copied().unwrap_or(0) - i64::from(Some(id.as_str()) == current),
        })
        .collect();
    // A new job takes a turn; a job already on a member keeps it on ties.
    let turn = if policy == Policy::LeastLoaded && current.is_none() {
        store::pools::next_turn(pool_db, &pool.id).await?
    } else {
        0
    };
    let choice = choose(policy, &members, current, avoid, turn);
    let rows = pool
        .members
        .iter()
        .filter_map(|id| printers.remove(id))
        .collect();
    Ok((choice, rows))
}

/// A pending job's member should be avoided when its last try there failed for a reason
/// that says something about the member (busy, offline, unreachable), not the job.
pub fn member_to_avoid(job: &JobRow) -> Option<&str> {
    let waiting = matches!(
        job.state_reason.as_deref(),
        Some("waiting_for_device" | "retry_scheduled")
    );
    let health = job
        .error
        .as_ref()
        .is_some_and(|e| e.0.code.is_printer_health());
    (waiting && health).then_some(job.printer_id.as_str())
}

impl Engine {
    /// Routes a pending pool job before its submit: keeps or changes its member (with an
    /// event saying why) and returns the member to use; `None` when no member can take it
    /// now (the job was saved waiting with `no_member_available`) or ever (failed).
    pub(super) async fn route_pending(
        &self,
        job: &JobRow,
        pool_id: &str,
        token: Uuid,
    ) -> EngineResult<Option<String>> {
        let Some(pool) = store::pools::get(&self.pool, pool_id).await? else {
            // The pool was deleted: the job stays on the member it has.
            return Ok(Some(job.printer_id.clone()));
        };
        let needs = JobNeeds::of(job);
        let avoid = member_to_avoid(job);
        let (choice, members) = route(
            &self.pool,
            &self.backends,
            self.settings.breaker_threshold,
            &pool,
            &needs,
            Some(&job.printer_id),
            avoid,
        )
        .await?;
        match choice {
            Choice::Member { id, why } => {
                if id != job.printer_id {
                    let (kind, message) = match avoid {
                        Some(from) => (
                            "failover",
                            format!("moved from {from} to {id} before any submit there: {why}"),
                        ),
                        None => (
                            "member_chosen",
                            format!("pool {pool_id}: {why} (was {})", job.printer_id),
                        ),
                    };
                    if !store::pools::move_pending_job(
                        &self.pool, job.id, token, &id, kind, &message,
                    )
                    .await?
                    {
                        return Ok(None);
                    }
                    crate::observe::pool_routed(pool_id, &id, kind);
                }
                Ok(Some(id))
            }
            Choice::NoneNow { why } => {
                const REASON: &str = "no_member_available";
                // Look again when the first open breaker closes, or soon.
                let reopen = members
                    .iter()
                    .filter_map(|p| p.breaker_open_until)
                    .filter(|t| *t > Utc::now())
                    .min();
                let mut due = after(self.settings.sweep_interval * 10);
                if let Some(reopen) = reopen {
                    due = due.min(reopen);
                }
                if let Some(expires) = job.expires_at {
                    due = due.min(expires);
                }
                let mut update =
                    JobUpdate::stay(JobState::Pending, EventSource::Dispatcher, REASON)
                        .reason(REASON)
                        .message(format!(
                            "no member of pool {pool_id} can take the job now: {why}"
                        ))
                        .due(due.max(after(short_pause())))
                        .leased(token);
                if job.state_reason.as_deref() == Some(REASON) {
                    update = update.silent();
                }
                self.save(job.id, &update).await?;
                Ok(None)
            }
            Choice::Never { why } => {
                let error = JobError::ours(
                    ErrorCode::UnsupportedOption,
                    format!("no member of pool {pool_id} can ever print this job: {why}"),
                );
                self.fail_before_submit(job, token, error).await?;
                Ok(None)
            }
        }
    }

    /// Whether a pool job that just failed on its member has another member to go to now.
    pub(super) async fn pool_has_alternative(&self, job: &JobRow) -> EngineResult<bool> {
        let Some(pool_id) = job.pool_id.as_deref() else {
            return Ok(false);
        };
        let Some(pool) = store::pools::get(&self.pool, pool_id).await? else {
            return Ok(false);
        };
        let needs = JobNeeds::of(job);
        let (choice, _) = route(
            &self.pool,
            &self.backends,
            self.settings.breaker_threshold,
            &pool,
            &needs,
            Some(&job.printer_id),
            Some(&job.printer_id),
        )
        .await?;
        Ok(matches!(choice, Choice::Member { id, .. } if id != job.printer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, fit: Result<(), Unfit>, load: i64) -> Member {
        Member {
            id: id.into(),
            fit,
            load,
        }
    }

    fn chosen(choice: Choice) -> String {
        match choice {
            Choice::Member { id, .. } => id,
            other => panic!("no member: {other:?}"),
        }
    }

    #[test]
    fn first_healthy_takes_the_first_fit_member_in_order() {
        let members = [
            member("a", Err(Unfit::Unhealthy("breaker open".into())), 0),
            member("b", Ok(()), 5),
            member("c", Ok(()), 0),
        ];
        let choice = choose(Policy::FirstHealthy, &members, Some("a"), None, 0);
        let Choice::Member { id, why } = choice else {
            panic!()
        };
        assert_eq!(id, "b");
        assert!(why.contains("a: breaker open"), "{why}");
    }

    #[test]
    fn least_loaded_takes_the_fewest_and_keeps_the_current_on_ties() {
        let members = [
            member("a", Ok(()), 3),
            member("b", Ok(()), 2),
            member("c", Ok(()), 2),
        ];
        assert_eq!(
            chosen(choose(Policy::LeastLoaded, &members, None, None, 0)),
            "b"
        );
        assert_eq!(
            chosen(choose(Policy::LeastLoaded, &members, Some("c"), None, 0)),
            "c"
        );
        // equal loads take turns
        let equal = [
            member("a", Ok(()), 1),
            member("b", Ok(()), 1),
            member("c", Ok(()), 1),
        ];
        let turns: Vec<String> = (0..4)
            .map(|turn| chosen(choose(Policy::LeastLoaded, &equal, None, None, turn)))
            .collect();
        assert_eq!(turns, ["a", "b", "c", "a"]);
        assert_eq!(
            chosen(choose(Policy::LeastLoaded, &members, None, None, 1)),
            "b",
            "the fewest wins over the turn"
        );
        assert_eq!(
            chosen(choose(Policy::LeastLoaded, &members, None, None, 2)),
            "c"
        );
    }

    #[test]
    fn a_member_that_just_failed_is_avoided_while_another_fits() {
        let members = [member("a", Ok(()), 0), member("b", Ok(()), 0)];
        assert_eq!(
            chosen(choose(
                Policy::FirstHealthy,
                &members,
                Some("a"),
                Some("a"),
                0
            )),
            "b"
        );
        let alone = [
            member("a", Ok(()), 0),
            member("b", Err(Unfit::Unhealthy("offline".into())), 0),
        ];
        assert_eq!(
            chosen(choose(
                Policy::FirstHealthy,
                &alone,
                Some("a"),
                Some("a"),
                0
            )),
            "a"
        );
    }

    #[test]
    fn no_fit_member_waits_unless_none_could_ever_print() {
        let members = [
            member("a", Err(Unfit::Unhealthy("offline".into())), 0),
            member(
                "b",
                Err(Unfit::Static("cannot take the document".into())),
                0,
            ),
        ];
        assert!(matches!(
            choose(Policy::FirstHealthy, &members, None, None, 0),
            Choice::NoneNow { .. }
        ));
        let never = [member("b", Err(Unfit::Static("no such printer".into())), 0)];
        assert!(matches!(
            choose(Policy::LeastLoaded, &never, None, None, 0),
            Choice::Never { .. }
        ));
    }
}
