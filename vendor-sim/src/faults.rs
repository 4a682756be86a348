//! Scripted faults: latency, error codes (always, for the next N calls, or at a rate),
//! hanging requests, raw HTTP errors, and callback/push mischief (drop, duplicate, delay).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ledger::{Vendor, lock};

/// What a matching request suffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Wait `fixed_ms` plus a uniformly random `0..=jitter_ms` before answering normally.
    Latency {
        fixed_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Answer the vendor's own error envelope with this code instead of running the
    /// vendor logic: Lianke `{code,msg}`, WeCom `{errcode,errmsg}`, Zhimu
    /// `{success:false,message}` (the code goes into the message).
    VendorError {
        code: i64,
        #[serde(default)]
        msg: Option<String>,
    },
    /// Answer a bare HTTP status (e.g. 502, 503) with an empty body.
    HttpStatus { status: u16 },
    /// Never answer (until the simulator shuts down or `hang_duration` passes), so the
    /// client times out.
    Hang,
    /// Run the vendor logic (the request takes effect: a task is created), then never
    /// answer: the client times out not knowing its request arrived.
    HangAfter,
    /// Run the vendor logic (the request takes effect), then answer a bare HTTP status
    /// instead of the vendor's reply: a proxy's 502 after the vendor created the task.
    HttpStatusAfter { status: u16 },
}

/// One scripted fault. Rules are checked in the order added; all matching latency rules
/// add up, then the first matching answer-changing rule (error, status, hang) applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Only this vendor (any when `None`).
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// Only this exact path, e.g. `/api/print/job` (any when `None`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only this method (any when `None`).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests naming this device: Lianke `deviceId`, Zhimu `controlSn`/`shareSn`,
    /// WeCom `device_sn` (any when `None`).
    #[serde(default)]
    pub device: Option<String>,
    pub action: FaultAction,
    /// Applies to the next N matching requests, then disappears (forever when `None`).
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance in 0..=1 that a matching request is affected (1 when `None`): an error rate.
    #[serde(default)]
    pub probability: Option<f64>,
}

impl FaultRule {
    /// A rule matching every request, with this action.
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            vendor: None,
            endpoint: None,
            method: None,
            device: None,
            action,
            times: None,
            probability: None,
        }
    }

    pub fn vendor(mut self, vendor: Vendor) -> Self {
        self.vendor = Some(vendor);
        self
    }

    pub fn endpoint(mut self, method: &str, path: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self.endpoint = Some(path.to_owned());
        self
    }

    pub fn device(mut self, device: &str) -> Self {
        self.device = Some(device.to_owned());
        self
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    fn matches(&self, req: &FaultTarget<'_>) -> bool {
        self.vendor.is_none_or(|v| v == req.vendor)
            && self.endpoint.as_deref().is_none_or(|e| e == req.endpoint)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self.device.as_deref().is_none_or(|d| {
                [
                    "deviceId",
                    "controlSn",
                    "shareSn",
                    "data.task.controlSn",
                    "device_sn",
                ]
                .iter()
                .any(|k| req.fields.get(*k).is_some_and(|v| v == d))
            })
    }
}

/// What the fault layer knows about a request.
pub(crate) struct FaultTarget<'a> {
    pub vendor: Vendor,
    pub endpoint: &'a str,
    pub method: &'a str,
    pub fields: &'a BTreeMap<String, String>,
}

/// The verdict for one request.
#[derive(Debug, Default)]
pub(crate) struct FaultVerdict {
    pub delay: Duration,
    pub answer: Option<FaultAction>,
}

/// What happens to the next outbound callback/push.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallbackMischief {
    /// Never delivered.
    Drop,
    /// Delivered twice (each copy with its own retry schedule).
    Duplicate,
    /// Delivered `delay_ms` late, so later callbacks overtake it (out of order).
    Delay { delay_ms: u64 },
}

/// Mischief for the next `times` callbacks/pushes of a vendor (any vendor when `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackFault {
    #[serde(default)]
    pub vendor: Option<Vendor>,
    pub mischief: CallbackMischief,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug)]
pub(crate) struct Faults {
    rules: Mutex<Vec<(u64, FaultRule)>>,
    callbacks: Mutex<Vec<CallbackFault>>,
    next_id: Mutex<u64>,
    /// Draws `probability` and latency jitter; seeded for replayable runs.
    rng: Mutex<StdRng>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(None)
    }
}

impl Faults {
    /// Fault rules drawing from a generator seeded with `seed` (from the OS when `None`).
    /// With a seed, the same sequence of matching requests meets the same faults.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Faults {
            rules: Mutex::default(),
            callbacks: Mutex::default(),
            next_id: Mutex::default(),
            rng: Mutex::new(rng),
        }
    }

    pub(crate) fn add(&self, rule: FaultRule) -> u64 {
        let id = {
            let mut n = lock(&self.next_id);
            *n += 1;
            *n
        };
        lock(&self.rules).push((id, rule));
        id
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut rules = lock(&self.rules);
        let before = rules.len();
        rules.retain(|(i, _)| *i != id);
        rules.len() != before
    }

    pub(crate) fn list(&self) -> Vec<(u64, FaultRule)> {
        lock(&self.rules).clone()
    }

    pub(crate) fn add_callback_fault(&self, fault: CallbackFault) {
        lock(&self.callbacks).push(fault);
    }

    pub(crate) fn clear(&self) {
        lock(&self.rules).clear();
        lock(&self.callbacks).clear();
    }

    /// Decides what happens to a request, consuming `times` budgets of the rules used.
    pub(crate) fn evaluate(&self, target: &FaultTarget<'_>) -> FaultVerdict {
        let mut verdict = FaultVerdict::default();
        let mut rules = lock(&self.rules);
        let mut rng = lock(&self.rng);
        for (_, rule) in rules.iter_mut() {
            if !rule.matches(target) || rule.times == Some(0) {
                continue;
            }
            let is_latency = matches!(rule.action, FaultAction::Latency { .. });
            if !is_latency && verdict.answer.is_some() {
                continue;
            }
            if let Some(p) = rule.probability
                && !rng.random_bool(p.clamp(0.0, 1.0))
            {
                continue;
            }
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            match &rule.action {
                FaultAction::Latency {
                    fixed_ms,
                    jitter_ms,
                } => {
                    let jitter = if *jitter_ms > 0 {
                        rng.random_range(0..=*jitter_ms)
                    } else {
                        0
                    };
                    verdict.delay += Duration::from_millis(fixed_ms.saturating_add(jitter));
                }
                other => verdict.answer = Some(other.clone()),
            }
        }
        rules.retain(|(_, r)| r.times != Some(0));
        verdict
    }

    /// Takes the mischief scripted for the next callback of `vendor`, if any.
    pub(crate) fn next_callback_mischief(&self, vendor: Vendor) -> Option<CallbackMischief> {
        let mut faults = lock(&self.callbacks);
        let pos = faults
            .iter()
            .position(|f| f.times > 0 && f.vendor.is_none_or(|v| v == vendor))?;
        let fault = faults.get_mut(pos)?;
        fault.times -= 1;
        let mischief = fault.mischief;
        faults.retain(|f| f.times > 0);
        Some(mischief)
    }
}
