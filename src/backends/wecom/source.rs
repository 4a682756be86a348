//! WeCom as a [`JobSource`]: the wire facts of pulling (`get_printer_job_list`), downloading,
//! reporting (`report_printer_job_status`, 2 = printed, 1 = failed), binding
//! (`get_device_secret`) and push events, turned into the source seam's neutral words.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::mapping::{
    self, PushEvent, REASON_DELETED_AT_WECOM, REASON_FINISHED_AT_WECOM, ReportPlan, WecomErrcode,
    WecomJobStatus,
};
use super::sync::{self, UnprintedPages};
use super::wire::{PrinterJob, ReportPrinterJobStatus};
use super::{DeviceCredentials, NAME, WecomClient, WecomLocator, device_secret};
use crate::backends::source::{
    FetchError, JobSource, Push, Report, SourceDevice, SourceJob, SourcePages, SourcePrinter,
    SourceReasons,
};
use crate::backends::{InvalidPrinterConfig, VendorError};
use crate::domain::{EventSource, JobError, JobState};

/// A pushed model ticket stays valid 30 minutes.
const TICKET_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// WeCom, the job source.
pub struct WecomSource {
    client: Arc<WecomClient>,
}

impl WecomSource {
    pub fn new(client: Arc<WecomClient>) -> WecomSource {
        WecomSource { client }
    }

    pub fn client(&self) -> &Arc<WecomClient> {
        &self.client
    }
}

fn credentials(device: &SourceDevice) -> DeviceCredentials {
    DeviceCredentials {
        device_sn: device.device.clone(),
        device_secret: device.secret.clone(),
    }
}

/// A listed WeCom job in neutral words.
fn neutral(device: &SourceDevice, job: PrinterJob) -> SourceJob {
    let mapped = mapping::map_settings(&job.setting_list);
    let raw = serde_json::to_value(&job).unwrap_or(Value::Null);
    let facts = json!({
        "jobid": job.jobid,
        "device_sn": device.device,
        "open_userid": job.open_userid,
        "doc_name": job.doc_name,
        "doc_size": job.doc_size,
        "createtime": job.createtime,
        "submitted": job.submitted,
        "setting_list": job.setting_list,
        "unmapped_settings": mapped.unmapped,
    });
    SourceJob {
        id: job.jobid,
        user: job.open_userid,
        doc_name: job.doc_name,
        doc_size: job.doc_size,
        created_at: DateTime::from_timestamp(job.createtime, 0),
        status_code: i16::try_from(job.status).unwrap_or(i16::MAX),
        state: WecomJobStatus::from_code(job.status).neutral_state(),
        options: mapped.options,
        unmapped: mapped.unmapped,
        facts: match facts {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        raw,
    }
}

fn report_message(body: &ReportPrinterJobStatus) -> String {
    match (body.status, body.errcode) {
        (2, _) => "reported to WeCom: printed (status 2)".to_owned(),
        (_, Some(code)) => format!("reported to WeCom: failed (status 1, errcode {code})"),
        (status, None) => format!("reported to WeCom: status {status}"),
    }
}

struct Pages<'a> {
    device: SourceDevice,
    pages: UnprintedPages<'a>,
}

#[async_trait]
impl SourcePages for Pages<'_> {
    async fn next_page(&mut self) -> Option<Result<Vec<SourceJob>, VendorError>> {
        let page = self.pages.next_page().await?;
        Some(page.map(|jobs| {
            jobs.into_iter()
                .map(|job| neutral(&self.device, job))
                .collect()
        }))
    }
}

#[async_trait]
impl JobSource for WecomSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_source(&self) -> EventSource {
        EventSource::Wecom
    }

    fn reasons(&self) -> SourceReasons {
        SourceReasons {
            deleted: REASON_DELETED_AT_WECOM,
            finished: REASON_FINISHED_AT_WECOM,
        }
    }

    fn ticket_lifetime(&self) -> Duration {
        TICKET_MAX_AGE
    }

    fn lookup_batch(&self) -> usize {
        sync::MAX_JOBID_LIST
    }

    fn max_page(&self) -> u32 {
        sync::MAX_PAGE
    }

    fn printer(&self, locator: &Value) -> Result<SourcePrinter, InvalidPrinterConfig> {
        let locator = WecomLocator::parse(locator)?;
        Ok(SourcePrinter {
            device: locator.device_sn,
            users: locator.open_userids,
            target_printer_id: locator.target_printer_id,
            tenant: locator.tenant,
        })
    }

    fn credentials(&self, device: &str, secrets: &Value) -> Option<SourceDevice> {
        device_secret(secrets).map(|secret| SourceDevice {
            device: device.to_owned(),
            secret: secrecy::SecretString::from(secret),
        })
    }

    fn unprinted<'a>(
        &'a self,
        device: &'a SourceDevice,
        user: &str,
        window_secs: i64,
        page_size: u32,
    ) -> Box<dyn SourcePages + 'a> {
        Box::new(Pages {
            device: device.clone(),
            pages: UnprintedPages::new(
                &self.client,
                credentials(device),
                user,
                window_secs,
                page_size,
            ),
        })
    }

    async fn lookup(
        &self,
        device: &SourceDevice,
        user: &str,
        ids: &[String],
    ) -> Result<HashMap<String, SourceJob>, VendorError> {
        let found = sync::batch_status(&self.client, &credentials(device), user, ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, job)| (id, neutral(device, job)))
            .collect())
    }

    fn vendor_ids(&self, device: &SourceDevice, job: &SourceJob) -> Value {
        json!({
            "wecom_jobid": job.id,
            "device_sn": device.device,
            "open_userid": job.user,
        })
    }

    async fn download(&self, device: &SourceDevice, id: &str) -> Result<Vec<u8>, FetchError> {
        sync::fetch_document(&self.client, &credentials(device), id).await
    }

    fn report_for(
        &self,
        id: &str,
        state: JobState,
        reason: Option<&str>,
        error: Option<&JobError>,
        deleted_at_source: bool,
    ) -> Report {
        match mapping::report_for(id, state, reason, error, deleted_at_source) {
            ReportPlan::Skip(why) => Report::Skip(why),
            ReportPlan::Send(body) => Report::Send {
                message: report_message(&body),
                body: serde_json::to_value(&body).unwrap_or(Value::Null),
            },
        }
    }

    async fn report(&self, device: &SourceDevice, body: &Value) -> Result<Value, VendorError> {
        self.client
            .device_call(
                &credentials(device),
                "device/report_printer_job_status",
                body,
            )
            .await
    }

    fn report_refused_for_good(&self, err: &VendorError) -> bool {
        err.vendor_code
            .as_deref()
            .and_then(|c| c.parse().ok())
            .map(WecomErrcode::from_code)
            == Some(WecomErrcode::InvalidParameter)
    }

    fn push(&self, event: &str, payload: Option<&Value>) -> Push {
        let field = |name: &str| {
            payload
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match PushEvent::parse(event) {
            PushEvent::JobSubmitted => Push::JobSubmitted,
            PushEvent::JobDeleted => Push::JobDeleted,
            PushEvent::Bind => Push::Bind {
                code: field("auth_code"),
            },
            PushEvent::Unbind => Push::Unbind,
            PushEvent::ModelTicket => Push::Ticket(field("model_ticket")),
            PushEvent::Unknown(event) => Push::Unknown(event),
        }
    }

    async fn bind(&self, device: &str, code: &str) -> Result<secrecy::SecretString, VendorError> {
        self.client.device_secret_from_auth_code(device, code).await
    }

    fn set_ticket(&self, ticket: secrecy::SecretString) {
        self.client.tokens.set_ticket(ticket);
    }

    fn paused_until(&self) -> Option<Instant> {
        self.client.paused_until()
    }
}
