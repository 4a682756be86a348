//! Registering and changing printers, for every caller: the API and the demo.

use serde_json::Value;

use super::{Service, ServiceError, ServiceResult};
use crate::backends::{
    Backend, CapabilitiesReport, DiscoveredPrinter, Housekeeping, PrinterContext, PrinterStatus,
    Secrets, VendorError,
};
use crate::domain::{ErrorCode, JobOptions, PrinterId};
use crate::engine::{gate, printer_context};
use crate::store;
use crate::store::printers::{PrinterFields, PrinterRow};

/// A printer's settings before the backend has checked them.
#[derive(Debug, Clone)]
pub struct PrinterDraft {
    pub id: String,
    pub display_name: String,
    pub locator: Value,
    pub secrets: Value,
    pub default_options: JobOptions,
    pub enabled: bool,
    /// `None`: the backend's default.
    pub max_in_flight: Option<u32>,
    pub owner_tenant: String,
    pub shared_with: Vec<String>,
}

/// Changes to a printer; `None` fields stay as they are. In `secrets`, a key set to
/// `null` removes that secret.
#[derive(Debug, Clone, Default)]
pub struct PrinterChanges {
    pub display_name: Option<String>,
    pub locator: Option<Value>,
    pub secrets: Option<Value>,
    pub default_options: Option<JobOptions>,
    pub enabled: Option<bool>,
    pub max_in_flight: Option<u32>,
    pub shared_with: Option<Vec<String>>,
}

/// What to do when the id is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenTaken {
    /// Refuse (`printer_exists`).
    Refuse,
    /// Replace the printer's settings (the demo's re-runs).
    Replace,
}

pub fn object_or_err(value: &Value, field: &str) -> ServiceResult<()> {
    if value.is_object() {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid_field",
            format!("`{field}` must be a JSON object."),
        ))
    }
}

/// Checks and normalises a share list: tenant names, no owner, no repeats, at most 100.
fn share_list(owner: &str, tenants: Vec<String>) -> ServiceResult<Vec<String>> {
    let mut list: Vec<String> = Vec::new();
    for tenant in tenants {
        let tenant = tenant.trim().to_owned();
        if tenant.is_empty() || tenant.len() > 200 {
            return Err(ServiceError::invalid(
                "invalid_field",
                "`shared_with` entries must be tenant names of 1-200 characters.",
            ));
        }
        if tenant != owner && !list.contains(&tenant) {
            list.push(tenant);
        }
    }
    if list.len() > 100 {
        return Err(ServiceError::invalid(
            "invalid_field",
            "`shared_with` may name at most 100 tenants.",
        ));
    }
    list.sort();
    Ok(list)
}

fn fields_for(backend: &dyn Backend, draft: PrinterDraft) -> ServiceResult<PrinterFields> {
    let PrinterDraft {
        id,
        display_name,
        locator,
        secrets,
        default_options,
        enabled,
        max_in_flight,
        owner_tenant,
        shared_with,
    } = draft;
    let shared_with = share_list(&owner_tenant, shared_with)?;
    object_or_err(&locator, "locator")?;
    object_or_err(&secrets, "secrets")?;
    default_options
        .validate()
        .map_err(|d| ServiceError::invalid("invalid_option", format!("default_options: {d}")))?;
    backend
        .check_vendor_options(&default_options.vendor_options)
        .map_err(|d| {
            ServiceError::invalid("unsupported_option", format!("default_options: {d}"))
        })?;
    let setup = backend
        .setup_printer(&locator, &secrets)
        .map_err(|detail| ServiceError::invalid("invalid_printer_config", detail))?;
    let max_in_flight = match max_in_flight {
        Some(n) if (1..=64).contains(&n) => n,
        Some(n) => {
            return Err(ServiceError::invalid(
                "invalid_field",
                format!("`max_in_flight` must be between 1 and 64, got {n}."),
            ));
        }
        None => setup.max_in_flight,
    };
    if display_name.trim().is_empty() || display_name.len() > 200 {
        return Err(ServiceError::invalid(
            "invalid_field",
            "`display_name` must be 1-200 characters.",
        ));
    }
    Ok(PrinterFields {
        id,
        display_name,
        backend: backend.name().to_owned(),
        locator,
        secrets,
        default_options,
        enabled,
        device: setup.device,
        max_in_flight: max_in_flight as i32,
        owner_tenant,
        shared_with,
    })
}

/// The vendor's code and message, as words to append to a sentence.
pub fn vendor_words(err: &VendorError) -> String {
    match (&err.vendor_code, &err.vendor_message) {
        (Some(code), Some(msg)) => format!(" (vendor code {code}: {msg})"),
        (Some(code), None) => format!(" (vendor code {code})"),
        _ => String::new(),
    }
}

fn printer_exists(id: &str) -> ServiceError {
    ServiceError::conflict(
        "printer_exists",
        format!("Printer id `{id}` is taken; pick another id (PATCH it if it is yours)."),
    )
}

impl Service {
    /// Registers a printer: the backend checks its configuration, a source-only printer's
    /// target must print, and (`verify`) the vendor must accept its credentials.
    pub async fn register_printer(
        &self,
        backend: &str,
        draft: PrinterDraft,
        verify: bool,
        when_taken: WhenTaken,
    ) -> ServiceResult<PrinterRow> {
        let backend = self.backends.get(backend).ok_or_else(|| {
            ServiceError::invalid(
                "unknown_backend",
                format!(
                    "Backend `{backend}` is not configured in this gateway; configured: {:?}.",
                    self.backends.names()
                ),
            )
        })?;
        let fields = fields_for(backend.as_ref(), draft)?;
        self.check_target(backend.as_ref(), &fields).await?;
        if when_taken == WhenTaken::Refuse
            && store::printers::get(&self.pool, &fields.id)
                .await?
                .is_some()
        {
            return Err(printer_exists(&fields.id));
        }
        if verify {
            self.verify_with_vendor(backend.as_ref(), &fields).await?;
        }
        let keyring = self.engine.keyring();
        let row = match store::printers::insert(&self.pool, keyring, &fields).await? {
            Some(row) => row,
            None if when_taken == WhenTaken::Replace => {
                store::printers::update(&self.pool, keyring, &fields)
                    .await?
                    .ok_or_else(|| ServiceError::not_found(&format!("Printer `{}`", fields.id)))?
            }
            None => return Err(printer_exists(&fields.id)),
        };
        self.engine.printer_cache().invalidate(Some(&row.id));
        if verify {
            return self.with_fresh_capabilities(row).await;
        }
        Ok(row)
    }

    /// Fetches a print target's capabilities from its vendor (through the device gate) and
    /// caches them, so that strict options are checked at accept. Best effort: a printer
    /// whose vendor cannot say now keeps no cache, and its strict options are checked at
    /// dispatch before any submit. Returns the row as stored afterwards.
    async fn with_fresh_capabilities(&self, row: PrinterRow) -> ServiceResult<PrinterRow> {
        if self.backends.target(&row.backend).is_none() {
            return Ok(row);
        }
        match self.refresh_capabilities(&row).await? {
            Ok(_) => Ok(store::printers::get(&self.pool, &row.id)
                .await?
                .unwrap_or(row)),
            Err(err) => {
                tracing::warn!(printer_id = %row.id, error = %err, "could not fetch the printer's capabilities; strict options wait for dispatch to be checked");
                Ok(row)
            }
        }
    }

    /// Asks the vendor for a printer's capabilities now, through its device gate, and
    /// caches what it says.
    pub async fn refresh_capabilities(
        &self,
        row: &PrinterRow,
    ) -> ServiceResult<Result<CapabilitiesReport, VendorError>> {
        let backend = self.backend(&row.backend)?;
        let Some(target) = self.backends.target(&row.backend) else {
            return Ok(Err(VendorError::not_a_print_target(backend.name())));
        };
        let context = printer_context(row, self.engine.keyring())
            .map_err(|err| ServiceError::Internal(err.to_string()))?;
        let timeout = self.engine.settings().vendor_timeout;
        let Some(held) =
            gate::acquire(&self.pool, &row.device, row.max_in_flight, timeout, timeout).await?
        else {
            return Ok(Err(gate::busy()));
        };
        let report = crate::engine::status::fetch_capabilities(
            &self.pool,
            target.as_ref(),
            &context,
            timeout,
        )
        .await;
        held.release(&self.pool).await;
        Ok(report?)
    }

    /// Changes a printer (`row`, as its owner read it). New credentials are checked with
    /// the vendor when `verify`.
    pub async fn update_printer(
        &self,
        row: PrinterRow,
        changes: PrinterChanges,
        verify: bool,
    ) -> ServiceResult<PrinterRow> {
        let id = row.id.clone();
        let credentials_change = changes.secrets.is_some() || changes.locator.is_some();
        let backend = self.backend(&row.backend)?;
        // Stored sealed: opened in memory for the backend's checks and the vendor's.
        let mut secrets = self
            .engine
            .keyring()
            .open_printer_secrets_json(&row.id, &row.secrets)
            .map_err(|detail| ServiceError::Internal(format!("printer `{}`: {detail}", row.id)))?;
        let secret_changes = changes.secrets.clone();
        if let Some(changes) = &changes.secrets {
            object_or_err(changes, "secrets")?;
            store::printers::merge_secrets(&mut secrets, changes);
        }
        let draft = PrinterDraft {
            id: row.id.clone(),
            display_name: changes.display_name.unwrap_or(row.display_name),
            locator: changes.locator.unwrap_or(row.locator),
            secrets,
            default_options: changes.default_options.unwrap_or(row.default_options.0),
            enabled: changes.enabled.unwrap_or(row.enabled),
            max_in_flight: changes.max_in_flight.or(Some(row.max_in_flight as u32)),
            owner_tenant: row.owner_tenant.clone(),
            shared_with: changes.shared_with.unwrap_or(row.shared_with),
        };
        let fields = fields_for(backend.as_ref(), draft)?;
        self.check_target(backend.as_ref(), &fields).await?;
        if credentials_change && verify {
            self.verify_with_vendor(backend.as_ref(), &fields).await?;
        }
        // The secrets are merged again under a row lock, onto the row as it is then.
        let row = store::printers::update_keeping_secrets(
            &self.pool,
            self.engine.keyring(),
            &fields,
            secret_changes.as_ref(),
        )
        .await?
        .ok_or_else(|| ServiceError::not_found(&format!("Printer `{id}`")))?;
        // This replica accepts jobs by the new settings at once (others on the NOTIFY).
        self.engine.printer_cache().invalidate(Some(&row.id));
        if credentials_change && verify {
            // New credentials or another device: what the old one could do says nothing.
            return self.with_fresh_capabilities(row).await;
        }
        Ok(row)
    }

    /// Asks the vendor whether the printer's locator and secrets work (its live status). An
    /// offline device passes (its credentials were accepted); an unknown printer is
    /// refused here, any other vendor error is [`ServiceError::Unverified`].
    async fn verify_with_vendor(
        &self,
        backend: &dyn Backend,
        fields: &PrinterFields,
    ) -> ServiceResult<()> {
        let context = PrinterContext {
            id: PrinterId::parse(&fields.id)
                .map_err(|detail| ServiceError::invalid("invalid_field", detail.to_string()))?,
            locator: fields.locator.clone(),
            secrets: Secrets::from_plain(&fields.secrets),
            capabilities: None,
        };
        let asked = gate::through(
            &self.pool,
            &fields.device,
            fields.max_in_flight,
            self.engine.settings().vendor_timeout,
            backend.printer_status(&context),
        )
        .await?;
        match asked {
            Ok(_) => Ok(()),
            Err(err) if err.code == ErrorCode::DeviceOffline => Ok(()),
            Err(err) if err.code == ErrorCode::PrinterNotFound => Err(ServiceError::invalid(
                "vendor_printer_not_found",
                format!(
                    "{} does not know this printer{}. Check the locator, or send ?verify=false to save it without asking.",
                    backend.name(),
                    vendor_words(&err)
                ),
            )),
            Err(err) => Err(ServiceError::Unverified(err)),
        }
    }

    /// A source-only printer (WeCom) must name an existing printer that takes jobs.
    async fn check_target(
        &self,
        backend: &dyn Backend,
        fields: &PrinterFields,
    ) -> ServiceResult<()> {
        let Some(target) = backend.prints_on(&fields.locator) else {
            return Ok(());
        };
        let invalid = |detail: String| ServiceError::invalid("invalid_printer_config", detail);
        if target == fields.id {
            return Err(invalid(format!(
                "`locator.target_printer_id` must name another printer, not `{target}` itself."
            )));
        }
        let row = store::printers::get(&self.pool, &target)
            .await?
            .filter(|row| row.usable_by(&fields.owner_tenant))
            .ok_or_else(|| {
                invalid(format!(
                    "`locator.target_printer_id`: printer `{target}` does not exist; register the printer that prints first."
                ))
            })?;
        match self.backends.get(&row.backend) {
            Some(b) if b.accepts_jobs() => Ok(()),
            _ => Err(invalid(format!(
                "`locator.target_printer_id`: printer `{target}` ({}) cannot print jobs; choose a Lianke or Zhimu printer.",
                row.backend
            ))),
        }
    }

    /// The printers behind a vendor device, through the device's gate when the backend
    /// can name the device. `None`: the backend has no discovery.
    pub async fn discover(
        &self,
        backend: &str,
        locator: &Value,
        secrets: &Value,
    ) -> ServiceResult<Option<Result<Vec<DiscoveredPrinter>, VendorError>>> {
        let Some(target) = self.backends.target(backend) else {
            self.backend(backend)?;
            return Ok(None);
        };
        let asked = async { Ok::<_, VendorError>(target.discover(locator, secrets).await) };
        Ok(match target.setup_printer(locator, secrets) {
            Ok(setup) => gate::through(
                &self.pool,
                &setup.device,
                i32::try_from(setup.max_in_flight).unwrap_or(i32::MAX),
                self.engine.settings().vendor_timeout,
                asked,
            )
            .await?
            .unwrap_or_else(|busy| Some(Err(busy))),
            Err(_) => target.discover(locator, secrets).await,
        })
    }

    /// Vendor housekeeping on a printer, through its device gate. `None`: not offered.
    pub async fn housekeeping(
        &self,
        row: &PrinterRow,
        action: Housekeeping,
    ) -> ServiceResult<Option<Result<Value, VendorError>>> {
        let Some(target) = self.backends.target(&row.backend) else {
            self.backend(&row.backend)?;
            return Ok(None);
        };
        let context = printer_context(row, self.engine.keyring())
            .map_err(|err| ServiceError::Internal(err.to_string()))?;
        let asked = async { Ok::<_, VendorError>(target.housekeeping(&context, action).await) };
        Ok(gate::through(
            &self.pool,
            &row.device,
            row.max_in_flight,
            self.engine.settings().vendor_timeout,
            asked,
        )
        .await?
        .unwrap_or_else(|busy| Some(Err(busy))))
    }

    /// A printer's status asked of its vendor now, through its device gate, and recorded
    /// in its health.
    pub async fn status(
        &self,
        row: &PrinterRow,
    ) -> ServiceResult<Result<PrinterStatus, VendorError>> {
        self.backend(&row.backend)?;
        let timeout = self.engine.settings().vendor_timeout;
        Ok(crate::engine::status::check(
            &self.pool,
            &self.backends,
            self.engine.keyring(),
            row,
            timeout,
            timeout,
        )
        .await?)
    }
}
