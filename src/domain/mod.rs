//! The neutral model: jobs, their one-way states, documents, options, printers and the
//! error catalog's neutral side. Nothing here knows about a vendor, SQL or HTTP.

pub mod backoff;
pub mod capabilities;
pub mod document;
pub mod error;
pub mod job;
pub mod options;
pub mod printer;

pub use capabilities::Capabilities;
pub use document::{DocumentKind, DocumentType};
pub use error::{Decision, ErrorCode, JobError};
pub use job::{EventSource, JobState, Transition, TransitionError};
pub use options::{JobOptions, OptionsMode};
pub use printer::{BackendName, PrinterId};
