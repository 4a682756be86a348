//! print-gateway: one vendor-neutral print API over Lianke, Zhimu and WeCom cloud printers.
//!
//! Layers, arrows pointing one way: `api` → `service` → `engine`/`backends`/`store` →
//! `domain` (see ARCHITECTURE.md); `backends` use `domain`; `domain` uses nothing of ours.

pub mod api;
pub mod app;
pub mod backends;
pub mod callback_token;
pub mod config;
pub mod console;
pub mod demo;
pub mod document_store;
pub mod domain;
pub mod engine;
pub mod observe;
pub mod retention;
pub mod secrets_at_rest;
pub mod serve;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod webhook_listen;
pub mod webhook_signature;
