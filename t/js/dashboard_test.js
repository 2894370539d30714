// dashboard_test.js - t/dashboard.sh's browser: Debian's chromium, headless,
// driven by playwright-core through sagad's dashboard (GET /) against a
// real sagad: the page loads with no request but to sagad, a saga started
// now appears running without a reload, the FAILED filter shows only
// FAILED sagas, one opens on its timeline, Retry (once the participant is
// healed) turns it COMPENSATED. Screenshots go to SHOTS.
//
// usage: node dashboard_test.js URL SAGACTL GRPC_ADDR HEAL_FILE SHOTS
//        node dashboard_test.js --auth URL READ_TOKEN OPERATE_TOKEN SAGA SHOTS
//
// --auth, against a sagad with auth.tokens_file: the page asks for a token
// when the API answers 401, a read token lists sagas but the operator's
// buttons of a FAILED saga are disabled (the API answers 403), an operate
// token enables them.
"use strict";
const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");

const [url, sagactl, grpc, healFile, shots] = process.argv.slice(2);
let step = "start";
const ok = (what) => console.log("ok - " + what);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 }, deviceScaleFactor: 1 });
  const foreign = [];
  const origin = new URL(url).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin)) foreign.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  step = "load";
  await page.goto(url);
  await page.waitForSelector('tr.saga[data-id="d-ok-1"]', { timeout: 10000 });
  await page.waitForSelector('#flows tr[data-flow="Trip"]', { timeout: 10000 });
  ok("the page loads and lists the sagas and the flows");

  step = "live";
  const child = spawn(sagactl, ["-s", grpc, "run", "TripSlow", "--id", "d-live"], { stdio: "ignore" });
  await page.waitForSelector('tr.saga[data-id="d-live"][data-state="RUNNING"]', { timeout: 10000 });
  ok("a saga started after the page loaded appears RUNNING without a reload");
  await page.screenshot({ path: path.join(shots, "dashboard-live.png") });
  await page.click('tr.saga[data-id="d-live"]');
  await page.waitForSelector('#d-state.s-RUNNING', { timeout: 5000 });
  await page.waitForSelector('#d-state.s-COMPLETED', { timeout: 15000 });
  ok("its panel follows it live until COMPLETED");
  await new Promise((res) => child.on("exit", res).exitCode !== null ? res() : null);
  await page.click("#close");

  step = "filter";
  await page.click('#states [data-state="FAILED"]');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("tr.saga")];
    return rows.length > 0 && rows.every((r) => r.dataset.state === "FAILED");
  }, null, { timeout: 10000 });
  const n = await page.$$eval("tr.saga", (rows) => rows.length);
  ok("the FAILED filter shows only FAILED sagas (" + n + ")");

  step = "open";
  await page.click('tr.saga[data-id="d-failed"]');
  await page.waitForSelector("#d-state.s-FAILED", { timeout: 5000 });
  await page.waitForFunction(() => document.querySelectorAll("#d-steps .row").length === 2 &&
    document.querySelectorAll("#d-events tr").length >= 4, null, { timeout: 5000 });
  const stepsText = await page.textContent("#d-steps");
  if (!/stock service down/.test(stepsText)) throw new Error("the timeline shows no error: " + stepsText);
  if (await page.isDisabled("#btn-retry")) throw new Error("Retry is disabled on a FAILED saga");
  if (!(await page.isDisabled("#btn-cancel"))) throw new Error("Cancel is enabled on a FAILED saga");
  ok("a FAILED saga opens on its timeline: steps, events, the error; Retry offered, Cancel not");
  await page.screenshot({ path: path.join(shots, "dashboard-failed.png") });

  step = "retry";
  fs.writeFileSync(healFile, "healed\n");
  await page.click("#btn-retry");
  await page.waitForSelector("#d-state.s-COMPENSATED", { timeout: 15000 });
  await page.waitForFunction(() => /COMPENSATED/.test(document.querySelector("#ops-msg").textContent) ||
    document.querySelector("#d-state").textContent === "COMPENSATED", null, { timeout: 5000 });
  ok("Retry: the saga changes to COMPENSATED on the page");
  await page.click('#states [data-state="ALL"]');
  await page.waitForSelector('tr.saga[data-id="d-failed"][data-state="COMPENSATED"]', { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "dashboard-retried.png") });

  if (foreign.length) throw new Error("requests outside sagad: " + foreign.join(", "));
  ok("no request left sagad (no external asset)");
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  await browser.close();
}

async function auth() {
  const [url, readTok, opTok, saga, shots2] = process.argv.slice(3);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  step = "401";
  await page.goto(url);
  await page.waitForSelector("#token-dlg[open]", { timeout: 10000 });
  ok("without a token the API answers 401 and the page asks for one");
  step = "read token";
  await page.fill("#token-in", readTok);
  await page.click('#token-dlg button[value="ok"]');
  await page.waitForSelector(`tr.saga[data-id="${saga}"]`, { timeout: 10000 });
  await page.click(`tr.saga[data-id="${saga}"]`);
  await page.waitForSelector("#d-state.s-FAILED", { timeout: 5000 });
  await page.waitForFunction(() => document.querySelector("#btn-retry").disabled &&
    /403/.test(document.querySelector("#ops-msg").textContent), null, { timeout: 5000 });
  ok("a read token lists sagas; on a FAILED saga Retry and Resolve are disabled, the 403 said");
  await page.screenshot({ path: path.join(shots2, "dashboard-read-only.png") });
  step = "operate token";
  await page.click("#token-btn");
  await page.fill("#token-in", opTok);
  await page.click('#token-dlg button[value="ok"]');
  await page.waitForFunction(() => !document.querySelector("#btn-retry").disabled &&
    !document.querySelector("#btn-resolve").disabled, null, { timeout: 5000 });
  ok("an operate token enables them");
  await browser.close();
}

(process.argv[2] === "--auth" ? auth() : main()).catch((e) => { console.error("FAIL (" + step + "): " + (e && e.stack || e)); process.exit(1); });
