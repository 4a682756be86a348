// Starts the demo (PostgreSQL database of its own, vendor simulator, gateway) and drives
// the operators' console in headless Chromium from the OS packages (CHROMIUM_PATH,
// default /usr/bin/chromium). Nothing is downloaded. Run through ./run (it builds first).
//
// Sign in → three demo printers healthy → a job submitted through the API reaches
// `completed` on the page without a reload → its timeline → a printer broken in the
// simulator turns red → an unconfirmed job resolved from the console (when the gateway
// has POST /v1/jobs/{id}/resolve). Screenshots: docs/console-printers.png, docs/console-timeline.png.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const LONG = 30_000;

function log(message) { console.log(`[console-tests] ${message}`); }

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/// Starts `print-gateway demo`; resolves with its URLs and key once its demo jobs are done.
async function startDemo() {
  const port = await freePort();
  const env = {
    ...process.env,
    BIND_ADDR: `127.0.0.1:${port}`,
    PRINTER_STATUS_EVERY_SECS: "1",
    METRICS_REFRESH_MS: "0",
    RUST_LOG: process.env.RUST_LOG || "warn",
    NO_COLOR: "1",
  };
  const demo = spawn(path.join(root, "target/debug/print-gateway"), ["demo"], {
    cwd: root, env, stdio: ["ignore", "pipe", "inherit"],
  });
  const found = {};
  let output = "";
  const ready = new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`the demo did not start in time:\n${output}`)), 120_000);
    demo.once("exit", (code) => reject(new Error(`the demo exited (${code}):\n${output}`)));
    demo.stdout.on("data", (chunk) => {
      output += chunk;
      for (const line of output.split("\n")) {
        const m = line.match(/^(PRINT_GATEWAY_URL|PRINT_GATEWAY_API_KEY|VENDOR_SIM_URL)=(\S+)/);
        if (m) found[m[1]] = m[2];
      }
      if (output.includes("The gateway keeps running")) { clearTimeout(deadline); resolve(); }
    });
  });
  await ready;
  assert.ok(found.PRINT_GATEWAY_URL && found.PRINT_GATEWAY_API_KEY && found.VENDOR_SIM_URL, output);
  return { demo, base: found.PRINT_GATEWAY_URL, key: found.PRINT_GATEWAY_API_KEY, sim: found.VENDOR_SIM_URL };
}

async function main() {
  const { demo, base, key, sim } = await startDemo();
  log(`demo at ${base}, simulator at ${sim}`);
  const call = async (method, url, body, withKey = true) => {
    const response = await fetch(url, {
      method,
      headers: { ...(withKey ? { Authorization: `Bearer ${key}` } : {}), "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (err) => { throw err; });

    // Sign in, with the keyboard: `/` leads to the console.
    await page.goto(base + "/");
    assert.match(page.url(), /\/console$/);
    await page.getByLabel("API key").focus();
    await page.keyboard.type(key);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Printers" }).waitFor({ timeout: LONG });
    const stored = await page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie]);
    assert.deepEqual(stored, [1, 0, ""], "the key is kept in the session only");

    // The three demo printers, healthy.
    for (const id of ["demo-lianke", "demo-zhimu", "demo-wecom"]) {
      await page.locator(`li[data-printer="${id}"][data-health="ok"]`).waitFor({ timeout: LONG });
    }
    log("three demo printers healthy");

    // A job through the API reaches `completed` on the page, without a reload.
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    await page.getByRole("heading", { name: "Jobs" }).waitFor();
    const accepted = await call("POST", `${base}/v1/jobs`, { printer_id: "demo-zhimu", document: { text: "console test" } });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const jobId = accepted.body.id;
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.locator(".badge.completed").waitFor({ timeout: LONG });
    log(`job ${jobId} completed on the page`);

    // Its timeline: every event, the vendor payloads pretty-printed.
    await row.getByRole("link", { name: jobId }).click();
    await page.locator("#timeline li.event").first().waitFor({ timeout: LONG });
    const kinds = await page.locator("#timeline li.event strong").allTextContents();
    assert.ok(kinds.includes("accepted"), `timeline: ${kinds}`);
    const payload = await page.locator("#timeline pre").first().textContent();
    assert.ok(payload.includes("\n  "), "payloads are pretty-printed");
    JSON.parse(payload);
    await page.screenshot({ path: path.join(root, "docs/console-timeline.png"), fullPage: true });

    // Break the Lianke box in the simulator: its card turns red.
    const broken = await call("POST", `${sim}/_sim/lianke/devices/demo-lk-1/online`, { online: false }, false);
    assert.equal(broken.status, 200, JSON.stringify(broken.body));
    await page.getByRole("link", { name: "Printers", exact: true }).click();
    const red = page.locator('li[data-printer="demo-lianke"][data-health="failing"]');
    await red.waitFor({ timeout: LONG });
    const colour = await red.evaluate((el) => getComputedStyle(el).borderLeftColor);
    assert.equal(colour, "rgb(207, 34, 46)", "a failing printer is red");
    await page.locator('li[data-printer="demo-zhimu"][data-health="ok"]').waitFor();
    await page.screenshot({ path: path.join(root, "docs/console-printers.png"), fullPage: true });
    log("demo-lianke turned red");
    await call("POST", `${sim}/_sim/lianke/devices/demo-lk-1/online`, { online: true }, false);

    // An unconfirmed job: the simulator swallows one Zhimu submit (no answer, nothing done).
    const spec = await call("GET", `${base}/openapi.json`, undefined, false);
    const canResolve = Boolean(spec.body.paths["/v1/jobs/{id}/resolve"]);
    const fault = await call("POST", `${sim}/_sim/faults`, {
      vendor: "zhimu", endpoint: "/openapi", device: "pkDgrqeA", action: { kind: "hang" }, times: 1,
    }, false);
    assert.ok(fault.status < 300, JSON.stringify(fault.body));
    const lost = await call("POST", `${base}/v1/jobs`, { printer_id: "demo-zhimu", document: { text: "lost answer" } });
    assert.equal(lost.status, 202);
    await page.getByRole("link", { name: /Unconfirmed/ }).click();
    const card = page.locator(`li[data-job="${lost.body.id}"]`);
    await card.waitFor({ timeout: LONG });
    log(`job ${lost.body.id} is in the unconfirmed queue`);
    if (canResolve) {
      await card.getByLabel("Note").fill("seen in the tray");
      await card.getByRole("button", { name: "It printed" }).click();
      await card.waitFor({ state: "detached", timeout: LONG });
      const resolved = await call("GET", `${base}/v1/jobs/${lost.body.id}`);
      assert.notEqual(resolved.body.state, "unconfirmed");
      log(`resolved from the console: ${resolved.body.state}`);
    } else {
      log("this gateway has no POST /v1/jobs/{id}/resolve yet: the resolve step is skipped");
    }

    // Usable on a phone: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    for (const view of ["Printers", "Jobs"]) {
      await page.getByRole("link", { name: view, exact: true }).click();
      await page.getByRole("heading", { name: view }).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${view} is ${overflow}px wider than a phone screen`);
    }
    log("all console checks passed");
  } finally {
    await browser.close();
    demo.kill("SIGTERM");
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
