//! WeCom (企业微信) hardware cloud access for printers.
//!
//! WeCom has no call to push a job *to* a printer: WeCom users submit jobs in the WeCom app
//! to a device registered by its hardware provider, and the provider's cloud — the gateway —
//! pulls them, prints them, and reports back. So a WeCom printer in the gateway is a
//! *source* (a WeCom `device_sn` and the users whose jobs to pull) bound to a *target*
//! printer of the gateway that prints. Jobs never reach this backend's `submit`: imported
//! jobs carry the target's printer id (see `service::sources`).
//!
//! - [`WecomClient`]: the HTTP calls, token handling (`token.rs`), `-1` retries, one token
//!   refresh on 40014/42001, a pause on 45009/45033;
//! - `sync.rs`: the vendor side of a sync (cursor pages, batch status, download + decrypt);
//! - `crypto.rs`: AES and `msg_signature`; `wire.rs`: the wire structs; `mapping.rs`: every
//!   table.

pub mod crypto;
pub mod mapping;
pub mod source;
pub mod sync;
pub mod token;
pub mod wire;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use crate::backends::token_cache::AccessToken;
use crate::backends::{
    Backend, BackendSetupError, InvalidPrinterConfig, PrinterContext, PrinterSetup, PrinterStatus,
    VendorError,
};
use crate::domain::backoff::Backoff;
use crate::domain::{Decision, ErrorCode, PrinterId};
use mapping::{BUSY_RETRIES, WecomErrcode};
use token::WecomTokens;

/// The registry name.
pub const NAME: &str = "wecom";

/// What the WeCom client needs from the configuration. `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct WecomSettings {
    /// `https://qyapi.weixin.qq.com` in production.
    pub base_url: String,
    pub model_id: String,
    pub model_secret: SecretString,
    /// The ticket to start with (newer ones arrive by push).
    pub model_ticket: Option<SecretString>,
    /// Timeout of one WeCom call.
    pub timeout: Duration,
    /// Largest decrypted document (WeCom's own limit is 20 MB).
    pub max_document_bytes: u64,
    /// Whether push callbacks are configured (then a device secret may come from a bind).
    pub push_configured: bool,
    /// How long to stop calling WeCom after 45009/45033.
    pub rate_limit_pause: Duration,
    /// The pause between `-1` (busy) retries; doubled each time.
    pub busy_retry_pause: Duration,
}

/// A device's credentials. `Debug` hides the secret.
#[derive(Clone, Debug)]
pub struct DeviceCredentials {
    pub device_sn: String,
    pub device_secret: SecretString,
}

/// A WeCom printer's locator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WecomLocator {
    /// The WeCom device (`device_sn`).
    pub device_sn: String,
    /// The WeCom users (`open_userid`) whose jobs are pulled; users seen by push are added.
    #[serde(default)]
    pub open_userids: Vec<String>,
    /// The gateway printer that prints this device's jobs (not itself a WeCom printer).
    pub target_printer_id: String,
    /// The tenant imported jobs belong to (default: WECOM_TENANT).
    #[serde(default)]
    pub tenant: Option<String>,
}

impl WecomLocator {
    pub fn parse(locator: &Value) -> Result<WecomLocator, InvalidPrinterConfig> {
        let parsed: WecomLocator = serde_json::from_value(locator.clone()).map_err(|err| {
            InvalidPrinterConfig(format!(
                "a WeCom printer's locator is {{\"device_sn\", \"target_printer_id\", \"open_userids\"?: [..], \"tenant\"?}}: {err}"
            ))
        })?;
        let sn = parsed.device_sn.trim();
        if sn.is_empty() || sn.len() > 128 {
            return Err(
                "`locator.device_sn` must be the WeCom device_sn (1-128 characters)".into(),
            );
        }
        PrinterId::parse(&parsed.target_printer_id).map_err(|detail| {
            InvalidPrinterConfig(format!(
                "`locator.target_printer_id` must be a printer id: {detail}"
            ))
        })?;
        if parsed.open_userids.len() > 1000
            || parsed
                .open_userids
                .iter()
                .any(|u| u.trim().is_empty() || u.len() > 64)
        {
            return Err(
                "`locator.open_userids` must list WeCom open_userids (1-64 characters each, at most 1000)"
                    .into(),
            );
        }
        if let Some(tenant) = &parsed.tenant
            && (tenant.trim().is_empty() || tenant.len() > 200)
        {
            return Err("`locator.tenant` must be 1-200 characters".into());
        }
        Ok(parsed)
    }
}

/// The device secret of a printer's secrets, when set.
pub fn device_secret(secrets: &Value) -> Option<&str> {
    secrets
        .get("device_secret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The WeCom HTTP client shared by the backend, the sync, the webhook and the reporter.
pub struct WecomClient {
    http: reqwest::Client,
    settings: WecomSettings,
    pub tokens: WecomTokens,
    /// After 45009/45033: no WeCom call until then (per process).
    paused_until: Mutex<Option<Instant>>,
}

/// What to do after a failed call.
enum Again {
    RefreshToken,
    After(Duration),
    No,
}

/// The retry budget of one logical call: one token refresh (`TokenCache::refresh_once`),
/// three `-1` retries.
#[derive(Default)]
struct RetryState {
    refreshed: bool,
    busy: u32,
}

impl RetryState {
    fn next(&mut self, err: &VendorError, pause: Duration) -> Again {
        let class = err
            .vendor_code
            .as_deref()
            .and_then(|c| c.parse::<i64>().ok())
            .map(WecomErrcode::from_code);
        match class {
            Some(class) if class.refresh_token() => Again::RefreshToken,
            Some(class) if class.retry_now() && self.busy < BUSY_RETRIES => {
                self.busy += 1;
                Again::After(Backoff::new(pause, Duration::MAX).delay(self.busy))
            }
            _ => Again::No,
        }
    }
}

impl WecomClient {
    pub fn new(settings: WecomSettings) -> Result<WecomClient, BackendSetupError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|err| {
                BackendSetupError(format!("cannot build the WeCom HTTP client: {err}"))
            })?;
        Ok(WecomClient {
            http,
            tokens: WecomTokens::new(settings.model_ticket.clone()),
            settings,
            paused_until: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &WecomSettings {
        &self.settings
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/cgi-bin/openhw/{path}",
            self.settings.base_url.trim_end_matches('/')
        )
    }

    /// When WeCom asked us to slow down, until when.
    pub fn paused_until(&self) -> Option<Instant> {
        let guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.filter(|t| *t > Instant::now())
    }

    fn pause(&self) {
        let until = Instant::now() + self.settings.rate_limit_pause;
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn paused_error(&self) -> VendorError {
        VendorError::new(
            ErrorCode::VendorRateLimited,
            Decision::Retry,
            "WeCom asked the gateway to slow down (45009/45033); calls are paused",
        )
    }

    /// `model_access_token`, cached.
    pub async fn model_token(&self) -> Result<AccessToken, VendorError> {
        self.tokens
            .model
            .get(|| async {
                let ticket = self.tokens.ticket().ok_or_else(|| {
                    VendorError::new(
                        ErrorCode::VendorAuthFailed,
                        Decision::Fail,
                        "no WeCom model_ticket yet (set WECOM_MODEL_TICKET or configure pushes)",
                    )
                })?;
                let body = wire::GetModelToken {
                    model_id: &self.settings.model_id,
                    model_secret: self.settings.model_secret.expose_secret(),
                    model_ticket: ticket.expose_secret(),
                };
                let token: wire::ModelToken =
                    self.call_once("get_model_token", None, &body).await?;
                Ok((
                    AccessToken::new(token.model_access_token),
                    Duration::from_secs(token.expires_in),
                ))
            })
            .await
    }

    /// A device's `device_access_token`, cached.
    pub async fn device_token(
        &self,
        device: &DeviceCredentials,
    ) -> Result<AccessToken, VendorError> {
        let cache = self.tokens.device(&device.device_sn);
        cache
            .get(|| async {
                let body = wire::GetDeviceToken {
                    device_sn: &device.device_sn,
                    device_secret: device.device_secret.expose_secret(),
                };
                let token: wire::DeviceToken = self.call_model("get_device_token", &body).await?;
                Ok((
                    AccessToken::new(token.device_access_token),
                    Duration::from_secs(token.expires_in),
                ))
            })
            .await
    }

    /// `get_device_secret` [95993] from a bind event's `auth_code` (single use, 10 min).
    pub async fn device_secret_from_auth_code(
        &self,
        device_sn: &str,
        auth_code: &str,
    ) -> Result<SecretString, VendorError> {
        let reply: wire::DeviceSecret = self
            .call_model("get_device_secret", &wire::GetDeviceSecret { auth_code })
            .await?;
        if let (Some(token), Some(ttl)) = (reply.device_access_token, reply.expires_in) {
            self.tokens
                .device(device_sn)
                .prime(AccessToken::new(token), Duration::from_secs(ttl));
        }
        Ok(SecretString::from(reply.device_secret))
    }

    /// A call with the model token (`get_device_token`, `get_device_secret`).
    async fn call_model<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, VendorError> {
        let mut retry = RetryState::default();
        loop {
            let token = self.model_token().await?;
            match self
                .call_once(path, Some(("model_access_token", token.expose())), body)
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(err) => match retry.next(&err, self.settings.busy_retry_pause) {
                    Again::RefreshToken
                        if self.tokens.model.refresh_once(&token, &mut retry.refreshed) =>
                    {
                        tracing::info!(
                            call = path,
                            "WeCom rejected the model token; refreshing once"
                        );
                    }
                    Again::RefreshToken => return Err(err),
                    Again::After(pause) => tokio::time::sleep(pause).await,
                    Again::No => return Err(err),
                },
            }
        }
    }

    /// A printer call (`device/...`) with the device's token: `-1` retried up to 3 times,
    /// a rejected token refreshed once.
    pub async fn device_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        device: &DeviceCredentials,
        path: &str,
        body: &Req,
    ) -> Result<Resp, VendorError> {
        let mut retry = RetryState::default();
        loop {
            let token = self.device_token(device).await?;
            match self
                .call_once(path, Some(("device_access_token", token.expose())), body)
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(err) => match retry.next(&err, self.settings.busy_retry_pause) {
                    Again::RefreshToken
                        if self
                            .tokens
                            .device(&device.device_sn)
                            .refresh_once(&token, &mut retry.refreshed) =>
                    {
                        tracing::info!(
                            call = path,
                            "WeCom rejected the device token; refreshing once"
                        );
                    }
                    Again::RefreshToken => return Err(err),
                    Again::After(pause) => tokio::time::sleep(pause).await,
                    Again::No => return Err(err),
                },
            }
        }
    }

    /// One HTTP request and its envelope. Token calls answer without `errcode` on success.
    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<(&str, &str)>,
        body: &Req,
    ) -> Result<Resp, VendorError> {
        if self.paused_until().is_some() {
            return Err(self.paused_error());
        }
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some((name, value)) = token {
            request = request.query(&[(name, value)]);
        }
        let response = request
            .send()
            .await
            .map_err(|err| VendorError::from_transport(&err.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| VendorError::from_transport(&err.without_url()))?;
        if !status.is_success() {
            return Err(VendorError::new(
                ErrorCode::VendorUnavailable,
                Decision::Retry,
                format!("WeCom answered HTTP {status} to {path}"),
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!("WeCom's answer to {path} is not JSON"),
            )
        })?;
        let envelope: wire::Envelope = serde_json::from_value(value.clone()).map_err(|_| {
            VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!("WeCom's answer to {path} has no readable errcode"),
            )
        })?;
        match envelope.errcode {
            None | Some(0) => {}
            Some(code) => {
                let class = WecomErrcode::from_code(code);
                if class.back_off() {
                    self.pause();
                    tracing::warn!(
                        call = path,
                        errcode = code,
                        "WeCom rate limit: pausing calls"
                    );
                }
                if let WecomErrcode::Unknown(code) = class {
                    tracing::warn!(call = path, errcode = code, "unknown WeCom errcode");
                }
                // The reply of a failed call carries no secret: keep it for the job events.
                return Err(class
                    .to_vendor_error(code, envelope.errmsg.as_deref().unwrap_or(""))
                    .with_raw(value));
            }
        }
        serde_json::from_value(value).map_err(|err| {
            VendorError::new(
                ErrorCode::VendorProtocolError,
                Decision::Retry,
                format!("WeCom's answer to {path} lacks expected fields: {err}"),
            )
        })
    }

    /// A plain GET of a download URL (not a WeCom API call): the encrypted bytes, at most
    /// `limit`. `Ok(None)` when the URL is refused (expired: WeCom's URLs live 10 minutes).
    pub async fn fetch_encrypted(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, VendorError> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| VendorError::from_transport(&err.without_url()))?;
        let status = response.status();
        if status.is_client_error() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(VendorError::new(
                ErrorCode::VendorUnavailable,
                Decision::Retry,
                format!("the WeCom download answered HTTP {status}"),
            ));
        }
        let too_big = || {
            VendorError::new(
                ErrorCode::DocumentUnavailable,
                Decision::Fail,
                format!("the WeCom document is larger than {limit} bytes"),
            )
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let mut out = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| VendorError::from_transport(&err.without_url()))?
        {
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(too_big());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }
}

/// The `wecom` backend: validates WeCom printers (a job source: it never prints itself).
pub struct WecomBackend {
    client: std::sync::Arc<WecomClient>,
}

impl WecomBackend {
    pub fn new(client: std::sync::Arc<WecomClient>) -> WecomBackend {
        WecomBackend { client }
    }
}

#[async_trait]
impl Backend for WecomBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn setup_printer(
        &self,
        locator: &Value,
        secrets: &Value,
    ) -> Result<PrinterSetup, InvalidPrinterConfig> {
        let locator = WecomLocator::parse(locator)?;
        if let Some(key) = secrets
            .as_object()
            .and_then(|m| m.keys().find(|k| k.as_str() != "device_secret"))
        {
            return Err(
                format!("a WeCom printer's only secret is `device_secret`, not `{key}`").into(),
            );
        }
        if secrets.get("device_secret").is_some() && device_secret(secrets).is_none() {
            return Err("`secrets.device_secret` must be a non-empty string".into());
        }
        if device_secret(secrets).is_none() && !self.client.settings.push_configured {
            return Err("`secrets.device_secret` is required: without WECOM_CALLBACK_TOKEN and WECOM_CALLBACK_AES_KEY no bind event can provide it".into());
        }
        Ok(PrinterSetup {
            device: format!("wecom:{}", locator.device_sn),
            max_in_flight: 1,
        })
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["device_secret"]
    }

    fn accepts_jobs(&self) -> bool {
        false
    }

    fn prints_on(&self, locator: &Value) -> Option<String> {
        WecomLocator::parse(locator)
            .ok()
            .map(|l| l.target_printer_id)
    }

    /// Whether WeCom accepts the device's credentials (a device token can be had).
    async fn printer_status(&self, printer: &PrinterContext) -> Result<PrinterStatus, VendorError> {
        let locator = WecomLocator::parse(&printer.locator).map_err(|detail| {
            VendorError::new(ErrorCode::PrinterNotFound, Decision::Fail, detail)
        })?;
        let Some(secret) = printer.secrets.get_str("device_secret") else {
            return Ok(PrinterStatus {
                online: None,
                ready: Some(false),
                conditions: vec!["awaiting_bind".into()],
                vendor_status: None,
            });
        };
        let device = DeviceCredentials {
            device_sn: locator.device_sn,
            device_secret: SecretString::from(secret),
        };
        self.client.device_token(&device).await?;
        Ok(PrinterStatus {
            online: None,
            ready: Some(true),
            conditions: vec![],
            vendor_status: Some("device_token_ok".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locators_are_checked_and_name_the_field() {
        let ok =
            json!({"device_sn": "sn-1", "target_printer_id": "office", "open_userids": ["u1"]});
        assert_eq!(WecomLocator::parse(&ok).unwrap().device_sn, "sn-1");
        for (bad, field) in [
            (json!({"target_printer_id": "office"}), "device_sn"),
            (
                json!({"device_sn": "", "target_printer_id": "office"}),
                "device_sn",
            ),
            (
                json!({"device_sn": "sn", "target_printer_id": "Not A Slug"}),
                "target_printer_id",
            ),
            (
                json!({"device_sn": "sn", "target_printer_id": "o", "open_userids": [""]}),
                "open_userids",
            ),
            (
                json!({"device_sn": "sn", "target_printer_id": "o", "colour": 1}),
                "colour",
            ),
        ] {
            let err = WecomLocator::parse(&bad).unwrap_err();
            assert!(err.0.contains(field), "{err}");
        }
    }

    #[test]
    fn credentials_never_show_the_secret() {
        let c = DeviceCredentials {
            device_sn: "sn".into(),
            device_secret: SecretString::from("s3cr3t-value"),
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
