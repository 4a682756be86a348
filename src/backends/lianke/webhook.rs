//! Lianke's result callback (`callbackUrl`, "回调功能 callbackUrl 说明"): Lianke POSTs JSON
//! `{device_id, task_id, task_state, create_time, finish_time, task_result{code,msg}}` when a
//! task ends, retrying at 0/5/10 s until it gets HTTP 200. The body is unsigned; the
//! gateway authenticates it by the per-job token in the URL (see `callback_token`) and by
//! checking that the task and the device are the job's. This module reads and checks the
//! body; the HTTP side lives in `api::webhooks`.

use serde_json::Value;

use super::mapping;
use super::wire::CallbackBody;
use crate::backends::TaskReport;

/// A callback body, parsed, with the raw JSON kept for the job's events.
#[derive(Debug, Clone)]
pub struct LiankeCallback {
    pub body: CallbackBody,
    pub raw: Value,
}

/// Why a well-formed callback does not belong to the job its URL names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("the callback is for device {got:?}, the job's printer is on device {expected:?}")]
    Device { expected: String, got: String },
    #[error("the callback is for task {got:?}, the job's task is {expected:?}")]
    Task { expected: String, got: String },
}

/// Why a callback body is not a Lianke result callback.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableCallback {
    #[error("the callback body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the callback body is not a Lianke result callback: {0}")]
    NotACallback(serde_json::Error),
    #[error("the callback body has an empty task_id or device_id")]
    EmptyIds,
}

impl LiankeCallback {
    pub fn parse(bytes: &[u8]) -> Result<LiankeCallback, UnreadableCallback> {
        let raw: Value = serde_json::from_slice(bytes).map_err(UnreadableCallback::NotJson)?;
        let body: CallbackBody =
            serde_json::from_value(raw.clone()).map_err(UnreadableCallback::NotACallback)?;
        if body.task_id.trim().is_empty() || body.device_id.trim().is_empty() {
            return Err(UnreadableCallback::EmptyIds);
        }
        Ok(LiankeCallback { body, raw })
    }

    /// The device must be the printer's; the task must be the job's when the job knows its
    /// task (a job whose submit is unconfirmed does not yet).
    pub fn check(&self, device_id: &str, job_task_id: Option<&str>) -> Result<(), Mismatch> {
        if self.body.device_id != device_id {
            return Err(Mismatch::Device {
                expected: device_id.to_owned(),
                got: self.body.device_id.clone(),
            });
        }
        match job_task_id {
            Some(task) if task != self.body.task_id => Err(Mismatch::Task {
                expected: task.to_owned(),
                got: self.body.task_id.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the body claims the task ended (SUCCESS, FAILURE, REVOKED).
    pub fn is_terminal(&self) -> bool {
        self.body.task_state.is_terminal()
    }

    /// The neutral report the body states.
    pub fn report(&self) -> TaskReport {
        TaskReport {
            progress: mapping::task_progress(&self.body.task_state, self.body.task_result.as_ref()),
            vendor_status: self.body.task_state.as_str().to_owned(),
            raw: Some(self.raw.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::TaskProgress;

    const BODY: &str = r#"{"device_id": "lk1", "task_id": "t-1", "task_state": "SUCCESS",
        "create_time": "2022-03-01 17:15:02", "finish_time": "2022-03-01 17:30:58",
        "task_result": {"code": 200, "msg": "success"}}"#;

    #[test]
    fn a_matching_callback_reports_completion() {
        let cb = LiankeCallback::parse(BODY.as_bytes()).unwrap();
        assert_eq!(cb.check("lk1", Some("t-1")), Ok(()));
        assert_eq!(cb.check("lk1", None), Ok(()));
        assert!(cb.is_terminal());
        let report = cb.report();
        assert_eq!(report.progress, TaskProgress::Completed);
        assert_eq!(report.raw.unwrap()["task_id"], "t-1");
    }

    #[test]
    fn other_devices_and_tasks_are_refused() {
        let cb = LiankeCallback::parse(BODY.as_bytes()).unwrap();
        assert!(matches!(
            cb.check("lk2", Some("t-1")),
            Err(Mismatch::Device { .. })
        ));
        assert!(matches!(
            cb.check("lk1", Some("t-2")),
            Err(Mismatch::Task { .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"device_id": "", "task_id": "t", "task_state": "SUCCESS"}"#,
        ] {
            assert!(LiankeCallback::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
