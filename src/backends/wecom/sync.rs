//! The vendor side of a WeCom sync (`wecom-get-printer-job-list.md`): unprinted jobs page by
//! page, the batch status look-up by `jobid_list`, and a job's document (download URL →
//! encrypted bytes → AES decrypt). What to do with them — import, cancel, report — is the
//! service's (`service::sources`).

use std::collections::HashMap;

use chrono::Utc;

use super::crypto::AesKey;
use super::mapping::WecomErrcode;
use super::wire::{DownloadUrl, GetDownloadUrl, GetPrinterJobList, PrinterJob, PrinterJobList};
use super::{DeviceCredentials, WecomClient};
use crate::backends::VendorError;
use crate::domain::{Decision, ErrorCode};

/// WeCom's page size limit.
pub const MAX_PAGE: u32 = 200;
/// `jobid_list` takes at most 200 ids.
pub const MAX_JOBID_LIST: usize = 200;
/// WeCom keeps jobs 7 days: a window reaching further back finds nothing more.
pub const RETENTION_SECS: i64 = 7 * 86_400;
/// A runaway cursor (one that never ends) stops after this many pages.
const MAX_PAGES: usize = 10_000;

/// Pages of one user's unprinted (status 0) jobs inside a time window.
pub struct UnprintedPages<'a> {
    client: &'a WecomClient,
    device: DeviceCredentials,
    request: GetPrinterJobList,
    done: bool,
    pages: usize,
}

impl<'a> UnprintedPages<'a> {
    /// `window_secs`: how far back to look (capped at the 7-day retention).
    pub fn new(
        client: &'a WecomClient,
        device: DeviceCredentials,
        open_userid: &str,
        window_secs: i64,
        page_size: u32,
    ) -> UnprintedPages<'a> {
        let begin = Utc::now().timestamp() - window_secs.clamp(1, RETENTION_SECS);
        UnprintedPages {
            client,
            device,
            request: GetPrinterJobList {
                open_userid: open_userid.to_owned(),
                status: Some(0),
                cursor: None,
                limit: Some(page_size.clamp(1, MAX_PAGE)),
                begin_time: Some(begin),
                end_time: None,
                jobid_list: Vec::new(),
            },
            done: false,
            pages: 0,
        }
    }

    /// The next page; `None` once `next_cursor` was absent.
    pub async fn next_page(&mut self) -> Option<Result<Vec<PrinterJob>, VendorError>> {
        if self.done {
            return None;
        }
        let page: PrinterJobList = match self
            .client
            .device_call(&self.device, "device/get_printer_job_list", &self.request)
            .await
        {
            Ok(page) => page,
            Err(err) => {
                self.done = true;
                return Some(Err(err));
            }
        };
        self.pages += 1;
        match page.next_cursor.filter(|c| !c.is_empty()) {
            Some(cursor)
                if Some(&cursor) != self.request.cursor.as_ref() && self.pages < MAX_PAGES =>
            {
                self.request.cursor = Some(cursor);
            }
            Some(_) => {
                tracing::warn!(device_sn = %self.device.device_sn, "WeCom repeated a cursor; stopping this listing");
                self.done = true;
            }
            None => self.done = true,
        }
        Some(Ok(page.printer_job_list))
    }
}

/// The batch status look-up: what WeCom knows of `jobids` (every other filter is ignored
/// when `jobid_list` is given). Jobs absent from the answer were deleted or expired.
pub async fn batch_status(
    client: &WecomClient,
    device: &DeviceCredentials,
    open_userid: &str,
    jobids: &[String],
) -> Result<HashMap<String, PrinterJob>, VendorError> {
    let mut found = HashMap::new();
    for chunk in jobids.chunks(MAX_JOBID_LIST) {
        let request = GetPrinterJobList {
            open_userid: open_userid.to_owned(),
            jobid_list: chunk.to_vec(),
            ..GetPrinterJobList::default()
        };
        let page: PrinterJobList = client
            .device_call(device, "device/get_printer_job_list", &request)
            .await?;
        for job in page.printer_job_list {
            found.insert(job.jobid.clone(), job);
        }
    }
    Ok(found)
}

/// Why a document could not be had.
pub use crate::backends::source::FetchError;

/// Downloads and decrypts a job's document. The URL lives 10 minutes: it is used at once,
/// and fetched again once if the download is refused.
pub async fn fetch_document(
    client: &WecomClient,
    device: &DeviceCredentials,
    jobid: &str,
) -> Result<Vec<u8>, FetchError> {
    let limit = client.settings().max_document_bytes;
    // PKCS#7 to 32 bytes adds at most 32 bytes.
    let cipher_limit = limit.saturating_add(32);
    for _ in 0..2 {
        let url: DownloadUrl = client
            .device_call(
                device,
                "device/get_printer_job_download_url",
                &GetDownloadUrl { jobid },
            )
            .await
            .map_err(
                |err| match err.vendor_code.as_deref().and_then(|c| c.parse().ok()) {
                    Some(code)
                        if WecomErrcode::from_code(code) == WecomErrcode::InvalidParameter =>
                    {
                        FetchError::Gone
                    }
                    _ => FetchError::Vendor(err),
                },
            )?;
        let key = AesKey::from_encoding_aes_key(&url.encoding_aeskey)
            .map_err(|err| FetchError::Unusable(format!("WeCom's encoding_aeskey: {err}")))?;
        let Some(cipher) = client
            .fetch_encrypted(&url.download_url, cipher_limit)
            .await
            .map_err(|err| match err.decision {
                Decision::Fail => FetchError::Unusable(err.message),
                _ => FetchError::Vendor(err),
            })?
        else {
            tracing::info!(
                jobid,
                "WeCom download URL refused (expired?); fetching a new one"
            );
            continue;
        };
        let plain = key
            .decrypt(&cipher)
            .map_err(|err| FetchError::Unusable(format!("the WeCom document: {err}")))?;
        if plain.len() as u64 > limit {
            return Err(FetchError::Unusable(format!(
                "the WeCom document is larger than {limit} bytes"
            )));
        }
        return Ok(plain);
    }
    Err(FetchError::Vendor(VendorError::new(
        ErrorCode::DocumentUnavailable,
        Decision::Retry,
        "the WeCom download URL was refused twice",
    )))
}
