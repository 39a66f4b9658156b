// The policy playground in real headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core): a person's session with keyboard and mouse,
// screenshots under target/web-screenshots checked for content, and proof
// that the page talks to nobody but the local server.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';
import { leaks, ROOT, spApiSamples } from './support/index.mjs';

const SHOTS = join(ROOT, 'target/web-screenshots');
const VIEWPORT = { width: 1440, height: 900 };
const samples = spApiSamples();

let server;
let origin;
let browser;
let page;
const requests = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = spawn(process.execPath, [join(ROOT, 'web/playground/serve.mjs'), '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: server.stdout }).once('line', resolve);
    server.once('exit', (code) => reject(new Error(`serve.mjs exited ${code}`)));
  });
  origin = new URL(line.replace(/^playground: /, '')).origin;
  assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/);

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-gpu',
      '--no-first-run',
    ],
  });
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  context.on('request', (r) => requests.push(r.url()));
  context.on('weberror', (e) => requests.push(`error: ${e.error().message}`));
  page = await context.newPage();
  page.on('pageerror', (e) => requests.push(`pageerror: ${e.message}`));
  await page.goto(`${origin}/`);
  await page.waitForSelector('body[data-ready=true]', { timeout: 30000 });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

/** Screenshot of the page, then checked: a PNG of the viewport with real content. */
async function shot(name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path });
  const png = readFileSync(path);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.equal(png.readUInt32BE(16), VIEWPORT.width);
  assert.equal(png.readUInt32BE(20), VIEWPORT.height);
  assert.ok(statSync(path).size > 30_000, `${name}.png is suspiciously small`);
  // Decode it in a blank page: a rendered UI has many colours and no
  // colour covering (nearly) everything.
  const blank = await browser.newPage();
  const stats = await blank.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const counts = new Map();
    for (let i = 0; i < d.length; i += 4 * 7) {
      const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const top = Math.max(...counts.values());
    return { colours: counts.size, topShare: top / (d.length / (4 * 7)) };
  }, png.toString('base64'));
  await blank.close();
  assert.ok(stats.colours > 100, `${name}: only ${stats.colours} colours`);
  assert.ok(stats.topShare < 0.8, `${name}: one colour covers ${Math.round(stats.topShare * 100)}%`);
  return path;
}

const text = (sel) => page.locator(sel).innerText();
const envelopeCount = () => page.locator('#out-body mark.env').count();

test('the page loads with the shipped policy and runs the SP-API sample: envelopes are marked', async () => {
  assert.match(await text('#policy-status'), /Policy valid · 1 route/);
  assert.match(await text('#outcome'), /Forwarded · \d+ fields encrypted/);
  const buyer = samples.getOrderBuyerInfo;
  assert.equal(await page.inputValue('#path'), buyer.path);
  assert.ok((await envelopeCount()) >= 5);
  const body = await page.locator('#out-body').innerText();
  assert.deepEqual(leaks(body, buyer.pii), [], 'no PII in the rewritten body');
  assert.match(body, /"AmazonOrderId": "902-3159896-1390916"/);
  await shot('playground-request');
});

test('picking another sample runs it; the envelopes open again to the exact sample', async () => {
  await page.selectOption('#sample-pick', 'getOrder');
  await page.waitForFunction(() => document.querySelectorAll('#out-body mark.env').length >= 20);
  const sealedCount = await envelopeCount();
  const sealed = await page.locator('#out-body').innerText();
  assert.deepEqual(leaks(sealed, samples.getOrder.pii), []);
  await page.click('#open-again');
  await page.waitForSelector('#body-check.ok');
  assert.match(await text('#body-check'), /opened again · identical to the sample, byte for byte/);
  assert.equal(await envelopeCount(), 0);
  assert.equal(await page.locator('#out-body mark.opened').count(), sealedCount, 'each opened value is marked');
  assert.equal(await page.locator('#out-body mark.opened').first().innerText(), '"jq7f2k9x@marketplace.example.com"');
  assert.match(await page.locator('#out-body').innerText(), /jq7f2k9x@marketplace\.example\.com/);
  await shot('playground-opened');
});

test('the access record and the events are one keystroke away, and the record has no PII', async () => {
  await page.locator('#run').focus();
  await page.keyboard.press('Control+Enter');
  await page.keyboard.press('Alt+2');
  assert.equal(await page.getAttribute('#tab-record', 'aria-selected'), 'true');
  const record = await page.locator('#out-record-line').textContent();
  assert.match(record, /^\{"dpp_access":1,/);
  assert.match(record, /"fields_encrypted":\d+/);
  assert.deepEqual(leaks(record, samples.getOrder.pii), []);
  // With a log key, the record is sealed into the MAC chain.
  await page.click('#gen-log-key');
  await page.waitForFunction(() => document.querySelector('#out-record-line').textContent.includes('"mac":'));
  assert.match(await text('#record-note'), /sealed into the log chain/);
  await shot('playground-record');
  await page.keyboard.press('Alt+1');
  assert.equal(await page.isVisible('#pane-body'), true);
});

test('a response whose PII arrives in clear is refused, with its event; sealed first, it opens', async () => {
  await page.check('input[name=direction][value=response]');
  await page.waitForSelector('#outcome.bad');
  assert.match(await text('#outcome'), /Refused · 502 envelope_rejected/);
  assert.equal(await text('#event-count'), '1');
  await page.keyboard.press('Alt+3');
  assert.match(await text('#out-events'), /envelope_rejected[\s\S]*response: not_an_envelope/);
  await shot('playground-refused');
  await page.click('#seal-body');
  await page.waitForSelector('#outcome.ok');
  assert.match(await text('#outcome'), /Forwarded · \d+ fields decrypted/);
  assert.equal(await text('#event-count'), '0');
  await page.check('input[name=direction][value=request]');
});

test('typing an invalid policy shows the error inline, naming the field and marking its line', async () => {
  const policy = await page.inputValue('#policy');
  const broken = policy.replace('"prefix": "/orders/"', '"regex": "/orders/(["');
  assert.notEqual(broken, policy);
  await page.click('#policy');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(broken);
  await page.waitForSelector('#policy-error:not([hidden])');
  const error = await text('#policy-error');
  assert.match(error, /Invalid policy · field routes\[0\]\.match\.path\.regex/);
  assert.match(error, /dpp-guard: invalid policy: field `routes\[0\]\.match\.path\.regex`/);
  assert.match(await text('#policy-status'), /Policy invalid: routes\[0\]\.match\.path\.regex/);
  assert.match(await text('#outcome'), /Not run\s+Fix the policy/);
  assert.match(await page.locator('#policy-editor .backdrop mark').innerText(), /"regex": "\/orders\/\(\["/);
  const badLine = await page.locator('#policy-editor .gutter span.bad').innerText();
  const expected = broken.slice(0, broken.indexOf('"regex"')).split('\n').length;
  assert.equal(Number(badLine), expected);
  await shot('playground-invalid-policy');

  // An unknown field is named too (serde's deny_unknown_fields).
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(policy.replace('"no_store"', '"no_stor"'));
  await page.waitForFunction(() => document.querySelector('#policy-error').textContent.includes('routes[0].no_stor'));
  // Fixing it clears the error and runs again.
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(policy);
  await page.waitForSelector('#policy-error', { state: 'hidden' });
  assert.match(await text('#policy-status'), /Policy valid/);
});

test('the keyring is made in the page and refused keys fail closed', async () => {
  const before = await page.inputValue('#keyring');
  assert.match(before, /^k1=[A-Za-z0-9_-]{43} primary=k1$/);
  await page.click('#gen-keys');
  assert.notEqual(await page.inputValue('#keyring'), before);
  await page.fill('#keyring', '');
  await page.waitForSelector('#outcome.bad');
  assert.match(await text('#outcome'), /Refused · 500 encryption_failed/);
  assert.match(await text('#key-error'), /No keyring/);
  await page.click('#gen-keys');
  await page.waitForSelector('#outcome.ok');
});

test('the page made no request to any host but the local server', () => {
  assert.ok(requests.length >= 5, `requests seen: ${requests}`);
  const foreign = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'));
  assert.deepEqual(foreign, []);
  assert.ok(requests.some((u) => u.endsWith('/pkg/wasm/dpp_guard_web_bg.wasm')));
});
