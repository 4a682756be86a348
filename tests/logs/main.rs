//! Tests that read what the gateway logs. The log subscriber is process-wide, so these live
//! in a binary of their own and share one capture at trace level
//! ([`common::logs::global`]): every secret check here also watches the other tests'
//! output.

#[path = "../common/mod.rs"]
mod common;

mod failure_logs;
mod lianke_no_secrets;
mod no_secrets_in_logs;
mod wecom_no_secrets;
mod zhimu_no_secrets;
