//! Converting a document the printer cannot take into page images it can: PDF → one PNG
//! per page (honouring `page_ranges`), rendered with `hayro`, a pure-Rust rasteriser, so
//! no system binary is needed. Also the small first-page previews of PDF and image jobs.
//!
//! Rendering is CPU- and memory-heavy, so it never runs on the request path's async
//! threads: each document renders on a blocking thread, at most `RENDER_CONCURRENCY` at a
//! time per process, with a page-count limit and a pixel limit per page (a page that would
//! be larger is rendered at a lower resolution). A panic inside the renderer (a hostile
//! file) is caught and becomes `document_unrenderable`, like any unreadable file.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use tokio::sync::Semaphore;

use crate::config::RenderConfig;
use crate::domain::DocumentType;
use crate::domain::options::PageRanges;

/// Limits of one conversion, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    pub max_pages: u32,
    pub max_pixels: u64,
    pub default_dpi: u32,
}

impl RenderLimits {
    pub fn from_config(config: &RenderConfig) -> RenderLimits {
        RenderLimits {
            max_pages: config.render_max_pages,
            max_pixels: config.render_max_pixels,
            default_dpi: config.render_dpi,
        }
    }
}

/// What to render: the resolution and, when known, the paper the page must fit on.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageTarget {
    pub dpi: Option<u32>,
    /// Paper (width, height) in millimetres: the page is scaled to fit it at `dpi`.
    pub paper_mm: Option<(f64, f64)>,
}

/// The pages of a converted document, PNG-encoded, in print order.
#[derive(Debug, Clone)]
pub struct RenderedPages {
    pub pages: Vec<Bytes>,
    /// Pages in the source document.
    pub source_pages: u32,
    /// (width, height) in pixels of each rendered page.
    pub sizes: Vec<(u32, u32)>,
}

/// Why a document could not be converted; the message is the job's error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unrenderable(pub String);

/// The bounded renderer an engine (and the preview route through the service) shares.
pub struct Renderer {
    permits: Arc<Semaphore>,
    limits: RenderLimits,
}

impl Renderer {
    pub fn new(concurrency: u32, limits: RenderLimits) -> Renderer {
        Renderer {
            permits: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            limits,
        }
    }

    pub fn limits(&self) -> RenderLimits {
        self.limits
    }

    /// Renders the pages of `pdf` that `page_ranges` selects (all when `None`).
    pub async fn pdf_pages(
        &self,
        pdf: Bytes,
        page_ranges: Option<String>,
        target: PageTarget,
    ) -> Result<RenderedPages, Unrenderable> {
        let limits = self.limits;
        self.blocking(move || render_pdf(&pdf, page_ranges.as_deref(), target, limits))
            .await
    }

    /// A PNG of the document's first page whose longer side is at most `max_side` pixels.
    pub async fn preview(
        &self,
        bytes: Bytes,
        doc_type: DocumentType,
        max_side: u32,
    ) -> Result<Bytes, Unrenderable> {
        self.blocking(move || preview(&bytes, doc_type, max_side))
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Unrenderable> + Send + 'static,
    ) -> Result<T, Unrenderable> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Unrenderable("the renderer is shutting down".into()))?;
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => Err(Unrenderable(
                "the renderer could not read this document (it stopped on malformed content)"
                    .into(),
            )),
            Err(err) => Err(Unrenderable(format!("rendering was interrupted: {err}"))),
        }
    }
}

fn open_pdf(bytes: &[u8]) -> Result<Pdf, Unrenderable> {
    Pdf::new(bytes.to_vec()).map_err(|err| {
        Unrenderable(match err {
            hayro::hayro_syntax::LoadPdfError::Decryption(_) => {
                "the PDF is encrypted or password-protected; send it unprotected".to_owned()
            }
            hayro::hayro_syntax::LoadPdfError::Invalid => {
                "the document is not a readable PDF".to_owned()
            }
        })
    })
}

/// The page indexes (from 0) that `ranges` selects in a document of `count` pages, in
/// order, without repeats; pages past the end are ignored.
pub fn select_pages(count: u32, ranges: Option<&str>) -> Result<Vec<u32>, Unrenderable> {
    let Some(raw) = ranges else {
        return Ok((0..count).collect());
    };
    let ranges = PageRanges::parse(raw).map_err(|err| Unrenderable(err.to_string()))?;
    let mut out: Vec<u32> = Vec::new();
    for &(start, end) in ranges.ranges() {
        for page in start..=end.min(count) {
            if !out.contains(&(page - 1)) {
                out.push(page - 1);
            }
        }
    }
    if out.is_empty() {
        return Err(Unrenderable(format!(
            "`page_ranges` {raw:?} selects no page of this {count}-page document"
        )));
    }
    Ok(out)
}

/// The scale (pixels per PDF point) for a page of `width_pt` × `height_pt`.
fn scale_for(width_pt: f32, height_pt: f32, target: PageTarget, limits: RenderLimits) -> f64 {
    let dpi = f64::from(target.dpi.unwrap_or(limits.default_dpi));
    let (w, h) = (f64::from(width_pt.max(1.0)), f64::from(height_pt.max(1.0)));
    let mut scale = dpi / 72.0;
    if let Some((paper_w, paper_h)) = target.paper_mm {
        // Fit the page on the paper, turned to match its orientation.
        let (paper_w, paper_h) = if (w > h) != (paper_w > paper_h) {
            (paper_h, paper_w)
        } else {
            (paper_w, paper_h)
        };
        let fit = (paper_w / 25.4 * dpi / w).min(paper_h / 25.4 * dpi / h);
        if fit.is_finite() && fit > 0.0 {
            scale = fit;
        }
    }
    // Within the pixel budget and within the rasteriser's 65,535-pixel sides.
    let pixels = w * scale * h * scale;
    if pixels > limits.max_pixels as f64 {
        scale *= (limits.max_pixels as f64 / pixels).sqrt();
    }
    let longest = w.max(h) * scale;
    if longest > 65_000.0 {
        scale *= 65_000.0 / longest;
    }
    scale
}

fn render_pdf(
    bytes: &[u8],
    ranges: Option<&str>,
    target: PageTarget,
    limits: RenderLimits,
) -> Result<RenderedPages, Unrenderable> {
    let pdf = open_pdf(bytes)?;
    let pages = pdf.pages();
    let count = pages.len() as u32;
    if count == 0 {
        return Err(Unrenderable("the PDF has no pages".into()));
    }
    let selected = select_pages(count, ranges)?;
    if selected.len() as u32 > limits.max_pages {
        return Err(Unrenderable(format!(
            "{} pages would be sent; this gateway converts at most {} pages per job (RENDER_MAX_PAGES): split the document or choose fewer pages with page_ranges",
            selected.len(),
            limits.max_pages
        )));
    }
    let cache = RenderCache::new();
    let interpreter = InterpreterSettings::default();
    let settings = RenderSettings::default();
    let mut out = RenderedPages {
        pages: Vec::with_capacity(selected.len()),
        source_pages: count,
        sizes: Vec::with_capacity(selected.len()),
    };
    for index in selected {
        let page = &pages[index as usize];
        let (w, h) = page.render_dimensions();
        let scale = scale_for(w, h, target, limits) as f32;
        let pixmap = hayro::render(
            page,
            &cache,
            &interpreter,
            &settings,
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        out.sizes
            .push((u32::from(pixmap.width()), u32::from(pixmap.height())));
        let png = pixmap.into_png().map_err(|err| {
            Unrenderable(format!("page {} could not be encoded: {err}", index + 1))
        })?;
        out.pages.push(Bytes::from(png));
    }
    Ok(out)
}

/// Images larger than this on a side are not decoded for a preview.
const PREVIEW_MAX_SOURCE_SIDE: u32 = 20_000;

fn preview(bytes: &[u8], doc_type: DocumentType, max_side: u32) -> Result<Bytes, Unrenderable> {
    let max_side = max_side.clamp(16, 2048);
    let png = match doc_type {
        DocumentType::Pdf => {
            let pdf = open_pdf(bytes)?;
            let pages = pdf.pages();
            let Some(page) = pages.first() else {
                return Err(Unrenderable("the PDF has no pages".into()));
            };
            let (w, h) = page.render_dimensions();
            let scale = (max_side as f32 / w.max(h).max(1.0)).min(4.0);
            hayro::render(
                page,
                &RenderCache::new(),
                &InterpreterSettings::default(),
                &RenderSettings::default(),
                &PixmapSettings {
                    x_scale: scale,
                    y_scale: scale,
                    bg_color: WHITE,
                },
            )
            .into_png()
            .map_err(|err| Unrenderable(format!("the preview could not be encoded: {err}")))?
        }
        DocumentType::Png | DocumentType::Jpeg | DocumentType::Bmp | DocumentType::Gif => {
            let mut reader = image::ImageReader::new(Cursor::new(bytes));
            reader.set_format(match doc_type {
                DocumentType::Png => image::ImageFormat::Png,
                DocumentType::Jpeg => image::ImageFormat::Jpeg,
                DocumentType::Bmp => image::ImageFormat::Bmp,
                _ => image::ImageFormat::Gif,
            });
            let mut limits = image::Limits::default();
            limits.max_image_width = Some(PREVIEW_MAX_SOURCE_SIDE);
            limits.max_image_height = Some(PREVIEW_MAX_SOURCE_SIDE);
            limits.max_alloc = Some(512 * 1024 * 1024);
            reader.limits(limits);
            let image = reader
                .decode()
                .map_err(|err| Unrenderable(format!("the image could not be read: {err}")))?;
            let small = image.thumbnail(max_side, max_side);
            let mut out = Vec::new();
            small
                .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .map_err(|err| Unrenderable(format!("the preview could not be encoded: {err}")))?;
            out
        }
        other => {
            return Err(Unrenderable(format!(
                "previews are made of PDF and image documents, not {}",
                other.extension()
            )));
        }
    };
    Ok(Bytes::from(png))
}

/// Whether a preview can be made of this type of document.
pub fn previewable(doc_type: DocumentType) -> bool {
    matches!(
        doc_type,
        DocumentType::Pdf
            | DocumentType::Png
            | DocumentType::Jpeg
            | DocumentType::Bmp
            | DocumentType::Gif
    )
}

/// A small valid PDF of `pages` pages, each with a filled rectangle whose size and place
/// depend on the page number, so that pages tell apart in a render. For tests, the demo
/// and the benchmark; no fonts, so any renderer draws the same pixels.
pub fn sample_pdf(pages: u32) -> Vec<u8> {
    sample_document(pages, (200, 300), false)
}

/// Like [`sample_pdf`] on A4 pages with a heading and lines of text in Helvetica (the
/// renderer's built-in standard font): what the benchmark renders.
pub fn sample_a4_pdf(pages: u32) -> Vec<u8> {
    sample_document(pages, (595, 842), true)
}

fn sample_document(pages: u32, (width, height): (u32, u32), text: bool) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    // 1: catalog, 2: pages, (3: font,) then per page: page object, content stream.
    let first = if text { 4 } else { 3 };
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..pages)
        .map(|i| format!("{} 0 R", first + 2 * i))
        .collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    ));
    if text {
        objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into());
    }
    let (w, h) = (width as i64, height as i64);
    for i in 0..pages {
        let content_id = first + 1 + 2 * i;
        let resources = if text {
            "<< /Font << /F1 3 0 R >> >>"
        } else {
            "<< >>"
        };
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Contents {content_id} 0 R /Resources {resources} >>"
        ));
        let n = i64::from(i) + 1;
        // A black frame, and a grey box whose width and height encode the page number.
        let mut stream = format!(
            "0 g 10 10 {} 4 re f 10 {} {} 4 re f 10 10 4 {} re f {} 10 4 {} re f\n0.4 g 30 {} {} {} re f\n",
            w - 20,
            h - 14,
            w - 20,
            h - 20,
            w - 14,
            h - 20,
            40 + 20 * (n % 8),
            20 + 15 * (n % 9),
            30 + 10 * (n % 11)
        );
        if text {
            stream.push_str(&format!(
                "0 g BT /F1 28 Tf 60 {} Td (Invoice page {n}) Tj ET\n",
                h - 90
            ));
            for line in 0..30 {
                stream.push_str(&format!(
                    "BT /F1 11 Tf 60 {} Td (Line {line}: 2 x Widget, 19.90 EUR, delivered to the 2nd floor printers) Tj ET\n",
                    h - 140 - line * 18
                ));
            }
        }
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}endstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RenderLimits {
        RenderLimits {
            max_pages: 10,
            max_pixels: 4_000_000,
            default_dpi: 72,
        }
    }

    #[test]
    fn page_ranges_select_existing_pages_in_order() {
        assert_eq!(select_pages(3, Some("1,3")).unwrap(), vec![0, 2]);
        assert_eq!(select_pages(3, None).unwrap(), vec![0, 1, 2]);
        assert_eq!(select_pages(3, Some("2-9")).unwrap(), vec![1, 2]);
        assert_eq!(select_pages(3, Some("1-2,2")).unwrap(), vec![0, 1]);
        assert!(select_pages(3, Some("4-5")).is_err());
    }

    #[test]
    fn renders_the_selected_pages_at_the_resolution_asked() {
        let pdf = sample_pdf(3);
        let out = render_pdf(
            &pdf,
            Some("1,3"),
            PageTarget {
                dpi: Some(144),
                paper_mm: None,
            },
            limits(),
        )
        .unwrap();
        assert_eq!(out.source_pages, 3);
        assert_eq!(out.pages.len(), 2);
        // 200 × 300 pt at 144 dpi
        assert_eq!(out.sizes, vec![(400, 600), (400, 600)]);
        assert!(out.pages.iter().all(|p| p.starts_with(b"\x89PNG")));
        assert_ne!(out.pages[0], out.pages[1], "pages 1 and 3 differ");
    }

    #[test]
    fn the_pixel_limit_lowers_the_resolution() {
        let pdf = sample_pdf(1);
        let small = RenderLimits {
            max_pixels: 60_000,
            ..limits()
        };
        let out = render_pdf(&pdf, None, PageTarget::default(), small).unwrap();
        let (w, h) = out.sizes[0];
        assert!(u64::from(w * h) <= 60_000, "{w}×{h}");
    }

    #[test]
    fn unreadable_and_oversized_documents_are_refused() {
        assert!(render_pdf(b"%PDF-1.7 garbage", None, PageTarget::default(), limits()).is_err());
        let pdf = sample_pdf(12);
        let err = render_pdf(&pdf, None, PageTarget::default(), limits()).unwrap_err();
        assert!(err.0.contains("at most 10 pages"), "{err}");
        assert!(render_pdf(&pdf, Some("1-10"), PageTarget::default(), limits()).is_ok());
    }

    #[test]
    fn the_sample_documents_are_what_the_fixture_holds() {
        // tests/fixtures/pdf-pages/three-pages.pdf was written by sample_pdf(3).
        let fixture = include_bytes!("../../tests/fixtures/pdf-pages/three-pages.pdf");
        assert_eq!(sample_pdf(3), fixture.to_vec());
        let a4 = render_pdf(&sample_a4_pdf(2), None, PageTarget::default(), limits()).unwrap();
        assert_eq!(a4.sizes, vec![(595, 842), (595, 842)]);
    }

    #[test]
    fn previews_are_small() {
        let png = preview(&sample_pdf(2), DocumentType::Pdf, 120).unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert!(image.width().max(image.height()) <= 120);
        let again = preview(&png, DocumentType::Png, 50).unwrap();
        let image = image::load_from_memory(&again).unwrap();
        assert!(image.width().max(image.height()) <= 50);
    }
}
