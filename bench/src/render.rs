//! The render phase: how fast the gateway turns a PDF into page images for a printer that
//! takes images only (Zhimu), and how much memory that takes. `bench render` runs in a
//! process of its own, so its peak RSS (VmHWM) is the renderer's, not the bench's.

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use print_gateway::engine::pages::{PageTarget, RenderLimits, Renderer, sample_a4_pdf};
use serde_json::{Value, json};

/// Renders a `pages`-page A4 PDF (text and boxes) at `dpi`, as a dispatch worker does
/// (one blocking thread, RENDER_CONCURRENCY = 1), and prints what it measured as JSON.
pub fn measure(pages: u32, dpi: u32) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pdf = Bytes::from(sample_a4_pdf(pages));
    let renderer = Renderer::new(
        1,
        RenderLimits {
            max_pages: pages.max(1),
            max_pixels: 40_000_000,
            default_dpi: dpi,
        },
    );
    let rss_before = vm_kib("VmRSS:");
    let started = Instant::now();
    let rendered = runtime
        .block_on(renderer.pdf_pages(pdf.clone(), None, PageTarget::default()))
        .map_err(|err| anyhow::anyhow!("rendering failed: {err}"))?;
    let secs = started.elapsed().as_secs_f64();
    let png_bytes: usize = rendered.pages.iter().map(Bytes::len).sum();
    let (w, h) = rendered
        .sizes
        .first()
        .copied()
        .context("no page rendered")?;
    Ok(json!({
        "pages": rendered.pages.len(),
        "dpi": dpi,
        "page_pixels": format!("{w}x{h}"),
        "pdf_bytes": pdf.len(),
        "png_bytes": png_bytes,
        "seconds": secs,
        "pages_per_sec": rendered.pages.len() as f64 / secs,
        "rss_before_mib": rss_before / 1024.0,
        "peak_rss_mib": vm_kib("VmHWM:") / 1024.0,
    }))
}

fn vm_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}
