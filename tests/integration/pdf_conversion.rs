//! PDFs on a printer that takes images but not PDF (Zhimu): the gateway renders the pages
//! `page_ranges` selects to PNG and sends one task per page; the pixels the simulator
//! receives match reference renders by another renderer; a document that cannot be
//! rendered fails before any vendor call; previews of PDF and image jobs.

use crate::common;
use crate::pools::{create_pool, world};

use std::time::Duration;

use base64::Engine as _;
use common::assert_problem;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vendor_sim::{LedgerFilter, Vendor};

const THREE_PAGES: &[u8] = include_bytes!("../fixtures/pdf-pages/three-pages.pdf");
const PAGE_1: &[u8] = include_bytes!("../fixtures/pdf-pages/page-1.png");
const PAGE_3: &[u8] = include_bytes!("../fixtures/pdf-pages/page-3.png");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_owned()
}

/// Mean absolute difference per channel (0-255) of two RGB images of the same size, and
/// the share of pixels that differ by more than 64 in some channel.
fn difference(a: &image::RgbImage, b: &image::RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions(), "same size");
    let mut total = 0u64;
    let mut far = 0u64;
    for (p, q) in a.pixels().zip(b.pixels()) {
        let d: Vec<u64> = (0..3).map(|c| u64::from(p[c].abs_diff(q[c]))).collect();
        total += d.iter().sum::<u64>();
        if d.iter().any(|v| *v > 64) {
            far += 1;
        }
    }
    let pixels = u64::from(a.width()) * u64::from(a.height());
    (
        total as f64 / (pixels * 3) as f64,
        far as f64 / pixels as f64,
    )
}

fn decode(png: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .expect("a PNG")
        .to_rgb8()
}

#[tokio::test]
async fn a_pdf_prints_on_zhimu_as_one_png_task_per_selected_page() {
    let w = world().await;
    let job = w
        .app
        .submit(json!({
            "printer_id": "zm",
            "document": {"base64": b64(THREE_PAGES), "content_type": "application/pdf"},
            "options": {"page_ranges": "1,3"},
        }))
        .await;
    let done = w
        .app
        .drive_until(&id(&job), "completed", Duration::from_secs(20))
        .await;
    assert_eq!(done["converted_from"], "pdf");
    assert_eq!(done["page_count"], 2);
    assert_eq!(
        done["document"]["type"], "pdf",
        "the job still shows what was sent"
    );

    let mut tasks: Vec<_> = w
        .sim
        .zhimu_tasks()
        .into_iter()
        .filter(|t| t.name == id(&job))
        .collect();
    tasks.sort_by_key(|t| t.created_at);
    assert_eq!(tasks.len(), 2, "one task per selected page");
    let task_ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(done["vendor_task_id"], task_ids.join(","));
    let references = [decode(PAGE_1), decode(PAGE_3)];
    assert!(
        difference(&references[0], &references[1]).0 > 2.0,
        "the references of pages 1 and 3 tell apart"
    );
    for (task, reference) in tasks.iter().zip(&references) {
        assert_eq!(task.media_format, "PNG");
        assert_eq!(task.media_source, "BASE64");
        let content = task.content.as_deref().expect("content kept");
        let png = base64::engine::general_purpose::STANDARD
            .decode(content)
            .expect("base64");
        let page = decode(&png);
        assert_eq!(
            page.dimensions(),
            reference.dimensions(),
            "the printer's 600 dpi"
        );
        let (mean, far) = difference(&page, reference);
        assert!(
            mean < 2.0 && far < 0.01,
            "task {} differs from its reference: mean {mean:.2}, {:.2}% of pixels far off",
            task.task_id,
            far * 100.0
        );
    }
    // Page 1 is not page 3: the pages went in order.
    let first = decode(
        &base64::engine::general_purpose::STANDARD
            .decode(tasks[0].content.as_deref().unwrap_or_default())
            .expect("base64"),
    );
    assert!(difference(&first, &references[1]).0 > 2.0);

    // The preview is a small PNG of the first page.
    let preview = w
        .app
        .get(&format!("/v1/jobs/{}/preview.png?size=200", id(&job)))
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    assert_eq!(
        preview.headers()["content-type"]
            .to_str()
            .unwrap_or_default(),
        "image/png"
    );
    let small = image::load_from_memory(&preview.bytes().await.expect("body")).expect("PNG");
    assert!(small.width().max(small.height()) <= 200);
    w.app.shutdown().await;
}

#[tokio::test]
async fn capabilities_say_which_types_a_printer_takes_natively_and_by_conversion() {
    let w = world().await;
    let zhimu: Value = w
        .app
        .get("/v1/printers/zm/capabilities")
        .await
        .json()
        .await
        .expect("capabilities");
    assert_eq!(zhimu["document_types"]["by_conversion"], json!(["pdf"]));
    let native = zhimu["document_types"]["native"].as_array().expect("list");
    assert!(native.contains(&json!("png")) && !native.contains(&json!("pdf")));
    let lianke: Value = w
        .app
        .get("/v1/printers/lk/capabilities")
        .await
        .json()
        .await
        .expect("capabilities");
    assert_eq!(lianke["document_types"]["by_conversion"], json!([]));
    assert!(
        lianke["document_types"]["native"]
            .as_array()
            .expect("list")
            .contains(&json!("pdf"))
    );
    w.app.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_pdf_fails_as_unrenderable_before_any_vendor_call() {
    let w = world().await;
    let submits_before = w
        .sim
        .ledger_count(&LedgerFilter::vendor(Vendor::Zhimu).endpoint("POST", "/openapi"));
    let job = w
        .app
        .submit(json!({
            "printer_id": "zm",
            "document": {"base64": b64(b"%PDF-1.7\nthis is not a PDF at all\n%%EOF\n"), "content_type": "application/pdf"},
        }))
        .await;
    let failed = w
        .app
        .drive_until(&id(&job), "failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["error"]["code"], "document_unrenderable", "{failed}");
    assert_eq!(
        w.sim
            .ledger_count(&LedgerFilter::vendor(Vendor::Zhimu).endpoint("POST", "/openapi")),
        submits_before,
        "nothing was sent to Zhimu"
    );
    // Pages past the end select nothing: the same code.
    let job = w
        .app
        .submit(json!({
            "printer_id": "zm",
            "document": {"base64": b64(THREE_PAGES), "content_type": "application/pdf"},
            "options": {"page_ranges": "7-9"},
        }))
        .await;
    let failed = w
        .app
        .drive_until(&id(&job), "failed", Duration::from_secs(10))
        .await;
    assert_eq!(failed["error"]["code"], "document_unrenderable");
    assert_eq!(
        w.sim
            .ledger_count(&LedgerFilter::vendor(Vendor::Zhimu).endpoint("POST", "/openapi")),
        submits_before
    );
    // No preview of a corrupt PDF or of a text job.
    let corrupt = w
        .app
        .submit(json!({
            "printer_id": "lk",
            "document": {"base64": b64(b"%PDF-1.7\nbroken"), "content_type": "application/pdf"},
        }))
        .await;
    assert_problem(
        w.app
            .get(&format!("/v1/jobs/{}/preview.png", id(&corrupt)))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "document_unrenderable",
    )
    .await;
    let text = w.app.submit_text("lk", "no picture").await;
    assert_problem(
        w.app
            .get(&format!("/v1/jobs/{}/preview.png", id(&text)))
            .await,
        StatusCode::CONFLICT,
        "preview_unavailable",
    )
    .await;
    w.app.shutdown().await;
}

#[tokio::test]
async fn a_pdf_through_a_pool_is_converted_only_for_the_member_that_needs_it() {
    let w = world().await;
    create_pool(&w.app, "mixed", "first_healthy", &["lk", "zm"]).await;
    let document = json!({"base64": b64(THREE_PAGES), "content_type": "application/pdf"});
    // On Lianke, which takes PDF: sent as it is.
    let native = w
        .app
        .submit(json!({"pool_id": "mixed", "document": document}))
        .await;
    let done = w
        .app
        .drive_until(&id(&native), "completed", Duration::from_secs(10))
        .await;
    assert_eq!(done["printer_id"], "lk");
    assert!(done.get("converted_from").is_none(), "{done}");
    // Lianke's breaker open: Zhimu, three pages rendered.
    sqlx::query(
        "UPDATE printers SET breaker_failures = 1000, breaker_open_until = now() + interval '1 hour' WHERE id = 'lk'",
    )
    .execute(&w.app.pool)
    .await
    .expect("open the breaker");
    let converted = w
        .app
        .submit(json!({"pool_id": "mixed", "document": document}))
        .await;
    let done = w
        .app
        .drive_until(&id(&converted), "completed", Duration::from_secs(20))
        .await;
    assert_eq!(done["printer_id"], "zm");
    assert_eq!(done["converted_from"], "pdf");
    assert_eq!(done["page_count"], 3);
    w.app.shutdown().await;
}
