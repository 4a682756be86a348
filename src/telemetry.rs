//! The tracing subscriber, built in one place. `RUST_LOG` filters (default `info`).
//!
//! Colours (ANSI escapes) only when the sink is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>); JSON lines never have them. In JSON, every line logged while
//! a request is handled carries that request's span, whose `request_id` is the
//! `x-request-id` the gateway answers with; a job's work carries `job_id` the same way.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to standard error (the service's log).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let colours = std::io::stderr().is_terminal() && colours_allowed(std::env::var_os("NO_COLOR"));
    install(format, filter, std::io::stderr, colours);
}

/// Whether `NO_COLOR` (its value) allows colours: set to anything non-empty, it forbids them.
pub fn colours_allowed(no_color: Option<std::ffi::OsString>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber writing to `sink`, without colours (tests capture it).
/// Later calls are no-ops.
pub fn init_with_filter<W>(format: LogFormat, filter: EnvFilter, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(format, filter, sink, false);
}

fn install<W>(format: LogFormat, filter: EnvFilter, sink: W, colours: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colours).try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::colours_allowed;

    #[test]
    fn no_color_with_a_value_turns_colours_off() {
        assert!(colours_allowed(None));
        assert!(colours_allowed(Some("".into())));
        assert!(!colours_allowed(Some("1".into())));
    }
}
