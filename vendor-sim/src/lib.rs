//! # vendor-sim
//!
//! Test equipment for print-gateway: fake Lianke, Zhimu and WeCom cloud-printer HTTP APIs on
//! one port, speaking each vendor's wire format as its documents (`shared/vendor-docs/`)
//! describe it, with scriptable faults and a ledger of every request received.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use vendor_sim::{LiankeDeviceSpec, Sim, SimConfig};
//! let sim = Sim::start(SimConfig::default()).await?;
//! sim.add_lianke_device(LiankeDeviceSpec::new("lk-1", "secret-key"));
//! let base = sim.base_url(); // point the Lianke client at `{base}/api/...`
//! # let _ = base;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Paths: Lianke `/api/...`, Zhimu `/openapi...`, WeCom `/cgi-bin/openhw/...` (downloads at
//! `/wecom-download/...`), control `/_sim/...` (see README.md).

mod config;
mod control;
mod core;
mod faults;
mod form;
mod ledger;
pub mod lianke;
mod router;
pub mod wecom;
pub mod zhimu;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::config::{
    DEFAULT_LIANKE_API_KEY, Fixtures, LIANKE_CALLBACK_SCHEDULE, SimConfig, scaled,
};
pub use crate::core::CallbackAttempt;
pub use crate::faults::{CallbackFault, CallbackMischief, FaultAction, FaultRule};
pub use crate::ledger::{LedgerEntry, LedgerFile, LedgerFilter, Vendor, mask};
pub use crate::lianke::{
    LiankeDeviceSpec, LiankeOutcome, LiankePrinterSpec, LiankePrinterStatus, LiankeTaskState,
    LiankeTaskView,
};
pub use crate::wecom::{
    WecomControlError, WecomDeviceSpec, WecomJobSeed, WecomJobView, WecomModelSpec,
    WecomPushConfig, WecomSetting,
};
pub use crate::zhimu::{
    ZhimuAppSpec, ZhimuOutcome, ZhimuShareSpec, ZhimuTaskStatus, ZhimuTaskView, zhimu_signature,
};

use crate::core::Core;
use crate::ledger::{Ledger, lock};
use crate::lianke::{LiankeSettings, LiankeSim, LiankeWorld};
use crate::wecom::{WecomSettings, WecomSim, WecomWorld};
use crate::zhimu::{ZhimuSettings, ZhimuSim, ZhimuWorld};

/// A running simulator. Dereferences to [`SimControl`] for the control helpers.
pub struct Sim {
    control: SimControl,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Sim {
    /// Binds `config.bind`, starts serving in the background and returns.
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(config.accept_invalid_certs)
            .timeout(config.callback_timeout)
            .build()?;
        let f = &config.fixtures;
        let core = Arc::new(Core {
            base_url: format!("http://{addr}"),
            hang_duration: config.hang_duration,
            ledger: Ledger::default(),
            faults: faults::Faults::new(config.fault_seed),
            outbox: Mutex::new(Vec::new()),
            http,
            cancel: CancellationToken::new(),
        });
        let lianke = Arc::new(LiankeSim {
            core: Arc::clone(&core),
            lianke: Mutex::new(LiankeWorld::new(&config.lianke_api_keys, &f.lianke_devices)),
            config: LiankeSettings {
                allow_http_callbacks: config.allow_http_callbacks,
                lianke_stage_delay: config.lianke_stage_delay,
                lianke_status_query_delay: config.lianke_status_query_delay,
                lianke_callback_schedule: config.lianke_callback_schedule.clone(),
            },
        });
        let zhimu = Arc::new(ZhimuSim {
            core: Arc::clone(&core),
            zhimu: Mutex::new(ZhimuWorld::new(&f.zhimu_apps, &f.zhimu_shares)),
            config: ZhimuSettings {
                zhimu_token_ttl: config.zhimu_token_ttl,
                zhimu_stage_delay: config.zhimu_stage_delay,
            },
        });
        let wecom = Arc::new(WecomSim {
            core: Arc::clone(&core),
            wecom: Mutex::new(WecomWorld::new(&f.wecom_models, &f.wecom_devices)),
            wecom_push: Mutex::new(config.wecom_push.clone()),
            config: WecomSettings {
                wecom_token_ttl: config.wecom_token_ttl,
                wecom_retention: config.wecom_retention,
                wecom_download_ttl: config.wecom_download_ttl,
                wecom_push_schedule: config.wecom_push_schedule.clone(),
            },
        });
        let control = SimControl {
            core: Arc::clone(&core),
            lianke,
            zhimu,
            wecom,
            config: Arc::new(config),
        };
        let app = router::build(control.clone());
        let cancel = core.cancel.clone();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "vendor-sim server stopped");
            }
        });
        tracing::info!(%addr, "vendor-sim listening");
        Ok(Sim {
            control,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.control.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A cloneable handle to the control helpers (for moving into tasks).
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Stops serving, ends hanging requests, task runners and callback deliveries.
    pub async fn shutdown(self) {
        self.control.core.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }

    /// Waits until the server stops (on a [`SimControl::shutdown_signal`] or error).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

impl Deref for Sim {
    type Target = SimControl;
    fn deref(&self) -> &SimControl {
        &self.control
    }
}

/// Everything the control API offers, as Rust calls.
#[derive(Clone)]
pub struct SimControl {
    core: Arc<Core>,
    lianke: Arc<LiankeSim>,
    zhimu: Arc<ZhimuSim>,
    wecom: Arc<WecomSim>,
    config: Arc<SimConfig>,
}

impl SimControl {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub(crate) fn lianke(&self) -> &Arc<LiankeSim> {
        &self.lianke
    }

    pub(crate) fn zhimu(&self) -> &Arc<ZhimuSim> {
        &self.zhimu
    }

    pub(crate) fn wecom(&self) -> &Arc<WecomSim> {
        &self.wecom
    }

    pub fn base_url(&self) -> String {
        self.core.base_url.clone()
    }

    /// Asks the server to stop (what [`Sim::shutdown`] does, without waiting).
    pub fn shutdown_signal(&self) {
        self.core.cancel.cancel();
    }

    // ----- ledger, callbacks, reset

    /// Every vendor request received, in arrival order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.core.ledger.query(&LedgerFilter::default())
    }

    pub fn ledger_filtered(&self, filter: &LedgerFilter) -> Vec<LedgerEntry> {
        self.core.ledger.query(filter)
    }

    pub fn ledger_count(&self, filter: &LedgerFilter) -> usize {
        self.core.ledger.query(filter).len()
    }

    pub fn clear_ledger(&self) {
        self.core.ledger.clear();
    }

    /// Every outbound callback/push attempt, in order.
    pub fn callbacks(&self) -> Vec<CallbackAttempt> {
        lock(&self.core.outbox).clone()
    }

    /// Forgets everything (ledger, faults, callbacks, tokens, tasks, jobs, registrations)
    /// and registers the configured fixtures again.
    pub fn reset(&self) {
        let c = &self.core;
        let f = &self.config.fixtures;
        c.ledger.clear();
        c.faults.clear();
        lock(&c.outbox).clear();
        *lock(&self.lianke.lianke) =
            LiankeWorld::new(&self.config.lianke_api_keys, &f.lianke_devices);
        *lock(&self.zhimu.zhimu) = ZhimuWorld::new(&f.zhimu_apps, &f.zhimu_shares);
        *lock(&self.wecom.wecom) = WecomWorld::new(&f.wecom_models, &f.wecom_devices);
        *lock(&self.wecom.wecom_push) = self.config.wecom_push.clone();
    }

    // ----- faults

    /// Adds a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.core.faults.add(rule)
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        self.core.faults.remove(id)
    }

    pub fn faults(&self) -> Vec<(u64, FaultRule)> {
        self.core.faults.list()
    }

    /// Removes every fault rule and callback fault.
    pub fn clear_faults(&self) {
        self.core.faults.clear();
    }

    pub fn add_callback_fault(&self, fault: CallbackFault) {
        self.core.faults.add_callback_fault(fault);
    }

    // ----- Lianke

    pub fn add_lianke_api_key(&self, key: &str) {
        lock(&self.lianke.lianke).add_api_key(key);
    }

    /// Registers (or replaces) a box.
    pub fn add_lianke_device(&self, spec: LiankeDeviceSpec) {
        lock(&self.lianke.lianke).add_device(spec);
    }

    /// `Some(true)` online, `Some(false)` offline (5002), `None` never configured (5001).
    pub fn set_lianke_online(&self, device_id: &str, online: Option<bool>) -> bool {
        lock(&self.lianke.lianke).set_online(device_id, online)
    }

    /// A paused box keeps its tasks in READY (to test revoke and flush).
    pub fn set_lianke_paused(&self, device_id: &str, paused: bool) -> bool {
        lock(&self.lianke.lianke).set_paused(device_id, paused)
    }

    /// Plugs a printer into `port`, or unplugs it with `None`.
    pub fn set_lianke_printer(
        &self,
        device_id: &str,
        port: u32,
        printer: Option<LiankePrinterSpec>,
    ) -> bool {
        lock(&self.lianke.lianke).set_printer(device_id, port, printer)
    }

    /// Outcomes for the next tasks submitted to the box, in order (then: success).
    pub fn script_lianke_outcomes(&self, device_id: &str, outcomes: Vec<LiankeOutcome>) -> bool {
        lock(&self.lianke.lianke).script_outcomes(device_id, outcomes)
    }

    pub fn lianke_task(&self, task_id: &str) -> Option<LiankeTaskView> {
        lock(&self.lianke.lianke).task(task_id)
    }

    pub fn lianke_tasks(&self) -> Vec<LiankeTaskView> {
        lock(&self.lianke.lianke).tasks()
    }

    /// The box's current run of failed tasks (11203 at `errLimitNum`).
    pub fn lianke_consecutive_failures(&self, device_id: &str) -> Option<u32> {
        lock(&self.lianke.lianke).consecutive_failures(device_id)
    }

    // ----- Zhimu

    pub fn add_zhimu_app(&self, app: ZhimuAppSpec) {
        lock(&self.zhimu.zhimu).add_app(app);
    }

    /// Makes a printer shareable (addable with its share code and password).
    pub fn add_zhimu_share(&self, share: ZhimuShareSpec) {
        lock(&self.zhimu.zhimu).add_share(share);
    }

    /// An offline printer refuses new tasks and keeps queued ones QUEUED.
    pub fn set_zhimu_online(&self, sn: &str, printer_name: &str, online: bool) -> bool {
        lock(&self.zhimu.zhimu).set_online(sn, printer_name, online)
    }

    pub fn script_zhimu_outcomes(
        &self,
        sn: &str,
        printer_name: &str,
        outcomes: Vec<ZhimuOutcome>,
    ) -> bool {
        lock(&self.zhimu.zhimu).script_outcomes(sn, printer_name, outcomes)
    }

    /// Cancels a task as the sharing PC's user would (Zhimu has no cancel API).
    pub fn cancel_zhimu_task(&self, task_id: &str) -> bool {
        lock(&self.zhimu.zhimu).cancel(task_id)
    }

    pub fn zhimu_task(&self, task_id: &str) -> Option<ZhimuTaskView> {
        lock(&self.zhimu.zhimu).task(task_id)
    }

    /// Every Zhimu task, oldest first.
    pub fn zhimu_tasks(&self) -> Vec<ZhimuTaskView> {
        lock(&self.zhimu.zhimu).tasks()
    }

    /// Expires every Zhimu token now.
    pub fn expire_zhimu_tokens(&self) {
        lock(&self.zhimu.zhimu).expire_tokens();
    }

    // ----- WeCom

    pub fn add_wecom_model(&self, model: WecomModelSpec) {
        lock(&self.wecom.wecom).add_model(model);
    }

    pub fn add_wecom_device(&self, device: WecomDeviceSpec) {
        lock(&self.wecom.wecom).add_device(device);
    }

    /// Sets (or disables with `None`) where pushes go.
    pub fn set_wecom_push(&self, push: Option<WecomPushConfig>) {
        *lock(&self.wecom.wecom_push) = push;
    }

    /// A fresh single-use `auth_code` for the device (as a `bind` event carries; pushed as
    /// `bind` when pushes are configured).
    pub fn wecom_auth_code(&self, device_sn: &str) -> Result<String, WecomControlError> {
        wecom::new_auth_code(&self.wecom, device_sn)
    }

    /// Adds a job as if a WeCom user submitted it; pushes `printer_job_submit` when asked
    /// and configured. Returns the jobid.
    pub fn seed_wecom_job(&self, seed: WecomJobSeed) -> Result<String, WecomControlError> {
        wecom::seed_job(&self.wecom, seed)
    }

    /// Deletes a job as its user would; pushes `printer_job_del`.
    pub fn delete_wecom_job(&self, jobid: &str) -> Result<(), WecomControlError> {
        wecom::delete_job(&self.wecom, jobid)
    }

    pub fn wecom_job(&self, jobid: &str) -> Option<WecomJobView> {
        lock(&self.wecom.wecom).job(jobid)
    }

    /// Expires every WeCom token now.
    pub fn expire_wecom_tokens(&self) {
        lock(&self.wecom.wecom).expire_tokens();
    }
}
