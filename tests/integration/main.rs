//! The gateway's integration tests in one binary (one link, one pool of test threads): each
//! module is one area, over real HTTP, a real Postgres and the vendor simulator. Tests that
//! read the process-wide log output live in the `logs` binary instead.

#[path = "../common/mod.rs"]
mod common;

mod api_jobs;
mod api_printers;
mod cli;
mod document_store;
mod engine;
mod hostile_input;
mod lianke;
mod observability;
mod operations;
mod pdf_conversion;
mod pools;
mod retention;
mod secrets_at_rest;
mod tenants_and_keys;
mod webhooks;
mod wecom;
mod zhimu_backend;
