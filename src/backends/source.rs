//! The seam of a job source: a vendor whose users send jobs to the gateway (WeCom), as
//! opposed to a [`PrintTarget`](super::PrintTarget) that prints them. The source-neutral
//! bridge (`service::sources`) pulls, imports, cancels and reports through [`JobSource`]
//! only; every wire fact (paths, field names, status numbers, error codes, payload keys)
//! stays behind it in the vendor's module.
//!
//! It must not know SQL or the bridge's bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use super::{InvalidPrinterConfig, VendorError};
use crate::domain::{EventSource, JobError, JobOptions, JobState};

/// A source printer's settings (its locator), as the source reads them.
#[derive(Debug, Clone)]
pub struct SourcePrinter {
    /// The source's device id.
    pub device: String,
    /// The users whose jobs are pulled (users seen by push are added by the bridge).
    pub users: Vec<String>,
    /// The gateway printer that prints this device's jobs.
    pub target_printer_id: String,
    /// The tenant imported jobs belong to, when not the default.
    pub tenant: Option<String>,
}

/// A bound device's credentials (the secret is never shown).
#[derive(Clone, Debug)]
pub struct SourceDevice {
    pub device: String,
    pub secret: secrecy::SecretString,
}

/// One job a source holds, in neutral words.
#[derive(Debug, Clone)]
pub struct SourceJob {
    /// The source's job id.
    pub id: String,
    /// The user who sent it.
    pub user: String,
    pub doc_name: String,
    /// Bytes, when the source says.
    pub doc_size: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
    /// The source's own status number (kept in the source's record).
    pub status_code: i16,
    /// Its status as a job state; `None` for a status the gateway does not know.
    pub state: Option<JobState>,
    /// The job's print settings as options, and the settings that map to none.
    pub options: JobOptions,
    pub unmapped: Vec<String>,
    /// What the source says of the job, kept in the job's metadata.
    pub facts: serde_json::Map<String, Value>,
    /// The job exactly as the source listed it (kept in the import event).
    pub raw: Value,
}

/// Why a document could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// The source no longer has the job (deleted or expired).
    Gone,
    /// The document cannot be printed (too large, undecryptable); the job fails with why.
    Unusable(String),
    Vendor(VendorError),
}

/// A push message's meaning, in neutral words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A user sent a job to the device.
    JobSubmitted,
    /// The user deleted the job.
    JobDeleted,
    /// The device was bound: the code that obtains its secret.
    Bind {
        code: Option<String>,
    },
    /// The device was unbound.
    Unbind,
    /// The newest source-wide ticket.
    Ticket(Option<String>),
    Unknown(String),
}

/// What to tell the source about a finished job.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Nothing to report; the reason is recorded.
    Skip(&'static str),
    /// The request to send, and how the job's history words it.
    Send { body: Value, message: String },
}

/// The state reasons of jobs the bridge cancels for the source.
#[derive(Debug, Clone, Copy)]
pub struct SourceReasons {
    /// The user deleted the job at the source.
    pub deleted: &'static str,
    /// The source already shows the job finished (another cloud handled it).
    pub finished: &'static str,
}

/// One listing of a user's unprinted jobs, page by page.
#[async_trait]
pub trait SourcePages: Send {
    async fn next_page(&mut self) -> Option<Result<Vec<SourceJob>, VendorError>>;
}

/// A vendor that brings jobs: pull, download, report back, push callbacks.
#[async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// The backend name of its printers (also the jobs' `source` and metadata key).
    fn name(&self) -> &'static str;
    /// The source of the events the bridge writes for it.
    fn event_source(&self) -> EventSource;
    fn reasons(&self) -> SourceReasons;
    /// How long a pushed ticket stays usable.
    fn ticket_lifetime(&self) -> Duration;
    /// The most job ids one [`JobSource::lookup`] call takes.
    fn lookup_batch(&self) -> usize;
    /// The largest page [`JobSource::unprinted`] asks for.
    fn max_page(&self) -> u32;

    /// Reads a source printer's locator.
    fn printer(&self, locator: &Value) -> Result<SourcePrinter, InvalidPrinterConfig>;
    /// A bound device's credentials from its printer's secrets; `None` until bound.
    fn credentials(&self, device: &str, secrets: &Value) -> Option<SourceDevice>;

    /// Unprinted jobs of `user` from the last `window_secs`, page by page.
    fn unprinted<'a>(
        &'a self,
        device: &'a SourceDevice,
        user: &str,
        window_secs: i64,
        page_size: u32,
    ) -> Box<dyn SourcePages + 'a>;
    /// The jobs of `user` by id (those the source no longer has are missing).
    async fn lookup(
        &self,
        device: &SourceDevice,
        user: &str,
        ids: &[String],
    ) -> Result<HashMap<String, SourceJob>, VendorError>;
    /// The vendor ids kept on an imported job (`vendor_ids`).
    fn vendor_ids(&self, device: &SourceDevice, job: &SourceJob) -> Value;
    /// A job's document, decrypted.
    async fn download(&self, device: &SourceDevice, id: &str) -> Result<Vec<u8>, FetchError>;

    /// What to report for a job that reached `state`.
    fn report_for(
        &self,
        id: &str,
        state: JobState,
        reason: Option<&str>,
        error: Option<&JobError>,
        deleted_at_source: bool,
    ) -> Report;
    /// Sends a report; the source's reply.
    async fn report(&self, device: &SourceDevice, body: &Value) -> Result<Value, VendorError>;
    /// Whether a refused report can never succeed (the source no longer knows the job).
    fn report_refused_for_good(&self, err: &VendorError) -> bool;

    /// A push message's meaning (`payload`: its source-specific fields).
    fn push(&self, event: &str, payload: Option<&Value>) -> Push;
    /// A bound device's secret from a bind's code.
    async fn bind(&self, device: &str, code: &str) -> Result<secrecy::SecretString, VendorError>;
    /// Uses `ticket` for the source-wide token from now on.
    fn set_ticket(&self, ticket: secrecy::SecretString);
    /// When the source asked the gateway to slow down, until when.
    fn paused_until(&self) -> Option<Instant>;
}
