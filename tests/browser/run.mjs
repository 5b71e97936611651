// Drives Switchboard's web client in headless Chromium (Debian's /usr/bin/chromium, never a
// downloaded browser) through every scenario of the web-client issue, using only the page's own
// buttons and fields. Started by tests/browser.rs inside a loopback-only network namespace, with
// the broker already listening at SWITCHBOARD_URL. Exits non-zero on the first failed check.
// SCENARIOS picks the run: `calls` (sign-up to delete, every kind of call) or `app` (the
// installable app: service worker, push notifications, a call accepted from one, offline).
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createDecipheriv, createECDH, hkdfSync, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE = required('SWITCHBOARD_URL');
const SHOTS = required('SCREENSHOT_DIR');
const RING_TIMEOUT_MS = Number(process.env.RING_TIMEOUT_MS ?? 6000);
const TOTAL_TIMEOUT_MS = Number(process.env.TOTAL_TIMEOUT_MS ?? 240_000);
const STEP_TIMEOUT_MS = 20_000;
const PASSWORD = 'correct horse battery';
const SCENARIOS = process.env.SCENARIOS ?? 'calls';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set; run this through \`cargo test --test browser\``);
    process.exit(2);
  }
  return value;
}

const started = Date.now();
const log = (message) => console.log(`[browser ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
const asserted = [];
function pass(scenario) {
  asserted.push(scenario);
  log(`PASS ${scenario}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const watchdog = setTimeout(() => {
  console.error(`browser scenarios took longer than ${TOTAL_TIMEOUT_MS} ms`);
  process.exit(3);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

async function waitForBroker() {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await fetch(`${BASE}/healthz`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`the broker did not answer at ${BASE}/healthz`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The page and its files are served with the right types and revalidating cache headers. */
async function checkServedFiles() {
  const expectations = [
    ['/', 'text/html'],
    ['/web/app.js', 'text/javascript'],
    ['/web/realtime.js', 'text/javascript'],
    ['/web/style.css', 'text/css'],
    ['/web/favicon.svg', 'image/svg+xml'],
    ['/web/manifest.webmanifest', 'application/manifest+json'],
    ['/web/icon-192.png', 'image/png'],
    ['/web/icon-maskable-512.png', 'image/png'],
    ['/sw.js', 'text/javascript'],
  ];
  for (const [path, type] of expectations) {
    const response = await fetch(`${BASE}${path}`);
    check(response.status === 200, `${path} answers 200 (got ${response.status})`);
    check(response.headers.get('content-type')?.startsWith(type), `${path} is ${type} (got ${response.headers.get('content-type')})`);
    check(response.headers.get('cache-control') === 'no-cache', `${path} says cache-control: no-cache`);
    const etag = response.headers.get('etag');
    check(etag, `${path} has an ETag`);
    const again = await fetch(`${BASE}${path}`, { headers: { 'if-none-match': etag } });
    check(again.status === 304, `${path} with its ETag answers 304 (got ${again.status})`);
  }
  const index = await fetch(`${BASE}/`);
  check(index.headers.get('content-security-policy')?.includes("script-src 'self'"), 'the page has a CSP');
  const missing = await fetch(`${BASE}/web/nope.js`);
  check(missing.status === 404, 'unknown files are 404');
  pass('the page and its files are served with content types, ETags and no-cache');
}

// ------------------------------------------------------------------ page helpers

const pageErrors = [];
/** Every WebSocket frame each page sent, to show what never goes through the broker. */
const wsSent = [];

/**
 * Drops a share of the UDP packets on the namespace's loopback (WebRTC media; the broker's
 * TCP is untouched), or stops dropping them (percent 0). netem first; kernels without it
 * get an nftables rule that does the same with a random number per packet.
 */
function injectLoss(percent) {
  const run = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' });
  if (percent === 0) {
    run('tc', ['qdisc', 'del', 'dev', 'lo', 'root']);
    run('nft', ['delete', 'table', 'inet', 'sbloss']);
    return 'none';
  }
  const netem = run('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'loss', `${percent}%`]);
  if (netem.status === 0) return 'netem';
  log(`tc netem is not available here (${(netem.stderr || netem.error?.message || '').trim()}); dropping packets with nftables`);
  const script = `add table inet sbloss
add chain inet sbloss input { type filter hook input priority 0; }
add rule inet sbloss input meta l4proto udp ${percent >= 100 ? '' : `numgen random mod 100 lt ${percent} `}drop
`;
  const nft = spawnSync('nft', ['-f', '-'], { input: script, encoding: 'utf8' });
  check(nft.status === 0, `packet loss can be injected with netem or nftables (nft: ${(nft.stderr || nft.error?.message || '').trim()})`);
  return 'nftables';
}

/** `older`: the page behaves like one from before the data channel (it never creates one).
 * `path`: where it opens (the page itself by default). */
async function openPage(context, name, { older = false, path = '/' } = {}) {
  const page = await context.newPage();
  if (older) {
    await page.addInitScript(() => {
      RTCPeerConnection.prototype.createDataChannel = function createNoChannel() {
        return { readyState: 'connecting', send() {}, close() {} };
      };
    });
  }
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  page.on('websocket', (ws) => ws.on('framesent', (frame) => wsSent.push(`${name}: ${frame.payload}`)));
  page.on('dialog', (dialog) => dialog.accept());
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) log(`${name} console: ${message.text()}`);
  });
  await page.goto(`${BASE}${path}`);
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
  log(`screenshot ${name}.png`);
}

/** Waits until `fn(arg)` in the page returns something truthy. */
async function until(page, fn, arg, what) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 100 });
  } catch (error) {
    throw new Error(`timed out waiting for ${what}: ${error.message.split('\n')[0]}`);
  }
}

/** Like until(), for predicates that need to await (getStats): polls page.evaluate. */
async function untilAsync(page, fn, arg, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let last;
  for (;;) {
    last = await page.evaluate(fn, arg);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function visible(page, selector, options = {}) {
  const locator = page.locator(selector, options).first();
  await locator.waitFor({ state: 'visible' });
  return locator;
}

async function hidden(page, selector) {
  await page.locator(selector).first().waitFor({ state: 'hidden' });
}

async function textOf(page, selector) {
  return (await page.locator(selector).first().textContent())?.trim() ?? '';
}

async function online(page) {
  await until(page, () => window.switchboard?.connection === 'online', null, 'the WebSocket to be online');
}

/** How a call's end is told: on the ended call screen when it was showing, else as a toast
 * (never both). Returns the text. */
async function toast(page, reason, text) {
  const selector = `#toasts .toast[data-reason="${reason}"], #call-screen[data-phase="ended"][data-reason="${reason}"]`;
  const locator = await visible(page, selector, text ? { hasText: text } : {});
  return (await locator.locator('.toast-text, #call-status').first().textContent()).trim();
}

const AXE_SOURCE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
const axeScanned = [];

/** An axe-core scan of what the page shows now: no serious or critical violations. */
async function axeScan(page, screen) {
  // Evaluated through the DevTools protocol, so the page's CSP (no inline script) allows it.
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(' | ')}`);
  });
  check(violations.length === 0, `axe finds no serious or critical violations on ${screen}:\n  ${violations.join('\n  ')}`);
  axeScanned.push(screen);
}

async function clearToasts(page) {
  await page.evaluate(() => document.querySelectorAll('#toasts .toast').forEach((t) => t.remove()));
}

/** Opens a section through its tab, as a person would (a no-op for Friends on wide screens). */
async function openTab(page, tab) {
  const button = page.locator(`#tab-${tab}`);
  if (await button.isVisible()) await button.click();
}

async function register(page, username, displayName) {
  await page.click('#auth-tab-register');
  await page.fill('#auth-username', username);
  await page.fill('#auth-display-name', displayName);
  await page.fill('#auth-password', PASSWORD);
  await page.click('#auth-submit');
  await visible(page, '#home-screen');
  await online(page);
}

/** Video frames decoded from the peer, from RTCPeerConnection stats. */
async function framesDecoded(page) {
  return page.evaluate(async () => {
    const pc = window.switchboard?.pc;
    if (!pc) return 0;
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames = Math.max(frames, s.framesDecoded ?? 0);
    });
    return frames;
  });
}

/** Waits until `page` has decoded more than five video frames beyond what it had now. */
async function keepsDecoding(page, what) {
  const before = await framesDecoded(page);
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while ((await framesDecoded(page)) <= before + 5) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function remoteVideoPlays(page, who) {
  await untilAsync(
    page,
    async () => {
      const pc = window.switchboard?.pc;
      if (!pc) return false;
      let frames = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = Math.max(frames, s.framesDecoded ?? 0);
      });
      const video = document.querySelector('#remote-video');
      return frames > 0 && video.readyState >= 2 && video.videoWidth > 0 && !video.paused && getComputedStyle(video).display !== 'none';
    },
    null,
    `${who}'s remote video to play (inbound-rtp framesDecoded > 0)`,
  );
  return framesDecoded(page);
}

async function callPhase(page, phase, who) {
  await until(page, (p) => document.querySelector('#call-screen').dataset.phase === p && !document.querySelector('#call-screen').hidden, phase, `${who}'s call screen to be ${phase}`);
}

/** Presses Tab (at most `max` times) until the focus is on `selector`, as a keyboard user would. */
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i += 1) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}

async function ringtone(page) {
  return page.evaluate(() => window.switchboard.ringtone.kind);
}

async function endedScreenGone(page) {
  await hidden(page, '#call-screen');
}

// ------------------------------------------------------------------ the scenarios

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Three fake cameras for the device picker (the second is a Y16 depth camera that sends no
  // video; the third is MJPEG); getDisplayMedia gets a fake screen too.
  '--use-fake-device-for-media-stream=device-count=3',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  await waitForBroker();
  await checkServedFiles();

  let browser;
  let run;
  if (SCENARIOS === 'app') {
    // A profile of its own rather than an incognito context: Chromium installs no app from an
    // incognito window. The engagement checks would otherwise hold back beforeinstallprompt.
    const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'sb-profile-')), {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: [...CHROMIUM_ARGS, '--bypass-app-banner-engagement-checks'],
      viewport: { width: 1280, height: 800 },
    });
    browser = context.browser();
    run = () => appScenarios(context);
  } else {
    // Playwright passes --headless and a fresh --user-data-dir itself.
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
    run = () => scenarios(browser);
  }
  try {
    await run();
  } catch (error) {
    // What each page showed when it failed, beside the other screenshots.
    let n = 0;
    for (const context of browser.contexts()) {
      for (const page of context.pages()) {
        n += 1;
        await page.screenshot({ path: join(SHOTS, `failure-${n}.png`) }).catch(() => {});
        const state = await page.evaluate(() => JSON.stringify({ call: window.switchboard?.call, title: document.title })).catch(() => '?');
        log(`failure-${n}.png: ${page.url()} ${state}`);
      }
    }
    throw error;
  } finally {
    await browser.close();
  }
  check(pageErrors.length === 0, `no uncaught errors in the pages:\n${pageErrors.join('\n')}`);
  log(`all ${asserted.length} checks passed`);
}

async function scenarios(browser) {
  const permissions = ['camera', 'microphone'];
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions });
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
    permissions,
  });

  // ---- Registration and sign-in, with errors next to the fields.
  const alice = await openPage(desktop, 'alice');
  await visible(alice, '#auth-screen');
  await shot(alice, 'sign-in-desktop');
  const signedOutRequests = [];
  const onRequest = (request) => request.url().includes('/api/v1/') && signedOutRequests.push(request.url());
  alice.on('request', onRequest);
  await alice.setViewportSize({ width: 800, height: 800 });
  await alice.waitForTimeout(200);
  await alice.setViewportSize({ width: 1280, height: 800 });
  await alice.waitForTimeout(300);
  alice.off('request', onRequest);
  check(signedOutRequests.length === 0, `resizing the sign-in screen across 900 px asks the API nothing (got ${signedOutRequests.join(', ')})`);
  pass('the sign-in screen makes no API requests when resized');
  await axeScan(alice, 'sign-in (desktop)');
  await alice.click('#auth-tab-register');
  await alice.fill('#auth-username', 'A!');
  await alice.fill('#auth-password', PASSWORD);
  await alice.click('#auth-submit');
  check((await textOf(alice, '#auth-username-error')).includes('3–32 characters'), 'a bad username is explained under the username field');
  check((await alice.getAttribute('#auth-username', 'aria-invalid')) === 'true', 'the username field is marked invalid');
  await alice.fill('#auth-username', 'alice');
  await alice.fill('#auth-password', 'short');
  await alice.click('#auth-submit');
  check((await textOf(alice, '#auth-password-error')).includes('at least 8'), 'a short password is explained under the password field');
  check((await textOf(alice, '#auth-username-error')) === '', 'the username error is gone once fixed');
  await alice.fill('#auth-display-name', 'Alice Liddell');
  await alice.fill('#auth-password', PASSWORD);
  await alice.click('#auth-submit');
  await visible(alice, '#home-screen');
  await online(alice);
  check((await textOf(alice, '#me-name')) === 'Alice Liddell', 'the header shows who is signed in');
  // A first-time user lands on the "find friends" prompt, which leads to the search.
  await visible(alice, '#friends-empty #find-friends');
  await alice.click('#find-friends');
  await until(alice, () => document.querySelector('#panel-search').classList.contains('active')
    && document.activeElement?.id === 'search-input', null, 'the search, focused, from "Find friends"');

  const bob = await openPage(phone, 'bob');
  await visible(bob, '#auth-screen');
  await bob.click('#auth-tab-register');
  await bob.fill('#auth-username', 'alice');
  await bob.fill('#auth-password', PASSWORD);
  await bob.click('#auth-submit');
  await until(bob, () => document.querySelector('#auth-username-error').textContent.includes('taken'), null, 'the username-taken error');
  await shot(bob, 'sign-up-error-phone');
  await axeScan(bob, 'create account with an error (phone)');
  await bob.fill('#auth-username', 'bob');
  await bob.fill('#auth-display-name', 'Bob Builder');
  await bob.click('#auth-submit');
  await visible(bob, '#home-screen');
  await online(bob);
  pass('register shows client and server errors next to their fields, then signs in; the first screen says how to find friends');

  await alice.click('#logout');
  await visible(alice, '#auth-screen');
  check((await alice.evaluate(() => localStorage.getItem('switchboard.session'))) === null, 'logout forgets the token');
  await alice.fill('#auth-username', 'alice');
  await alice.fill('#auth-password', 'wrong password');
  await alice.click('#auth-submit');
  await until(alice, () => document.querySelector('#auth-password-error').textContent.includes('Wrong username or password'), null, 'the wrong-password error');
  await alice.fill('#auth-password', PASSWORD);
  await alice.click('#auth-submit');
  await visible(alice, '#home-screen');
  await online(alice);
  const stored = await alice.evaluate(() => JSON.parse(localStorage.getItem('switchboard.session')));
  check(stored?.token && !alice.url().includes(stored.token), 'the token is in localStorage, never in the URL');
  pass('log out, a wrong password shown next to the field, log in again');

  // ---- Friends: search, request, accept, live presence.
  await openTab(alice, 'search');
  await alice.fill('#search-input', 'bo');
  await (await visible(alice, '#search-results [data-user="bob"] .add-friend')).click();
  await visible(alice, '#search-results [data-user="bob"] .pill', { hasText: 'Request sent' });
  await openTab(alice, 'requests');
  await visible(alice, '#outgoing-requests [data-user="bob"]');
  await until(bob, () => document.querySelector('#requests-badge').textContent === '1' && !document.querySelector('#requests-badge').hidden, null, "Bob's live friend-request badge");
  await openTab(bob, 'requests');
  await shot(bob, 'friend-request-phone');
  await (await visible(bob, '#incoming-requests [data-user="alice"] .accept-request')).click();
  await openTab(bob, 'friends');
  await visible(bob, '#friend-list [data-user="alice"][data-status="online"] .dot[data-status="online"]');
  await visible(alice, '#friend-list [data-user="bob"][data-status="online"] .dot[data-status="online"]');
  await until(alice, () => document.querySelectorAll('#outgoing-requests li').length === 0, null, "Alice's sent request to disappear once accepted");
  pass('search, add friend, incoming/outgoing requests, accept; both see each other online');

  // ---- Sections from the keyboard: a roving tabindex, arrows, Home and End.
  const focusedTab = (page) => page.evaluate(() => document.activeElement?.dataset.tab ?? null);
  const selectedTab = (page) => page.evaluate(() => document.querySelector('.tab[aria-selected="true"]')?.dataset.tab);
  await bob.focus('.tab[aria-selected="true"]');
  await bob.keyboard.press('Home');
  check((await focusedTab(bob)) === 'friends' && (await selectedTab(bob)) === 'friends', 'Home goes to the first section');
  await bob.keyboard.press('ArrowRight');
  check((await focusedTab(bob)) === 'requests' && (await selectedTab(bob)) === 'requests', 'ArrowRight goes to the next section');
  await visible(bob, '#panel-requests');
  await bob.keyboard.press('End');
  check((await focusedTab(bob)) === 'history' && (await selectedTab(bob)) === 'history', 'End goes to the last section');
  await bob.keyboard.press('ArrowRight');
  check((await focusedTab(bob)) === 'friends', 'ArrowRight wraps round');
  await bob.keyboard.press('ArrowLeft');
  check((await focusedTab(bob)) === 'history', 'ArrowLeft wraps back');
  check(
    await bob.evaluate(() => [...document.querySelectorAll('.tab')].filter((t) => t.tabIndex === 0).map((t) => t.dataset.tab).join() === 'history'),
    'only the selected section is in the tab order',
  );
  await bob.keyboard.press('Shift+Tab');
  await bob.keyboard.press('Tab');
  check((await focusedTab(bob)) === 'history', 'Tab comes back to the selected section');
  await alice.focus('.tab[aria-selected="true"]');
  await alice.keyboard.press('Home');
  check((await focusedTab(alice)) === 'requests', 'on a wide screen Home skips the Friends tab (the list is always shown)');
  await alice.keyboard.press('End');
  check((await selectedTab(alice)) === 'history', 'End goes back to History');
  await openTab(bob, 'friends');
  pass('keyboard: arrows, Home and End move between sections with a roving tabindex');
  for (const section of ['friends', 'requests', 'search', 'history']) {
    await openTab(bob, section);
    await axeScan(bob, `${section} (phone)`);
  }
  await openTab(bob, 'friends');
  await axeScan(alice, 'home with friends and history (desktop)');

  // ---- The device picker with a preview, before any call.
  await bob.click('#devices-open');
  await visible(bob, '#devices-dialog');
  await untilAsync(bob, () => { const v = document.querySelector('#device-preview'); return v.readyState >= 2 && v.videoWidth > 0; }, null, "Bob's camera preview");
  const cameras = await bob.locator('#device-camera option').allTextContents();
  const mics = await bob.locator('#device-mic option').allTextContents();
  check(['fake_device_0', 'fake_device_1', 'fake_device_2'].every((c) => cameras.includes(c)), `the picker lists the fake cameras (${cameras})`);
  check(mics.length >= 1, `the picker lists microphones (${mics})`);
  await shot(bob, 'device-picker-phone');
  await axeScan(bob, 'device picker (phone)');
  await bob.keyboard.press('Escape');
  await hidden(bob, '#devices-dialog');
  await until(bob, () => document.querySelector('#device-preview').srcObject === null, null, 'closing the picker to stop the preview');
  pass('the device picker lists the fake cameras and microphones with a live preview');

  // ---- Own status, live on the friend's page; dnd makes a call "busy".
  await bob.fill('#status-message', 'In a meeting');
  await bob.selectOption('#status-select', 'dnd');
  await visible(alice, '#friend-list [data-user="bob"][data-status="dnd"]', { hasText: 'In a meeting' });
  await alice.click('#friend-list [data-user="bob"] .call-video');
  const dnd = await toast(alice, 'dnd');
  check(dnd === 'Bob Builder is on do not disturb. They will see a missed call.', `the caller is told the callee is on do not disturb (got "${dnd}")`);
  await bob.fill('#status-message', '');
  await bob.selectOption('#status-select', 'online');
  await visible(alice, '#friend-list [data-user="bob"][data-status="online"]');
  await until(bob, () => document.querySelector('#missed-badge').textContent === '1' && !document.querySelector('#missed-badge').hidden, null, "Bob's missed badge after the busy call");
  pass('own status (dnd + message) shows live on the friend; calling them says do not disturb; a missed badge');
  await endedScreenGone(alice);
  await clearToasts(alice);
  await clearToasts(bob);
  await shot(alice, 'home-desktop');
  await shot(bob, 'friends-phone');

  // ---- A video call, placed and answered from the keyboard: remote video plays on both pages.
  await alice.focus('#logout');
  await tabTo(alice, '#friend-list [data-user="bob"] .call-video');
  await alice.keyboard.press('Enter');
  await callPhase(alice, 'ringing', 'Alice');
  check((await alice.evaluate(() => document.activeElement?.id)) === 'call-hangup', 'the call screen takes the focus (on cancel)');
  check((await textOf(alice, '#call-status')) === 'Ringing…', 'the caller sees Ringing…');
  await visible(bob, '#incoming');
  check((await textOf(bob, '#incoming-name')) === 'Alice Liddell', "the alert shows the caller's name");
  check((await textOf(bob, '#incoming-kind')) === 'Incoming video call', 'the alert says video call');
  check((await ringtone(bob)) === 'incoming', 'the callee hears the ringtone');
  check((await ringtone(alice)) === 'ringback', 'the caller hears ringback');
  log(`Bob's AudioContext is ${await bob.evaluate(() => window.switchboard.ringtone.context)}`);
  // The ringing screens are photographed and scanned on the call left to ring out, below: this
  // one must be answered within the ring timeout.
  check((await bob.evaluate(() => document.activeElement?.id)) === 'incoming-accept', 'the incoming-call alert takes the focus');
  for (let i = 0; i < 3; i += 1) await bob.keyboard.press('Tab');
  check(
    await bob.evaluate(() => document.querySelector('#incoming').contains(document.activeElement)),
    'Tab stays inside the incoming-call alert',
  );
  await tabTo(bob, '#incoming-accept', 4);
  await bob.keyboard.press('Enter');
  await callPhase(bob, 'active', 'Bob');
  await callPhase(alice, 'active', 'Alice');
  check((await ringtone(bob)) === null && (await ringtone(alice)) === null, 'tones stop once answered');
  const aliceFrames = await remoteVideoPlays(alice, 'Alice');
  const bobFrames = await remoteVideoPlays(bob, 'Bob');
  log(`framesDecoded: Alice ${aliceFrames}, Bob ${bobFrames}`);
  pass('video call accepted; remote video plays on both pages (inbound-rtp framesDecoded > 0)');
  await until(
    alice,
    () => {
      const [minutes, seconds] = document.querySelector('#call-timer').textContent.split(':').map(Number);
      return minutes * 60 + seconds >= 2;
    },
    null,
    'the call timer to run',
  );

  await bob.click('#call-mute');
  check((await bob.getAttribute('#call-mute', 'aria-pressed')) === 'true', 'mute is pressed');
  check(
    await bob.evaluate(() => window.switchboard.pc.getSenders().filter((s) => s.track?.kind === 'audio').every((s) => !s.track.enabled)),
    'mute disables the microphone track',
  );
  await visible(alice, '#peer-muted');
  await alice.click('#call-camera');
  check(
    await alice.evaluate(() => window.switchboard.pc.getSenders().filter((s) => s.track?.kind === 'video').every((s) => !s.track.enabled)),
    'camera off disables the camera track',
  );
  await visible(bob, '#peer-camera-off');
  await until(bob, () => document.querySelector('#call-screen').dataset.remoteVideo === 'false', null, "Bob's screen to drop Alice's black video");
  await visible(bob, '#call-avatar .avatar');
  check((await bob.locator('#remote-video').isVisible()) === false, 'the black video is hidden while the camera is off');
  await shot(bob, 'peer-camera-off-phone');
  await axeScan(bob, 'in call, peer camera off (phone)');
  await shot(alice, 'peer-muted-desktop');
  await alice.click('#call-camera');
  await bob.click('#call-mute');
  check((await bob.getAttribute('#call-mute', 'aria-pressed')) === 'false', 'unmute');
  await hidden(alice, '#peer-muted');
  await hidden(bob, '#peer-camera-off');
  await until(bob, () => document.querySelector('#call-screen').dataset.remoteVideo === 'true', null, "Alice's video back on Bob's screen");
  await clearToasts(alice);
  await clearToasts(bob);
  await shot(alice, 'in-call-desktop');
  await shot(bob, 'in-call-phone');
  pass('mute, camera off and the call timer; the other side shows "Muted", and "Camera off" with the avatar');

  // ---- Chat over the data channel, both ways, never through the broker.
  await alice.click('#call-chat');
  await until(alice, () => !document.querySelector('#chat-input').disabled, null, "Alice's chat input to open");
  await alice.fill('#chat-input', 'Can you see my screen soon?');
  await alice.press('#chat-input', 'Enter');
  await visible(alice, '#chat-log .chat-message.me', { hasText: 'Can you see my screen soon?' });
  await until(bob, () => document.querySelector('#chat-badge').textContent === '1' && !document.querySelector('#chat-badge').hidden, null, "Bob's unread chat badge");
  await bob.click('#call-chat');
  await visible(bob, '#chat-log .chat-message.peer', { hasText: 'Can you see my screen soon?' });
  await hidden(bob, '#chat-badge');
  await bob.fill('#chat-input', 'Yes, go ahead');
  await bob.click('#chat-send');
  await visible(alice, '#chat-log .chat-message.peer', { hasText: 'Yes, go ahead' });
  check(!wsSent.some((f) => f.includes('Can you see my screen') || f.includes('Yes, go ahead')), 'chat messages never went through the broker');
  await shot(alice, 'in-call-chat-desktop');
  await axeScan(alice, 'in call with chat (desktop)');
  await axeScan(bob, 'in call with chat (phone)');
  await bob.click('#chat-close');
  await alice.click('#call-chat');
  pass('in-call chat arrives both ways over the data channel, with an unread badge');

  // ---- Connection quality: good on loopback.
  await until(alice, () => document.querySelector('#call-quality').dataset.quality === 'good' && !document.querySelector('#call-quality').hidden, null, "Alice's quality indicator to say good");
  await until(bob, () => document.querySelector('#call-quality').dataset.quality === 'good', null, "Bob's quality indicator to say good");
  pass('the connection-quality indicator says good on loopback');

  // ---- Screen sharing replaces the camera picture on the other side.
  const videoLabel = (page) => page.evaluate(() => window.switchboard.pc.getSenders().find((s) => s.track?.kind === 'video')?.track.label ?? null);
  const remoteSize = (page) => page.evaluate(() => `${document.querySelector('#remote-video').videoWidth}x${document.querySelector('#remote-video').videoHeight}`);
  const cameraLabel = await videoLabel(alice);
  const sizeBefore = await remoteSize(bob);
  await alice.click('#call-share');
  await until(alice, () => window.switchboard.pc.getSenders().some((s) => s.track?.label.startsWith('screen')), null, "Alice's screen on her video sender");
  check((await alice.getAttribute('#call-share', 'aria-pressed')) === 'true', 'the share button is pressed');
  await visible(bob, '#peer-sharing');
  await keepsDecoding(bob, 'Bob to keep decoding frames while Alice shares');
  const sharedLabel = await videoLabel(alice);
  log(`screen share: Alice sends "${cameraLabel}" then "${sharedLabel}"; Bob sees ${sizeBefore} then ${await remoteSize(bob)}`);
  check(sharedLabel !== cameraLabel, 'the video track changed from the camera to the screen');
  await shot(bob, 'screen-share-phone');
  await alice.click('#call-share');
  await until(alice, (label) => window.switchboard.pc.getSenders().some((s) => s.track?.label === label), cameraLabel, "Alice's camera back on her video sender");
  await hidden(bob, '#peer-sharing');
  pass('screen sharing replaces the picture on the other side (framesDecoded rises, the track changes) and stops');

  // ---- Switching camera during the call keeps it going.
  await alice.click('#call-devices');
  await visible(alice, '#devices-dialog');
  const otherCamera = cameraLabel === 'fake_device_2' ? 'fake_device_0' : 'fake_device_2';
  await until(alice, () => document.querySelectorAll('#device-camera option').length >= 2, null, "Alice's camera list");
  await alice.selectOption('#device-camera', { label: otherCamera });
  await until(alice, (label) => window.switchboard.pc.getSenders().some((s) => s.track?.label === label), otherCamera, 'the other camera on the video sender');
  await keepsDecoding(bob, 'Bob to keep decoding after the camera switch');
  check((await alice.evaluate(() => window.switchboard.call?.phase)) === 'active', 'the call stays active');
  // The speaker: the chosen output reaches the call's audio element.
  await until(alice, () => !document.querySelector('#device-speaker-field').hidden
    && document.querySelectorAll('#device-speaker option').length >= 1, null, "Alice's speaker list");
  const speaker = await alice.evaluate(() => {
    const options = [...document.querySelectorAll('#device-speaker option')];
    return (options.find((o) => o.value !== 'default') ?? options[0]).value;
  });
  await alice.selectOption('#device-speaker', speaker);
  await until(alice, (id) => document.querySelector('#remote-audio').sinkId === id, speaker, 'the remote audio on the chosen speaker');
  await alice.click('#devices-done');
  await hidden(alice, '#devices-dialog');
  pass('the device picker switches the camera mid-call and the call goes on, and picks the speaker');

  // ---- Full screen.
  await alice.click('#call-fullscreen');
  await until(alice, () => document.fullscreenElement?.id === 'call-screen', null, 'the call in full screen');
  await alice.click('#call-fullscreen');
  await until(alice, () => document.fullscreenElement === null, null, 'full screen to end');
  pass('full screen on and off');

  // ---- Picture in picture: the peer's video floats, and comes back.
  await visible(alice, '#call-pip');
  await alice.click('#call-pip');
  await until(alice, () => document.pictureInPictureElement?.id === 'remote-video', null, "Bob's video in picture in picture");
  await alice.click('#call-pip');
  await until(alice, () => document.pictureInPictureElement === null, null, 'picture in picture to end');
  pass('picture in picture on and off');

  // ---- Injected packet loss: the indicator drops to poor, then recovers.
  const lossBy = injectLoss(30);
  try {
    await until(bob, () => document.querySelector('#call-quality').dataset.quality === 'poor', null, 'Bob\'s indicator to say poor under 30 % loss');
    await shot(bob, 'poor-connection-phone');
  } finally {
    injectLoss(0);
  }
  await until(bob, () => document.querySelector('#call-quality').dataset.quality === 'good', null, "Bob's indicator to recover");
  pass(`the quality indicator says poor under 30 % injected loss (${lossBy}) and good again after`);

  // ---- "Speaking" from the audio level: the fake microphone's beeps light it up.
  try {
    await until(alice, () => window.switchboard.call?.remote.speaking === true, null, "Alice's page to see Bob speaking");
  } finally {
    log(`Bob's audio level on Alice's page: ${await alice.evaluate(() => window.switchboard.call?.stats?.audioLevel)}`);
  }
  pass('the peer\'s "speaking" shows from the inbound audio level');

  // ---- Media cut off entirely: the offerer restarts ICE, and the call recovers once packets flow.
  const offerer = (await alice.evaluate(() => window.switchboard.call.offerer)) ? alice : bob;
  const ufrag = (page) => page.evaluate(() => /a=ice-ufrag:(\S+)/.exec(window.switchboard.pc.localDescription?.sdp ?? '')?.[1] ?? null);
  const ufragBefore = await ufrag(offerer);
  injectLoss(100);
  try {
    await until(offerer, (before) => {
      const sdp = window.switchboard.pc.localDescription?.sdp ?? '';
      return /a=ice-ufrag:(\S+)/.exec(sdp)?.[1] !== before;
    }, ufragBefore, 'the offerer to restart ICE while media is cut off');
  } finally {
    injectLoss(0);
  }
  await until(alice, () => window.switchboard.call?.connection === 'connected', null, "Alice's media to reconnect");
  await until(bob, () => window.switchboard.call?.connection === 'connected', null, "Bob's media to reconnect");
  await keepsDecoding(bob, 'video to flow again after the ICE restart');
  pass(`with every packet dropped the offerer restarts ICE (ufrag ${ufragBefore} -> ${await ufrag(offerer)}) and media comes back`);

  // ---- The WebSocket drops mid-call: it reconnects and resumes the call.
  // The banner is read as the socket drops: it shows only until the first retry reconnects.
  const bannerShown = await alice.evaluate(() => {
    window.switchboard.dropConnection();
    return !document.querySelector('#conn-banner').hidden;
  });
  check(bannerShown, 'the connection banner shows as the socket drops');
  await online(alice);
  await hidden(alice, '#conn-banner');
  const afterDrop = await alice.evaluate(() => ({ call: window.switchboard.call, toasts: [...document.querySelectorAll('.toast')].map((t) => t.dataset.reason + ':' + t.textContent) }));
  check(afterDrop.call?.phase === 'active', `the call is still active (${JSON.stringify(afterDrop)})`);
  await keepsDecoding(alice, 'video to keep flowing after the reconnect');
  check((await alice.locator('#toasts .toast[data-reason="connection_lost"]').count()) === 0, 'no connection-lost message');
  pass('WebSocket dropped mid-call: reconnects with backoff and resumes the call');

  // ---- Bob reloads the page mid-call: it signs in again from storage and rejoins.
  const oldPc = await alice.evaluateHandle(() => window.switchboard.pc);
  await bob.reload();
  await online(bob);
  await callPhase(bob, 'active', 'Bob after reloading');
  await remoteVideoPlays(bob, 'Bob after reloading');
  await untilAsync(alice, (old) => window.switchboard.pc && window.switchboard.pc !== old, oldPc, "Alice's new peer connection");
  await remoteVideoPlays(alice, 'Alice after Bob reloaded');
  pass('a page reloaded mid-call rejoins it with new media');

  await tabTo(alice, '#call-hangup', 12);
  await alice.keyboard.press('Enter');
  // Together: each ended screen shows for a few seconds only.
  const [aliceEnded, bobEnded] = await Promise.all([toast(alice, 'completed'), toast(bob, 'completed')]);
  check(aliceEnded.startsWith('Call with Bob Builder ended'), `hang-up message for Alice (got "${aliceEnded}")`);
  check(bobEnded.startsWith('Call with Alice Liddell ended'), `hang-up message for Bob (got "${bobEnded}")`);
  check((await alice.locator('#toasts .toast').count()) === 0, 'the end of the call is told once (on the call screen), not again in a toast');
  await endedScreenGone(alice);
  await endedScreenGone(bob);

  await openTab(alice, 'history');
  await visible(alice, '#history-list [data-peer="bob"][data-outcome="completed"][data-direction="outgoing"][data-media="video"]');
  await openTab(bob, 'history');
  await visible(bob, '#history-list [data-peer="alice"][data-outcome="completed"][data-direction="incoming"][data-media="video"]');
  await hidden(bob, '#missed-badge');
  pass('hang up ends the call on both pages; both histories show it');

  // ---- A declined call, ringing while Bob's tab is in the background: a notification.
  await clearToasts(alice);
  await clearToasts(bob);
  await openTab(bob, 'friends');
  // Headless Chromium answers "denied" until granted, so the "Turn on alerts" offer stays hidden.
  log(`Bob's notification permission: ${await bob.evaluate(() => Notification.permission)}`);
  await phone.grantPermissions(['camera', 'microphone', 'notifications'], { origin: BASE });
  check((await bob.evaluate(() => Notification.permission)) === 'granted', 'notifications granted');
  await bob.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    const Real = window.Notification;
    window.shownNotifications = [];
    window.Notification = class extends Real {
      constructor(title, options) {
        window.shownNotifications.push({ title, body: options?.body });
        super(title, options);
      }
    };
  });
  await alice.click('#friend-list [data-user="bob"] .call-audio');
  await visible(bob, '#incoming');
  const notes = await bob.evaluate(() => window.shownNotifications);
  check(notes.length === 1 && notes[0].title === 'Alice Liddell is calling', `a background tab shows a notification (${JSON.stringify(notes)})`);
  await bob.evaluate(() => delete document.visibilityState);
  check((await textOf(bob, '#incoming-kind')) === 'Incoming audio call', 'the alert says audio call');
  await bob.keyboard.press('Escape');
  await hidden(bob, '#incoming');
  check((await ringtone(bob)) === null, 'declining stops the ringtone');
  const declined = await toast(alice, 'declined');
  check(declined === 'Bob Builder declined the call.', `the caller is told it was declined (got "${declined}")`);
  await until(alice, () => document.querySelector('#call-status').textContent === 'Bob Builder declined the call.', null, 'the declined message on the call screen');
  await shot(alice, 'declined-desktop');
  await endedScreenGone(alice);
  pass('a declined call (Escape on the alert, a notification while in the background): the caller sees "declined"');

  // ---- Missed calls: one rings out (no answer), one is cancelled by the caller.
  await clearToasts(alice);
  await alice.click('#friend-list [data-user="bob"] .call-video');
  await visible(bob, '#incoming');
  await shot(alice, 'outgoing-call-desktop');
  await shot(bob, 'incoming-call-phone');
  await axeScan(bob, 'incoming call (phone)');
  await axeScan(alice, 'outgoing call ringing (desktop)');
  log(`letting it ring for the ring timeout (${RING_TIMEOUT_MS} ms)`);
  const noAnswer = await toast(alice, 'no_answer');
  check(noAnswer === 'No answer from Bob Builder.', `the caller is told nobody answered (got "${noAnswer}")`);
  const missed = await toast(bob, 'no_answer');
  check(missed === 'Missed call from Alice Liddell.', `the callee is told of the missed call (got "${missed}")`);
  await hidden(bob, '#incoming');
  await until(bob, () => document.querySelector('#missed-badge').textContent === '1' && !document.querySelector('#missed-badge').hidden, null, 'the missed badge to show 1');

  // "Call again" on the caller's no-answer screen places the same call.
  await clearToasts(bob);
  await alice.click('#call-again');
  await visible(bob, '#incoming');
  check((await textOf(bob, '#incoming-kind')) === 'Incoming video call', '"Call again" makes the same kind of call');
  await callPhase(alice, 'ringing', 'Alice');
  await alice.click('#call-hangup');
  await toast(alice, 'cancelled', 'Call cancelled.');
  const cancelled = await toast(bob, 'cancelled');
  check(cancelled === 'Missed call from Alice Liddell.', `a cancelled call is a missed call for the callee (got "${cancelled}")`);
  await hidden(bob, '#incoming');
  await until(bob, () => document.querySelector('#missed-badge').textContent === '2', null, 'the missed badge to show 2');
  await shot(bob, 'missed-badge-phone');
  await openTab(bob, 'history');
  // The call made while Bob was on do-not-disturb (busy) is a missed call too.
  await until(
    bob,
    () => ['busy', 'no_answer', 'cancelled'].every((o) => document.querySelector(`#history-list .call-record.missed[data-outcome="${o}"][data-peer="alice"]`)),
    null,
    'the busy, no-answer and cancelled calls marked missed in the history',
  );
  check((await bob.locator('#history-list .call-record.missed').count()) === 3, 'exactly three missed calls');
  await hidden(bob, '#missed-badge');
  await shot(bob, 'history-phone');
  await openTab(alice, 'history');
  await visible(alice, '#history-list [data-peer="bob"][data-outcome="no_answer"]');
  await visible(alice, '#history-list [data-peer="bob"][data-outcome="declined"]');
  await endedScreenGone(alice);
  await clearToasts(alice);
  await shot(alice, 'history-desktop');
  pass('missed calls (no answer, cancelled): messages on both sides, the missed badge, then seen');

  // ---- The callee has two tabs: both ring, one answers, the other stops.
  await openTab(bob, 'friends');
  // The second tab runs an older page, without the data channel: the call must work as before.
  const bob2 = await openPage(phone, 'bob-tab-2', { older: true });
  await visible(bob2, '#home-screen'); // Signed in from localStorage, no typing.
  await online(bob2);
  await clearToasts(alice);
  await clearToasts(bob);
  await alice.click('#friend-list [data-user="bob"] .call-video');
  await visible(bob, '#incoming');
  await visible(bob2, '#incoming');
  check((await ringtone(bob)) === 'incoming' && (await ringtone(bob2)) === 'incoming', 'both tabs ring');
  await bob2.click('#incoming-accept');
  await hidden(bob, '#incoming');
  check((await ringtone(bob)) === null, 'the other tab stops ringing');
  const elsewhere = await toast(bob, 'answered_elsewhere');
  check(elsewhere === 'Answered on another device.', `the other tab says where the call went (got "${elsewhere}")`);
  await shot(bob, 'answered-elsewhere-phone');
  await callPhase(bob2, 'active', 'Bob (tab 2)');
  await remoteVideoPlays(bob2, 'Bob (tab 2)');
  await remoteVideoPlays(alice, 'Alice');
  check(await bob.evaluate(() => window.switchboard.call === null), 'the first tab is not in the call');
  await alice.click('#call-chat');
  await until(alice, () => document.querySelector('#chat-note').textContent.includes('older version'), null, "Alice's chat to say the peer's page has none");
  check(await alice.evaluate(() => document.querySelector('#chat-input').disabled), 'no chat with a page that has no data channel');
  check((await alice.evaluate(() => window.switchboard.call.remote.known)) === false, 'no peer state from an older page');
  await alice.click('#call-chat');
  await bob2.click('#call-hangup');
  await toast(alice, 'completed');
  pass('a callee with two tabs: both ring, one accepts, the other stops; the answering tab is an older page without the data channel, and video and hang-up work as before');

  // ---- Offline presence with last seen.
  await bob.close();
  await bob2.close();
  await visible(alice, '#friend-list [data-user="bob"][data-status="offline"]', { hasText: 'Last seen' });
  pass('a friend who closes every tab goes offline with "last seen"');

  // ---- Calling an offline friend leaves them a missed call.
  await clearToasts(alice);
  await alice.click('#friend-list [data-user="bob"][data-status="offline"] .call-audio');
  const offline = await toast(alice, 'unavailable');
  check(offline === 'Bob Builder is offline. They will see a missed call.', `the caller is told the friend is offline (got "${offline}")`);
  const bob3 = await openPage(phone, 'bob-back');
  await visible(bob3, '#home-screen');
  await online(bob3);
  await until(bob3, () => document.querySelector('#missed-badge').textContent === '1' && !document.querySelector('#missed-badge').hidden, null, "Bob's missed badge for the call while offline");
  await openTab(bob3, 'history');
  await visible(bob3, '#history-list .call-record.missed[data-peer="alice"][data-outcome="unavailable"][data-media="audio"]');
  pass('a call to an offline friend records a missed call for them');
  await endedScreenGone(alice);

  // ---- Account: display name and password.
  await alice.click('#account-open');
  await visible(alice, '#account-dialog');
  await axeScan(alice, 'account dialog (desktop)');
  await alice.fill('#account-display-name', 'Alice L.');
  await alice.click('#name-save');
  await until(alice, () => document.querySelector('#me-name').textContent === 'Alice L.', null, 'the new display name in the header');
  await alice.fill('#account-old-password', PASSWORD);
  await alice.fill('#account-new-password', 'another good password');
  await alice.click('#password-save');
  await toast(alice, 'password_changed');
  await shot(alice, 'account-desktop');
  await alice.click('#account-close');
  await hidden(alice, '#account-dialog');
  const me = await alice.evaluate(async () => {
    const token = JSON.parse(localStorage.getItem('switchboard.session')).token;
    return (await fetch('/api/v1/me', { headers: { authorization: `Bearer ${token}` } })).json();
  });
  check(me.display_name === 'Alice L.', `the display name is saved (${JSON.stringify(me)})`);
  pass('account: change the display name and the password');

  // ---- Remove a friend from their menu, then become friends again.
  await bob3.evaluate(() => document.querySelector('#tab-friends').click());
  await visible(bob3, '#friend-list [data-user="alice"]');
  // ---- A friend's open menu, and the focus in it, outlive a redraw of the list (a presence change).
  await alice.click('#friend-list [data-user="bob"] .friend-more');
  await alice.focus('#friend-list [data-user="bob"] .friend-menu .unfriend');
  await alice.evaluate(() => { window.rowBefore = document.querySelector('#friend-list [data-user="bob"]'); });
  await bob3.selectOption('#status-select', 'away');
  await visible(alice, '#friend-list [data-user="bob"][data-status="away"]');
  const menuState = await alice.evaluate(() => {
    const row = document.querySelector('#friend-list [data-user="bob"]');
    return {
      redrawn: row !== window.rowBefore,
      open: !row.querySelector('.friend-menu').hidden,
      expanded: row.querySelector('.friend-more').getAttribute('aria-expanded'),
      focused: document.activeElement === row.querySelector('.friend-menu .unfriend'),
    };
  });
  check(menuState.redrawn && menuState.open && menuState.expanded === 'true' && menuState.focused,
    `the friend menu stays open and focused across a redraw (${JSON.stringify(menuState)})`);
  await bob3.selectOption('#status-select', 'online');
  await visible(alice, '#friend-list [data-user="bob"][data-status="online"]');
  pass("a friend's open menu and its focus survive a presence change");

  await alice.click('#friend-list [data-user="bob"] .friend-menu .unfriend');
  await until(alice, () => !document.querySelector('#friend-list [data-user="bob"]'), null, 'Bob to leave Alice\'s friends');
  await until(bob3, () => !document.querySelector('#friend-list [data-user="alice"]'), null, 'Alice to leave Bob\'s friends');
  await openTab(alice, 'search');
  await alice.fill('#search-input', 'bob');
  await (await visible(alice, '#search-results [data-user="bob"] .add-friend')).click();
  await bob3.evaluate(() => document.querySelector('#tab-requests').click());
  await (await visible(bob3, '#incoming-requests [data-user="alice"] .accept-request')).click();
  await bob3.evaluate(() => document.querySelector('#tab-friends').click());
  await visible(alice, '#friend-list [data-user="bob"]');
  await visible(bob3, '#friend-list [data-user="alice"]');
  pass('remove a friend from the friend menu (and befriend again)');

  // ---- Block from the friend's menu: presence and calls stop both ways.
  await alice.click('#friend-list [data-user="bob"] .friend-more');
  await alice.click('#friend-list [data-user="bob"] .friend-menu .block');
  await toast(alice, 'blocked');
  await until(alice, () => !document.querySelector('#friend-list [data-user="bob"]'), null, 'Bob to leave Alice\'s friends');
  await until(bob3, () => !document.querySelector('#friend-list [data-user="alice"]'), null, 'Alice to leave Bob\'s friends (no more presence)');
  const blockedCall = await bob3.evaluate(async () => {
    const token = JSON.parse(localStorage.getItem('switchboard.session')).token;
    const response = await fetch('/api/v1/calls', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'alice', media: 'audio' }),
    });
    return { status: response.status, error: (await response.json()).error };
  });
  check(blockedCall.error === 'not_friends', `a blocked person can't call (${JSON.stringify(blockedCall)})`);
  await alice.click('#account-open');
  await visible(alice, '#blocked-list [data-user="bob"]');
  await alice.click('#blocked-list [data-user="bob"] .unblock');
  await visible(alice, '#blocked-empty');
  await alice.click('#account-close');
  pass('block from the UI stops presence and calls; unblock from the account dialog');

  // ---- Delete the account.
  await bob3.click('#account-open');
  await bob3.fill('#account-delete-password', PASSWORD);
  await bob3.click('#account-delete');
  await visible(bob3, '#auth-screen');
  check((await textOf(bob3, '#auth-form-error')) === 'Your account was deleted.', 'deleting says so on the sign-in screen');
  await bob3.fill('#auth-username', 'bob');
  await bob3.fill('#auth-password', PASSWORD);
  await bob3.click('#auth-submit');
  await until(bob3, () => document.querySelector('#auth-password-error').textContent.includes('Wrong username or password'), null, 'the deleted account to be gone');
  pass('delete account from the account dialog');
  log(`axe-core found no serious or critical violations on ${axeScanned.length} screens: ${axeScanned.join('; ')}`);
  await bob3.close();
  await alice.close();
}

// ------------------------------------------------------------------ the installable app

/** A stand-in for a browser's push service (FCM, Mozilla's autopush, Apple's): the broker's
 * pushes for the test's subscription land here and get 201, as from a real one. */
async function startPushService() {
  const received = [];
  let taken = 0;
  const server = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ method: request.method, path: request.url, headers: request.headers, body: Buffer.concat(chunks) });
      response.writeHead(201).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** The next push the broker sent (after the ones already taken). */
    async next(what) {
      const deadline = Date.now() + STEP_TIMEOUT_MS;
      while (received.length <= taken) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for the push of ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return received[taken++];
    },
    close: () => server.close(),
  };
}

/** A subscription's keys as a browser makes them: a P-256 key pair and 16 random bytes. */
function subscriptionKeys() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return { ecdh, auth, p256dh: ecdh.getPublicKey().toString('base64url'), authB64: auth.toString('base64url') };
}

/** The JSON a push carries, decrypted as the browser would (RFC 8291, aes128gcm, one record). */
function decryptPush(body, { ecdh, auth }) {
  const salt = body.subarray(0, 16);
  const idLength = body[20];
  const serverKey = body.subarray(21, 21 + idLength);
  const ciphertext = body.subarray(21 + idLength);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), serverKey]);
  const ikm = Buffer.from(hkdfSync('sha256', ecdh.computeSecret(serverKey), auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end > 0 && padded[end] === 0) end -= 1;
  check(padded[end] === 2, 'the push is one last record (delimiter 0x02)');
  return JSON.parse(padded.subarray(0, end).toString('utf8'));
}

/**
 * Headless Chromium has no push service to subscribe with (that is Google's FCM, and the test
 * has no network), so the browser's PushManager is replaced by one that hands out the test's
 * subscription: its endpoint is the stand-in push service, its keys the test's. Everything of
 * Switchboard's (the page asking for it, the broker sending to it, the worker showing it) is real.
 */
function fakePushManager({ endpoint, p256dh, auth }) {
  if (typeof PushManager === 'undefined') return;
  const KEY = 'test.push-subscription';
  const make = (state) => ({
    endpoint,
    expirationTime: null,
    options: { userVisibleOnly: state.userVisibleOnly, applicationServerKey: Uint8Array.from(atob(state.key), (c) => c.charCodeAt(0)).buffer },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
    unsubscribe: async () => {
      localStorage.removeItem(KEY);
      return true;
    },
  });
  PushManager.prototype.subscribe = async function subscribe(options) {
    const key = options.applicationServerKey;
    const bytes = new Uint8Array(key.buffer ?? key);
    const state = { key: btoa(String.fromCharCode(...bytes)), userVisibleOnly: options.userVisibleOnly === true };
    localStorage.setItem(KEY, JSON.stringify(state));
    return make(state);
  };
  PushManager.prototype.getSubscription = async function getSubscription() {
    const state = localStorage.getItem(KEY);
    return state ? make(JSON.parse(state)) : null;
  };
}

/** The notifications the service worker shows (with `tag`: only those). */
async function notificationsOf(page, tag) {
  return page.evaluate(async (t) => {
    const registration = await navigator.serviceWorker.ready;
    return (await registration.getNotifications(t ? { tag: t } : {})).map((n) => ({
      title: n.title,
      body: n.body,
      tag: n.tag,
      actions: n.actions.map((a) => a.action),
      requireInteraction: n.requireInteraction,
      renotify: n.renotify,
      data: n.data,
    }));
  }, tag ?? null);
}

async function untilNotification(page, tag, test, what, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last = [];
  for (;;) {
    last = await notificationsOf(page, tag);
    if (test(last)) return last;
    if (Date.now() > deadline) {
      const worker = page.context().serviceWorkers().pop();
      const seen = await worker
        ?.evaluate(async () => ({ permission: Notification.permission, tags: (await self.registration.getNotifications()).map((n) => n.tag) }))
        .catch((error) => error.message);
      throw new Error(`timed out waiting for ${what} (notifications: ${JSON.stringify(last)}; in the worker: ${JSON.stringify(seen)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Delivers `payload` and waits until the notifications tagged `tag` pass `test`. Now and then
 * headless Chromium drops a push handed over by the DevTools protocol before the worker sees it
 * (the worker's handler never runs, its permission is granted), so an unhandled push is handed
 * over again, as a push service redelivers; the worker's handling is idempotent (one
 * notification per tag).
 */
async function deliverUntil(deliver, payload, page, tag, test, what) {
  for (let attempt = 1; ; attempt += 1) {
    await deliver(payload);
    try {
      return await untilNotification(page, tag, test, what, attempt < 3 ? 4000 : STEP_TIMEOUT_MS);
    } catch (error) {
      if (attempt >= 3) throw error;
      log(`the push for ${what} was not handled within 4 s; delivering it again`);
    }
  }
}

/** Delivers pushes to the app's service worker through the DevTools protocol, as the browser
 * does with what its push service hands it. `page` is any page of the browser profile. */
async function pushDeliverer(context, page) {
  const cdp = await context.newCDPSession(page);
  const registrations = [];
  cdp.on('ServiceWorker.workerRegistrationUpdated', (event) => registrations.push(...event.registrations));
  await cdp.send('ServiceWorker.enable');
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let registration;
  while (!(registration = registrations.find((r) => !r.isDeleted && r.scopeURL === `${BASE}/`))) {
    if (Date.now() > deadline) throw new Error(`no service worker registration for ${BASE}/ (${JSON.stringify(registrations)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return (payload) =>
    cdp.send('ServiceWorker.deliverPushMessage', {
      origin: BASE,
      registrationId: registration.registrationId,
      data: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
}

/** The session token in localStorage and its copy in IndexedDB (for the service worker). */
async function tokens(page) {
  return page.evaluate(async () => {
    const local = JSON.parse(localStorage.getItem('switchboard.session') ?? 'null')?.token ?? null;
    const mirrored = await new Promise((resolve) => {
      const open = indexedDB.open('switchboard', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('session');
      open.onsuccess = () => {
        const get = open.result.transaction('session').objectStore('session').get('token');
        get.onsuccess = () => resolve(get.result ?? null);
        get.onerror = () => resolve('error');
      };
      open.onerror = () => resolve('error');
    });
    return { local, mirrored };
  });
}

/** A PNG's width and height, from its IHDR chunk. */
async function pngSize(path) {
  const bytes = Buffer.from(await (await fetch(`${BASE}${path}`)).arrayBuffer());
  check(bytes.subarray(1, 4).toString() === 'PNG', `${path} is a PNG`);
  return `${bytes.readUInt32BE(16)}x${bytes.readUInt32BE(20)}`;
}

/** Makes the broker unreachable (connections refused, open ones reset) or reachable again. */
function blockBroker(blocked) {
  const port = new URL(BASE).port;
  if (!blocked) {
    spawnSync('nft', ['delete', 'table', 'inet', 'sboffline']);
    return;
  }
  const script = `add table inet sboffline
add chain inet sboffline input { type filter hook input priority 0; }
add rule inet sboffline input tcp dport ${port} reject with tcp reset
`;
  const nft = spawnSync('nft', ['-f', '-'], { input: script, encoding: 'utf8' });
  check(nft.status === 0, `the broker can be cut off with nftables (${(nft.stderr || nft.error?.message || '').trim()})`);
}

async function appScenarios(context) {
  const pushService = await startPushService();
  const keys = subscriptionKeys();
  const endpoint = `${pushService.url}/push/carol`;
  await context.grantPermissions(['camera', 'microphone', 'notifications'], { origin: BASE });
  await context.addInitScript(fakePushManager, { endpoint, p256dh: keys.p256dh, auth: keys.authB64 });
  // The browser's install dialog would take the next clicks in headless Chromium: the offer's
  // prompt() is recorded instead of opened.
  await context.addInitScript(() => {
    window.addEventListener('beforeinstallprompt', (event) => {
      event.prompt = async () => {
        window.installPrompted = true;
        return { outcome: 'dismissed' };
      };
    });
  });
  // The profile's first tab stays open on a page with no app in it (no socket): the DevTools
  // protocol needs a page, and the worker's notifications are read from it.
  const driver = context.pages()[0] ?? (await context.newPage());
  driver.setDefaultTimeout(STEP_TIMEOUT_MS);

  // ---- (a) Installable: a manifest, icons, a service worker; Chromium finds nothing missing.
  const carol = await openPage(context, 'carol');
  await visible(carol, '#auth-screen');
  const cdp = await context.newCDPSession(carol);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  check(installabilityErrors.length === 0, `Chromium reports no installability errors (got ${JSON.stringify(installabilityErrors)})`);
  const manifest = await cdp.send('Page.getAppManifest');
  check(manifest.url === `${BASE}/web/manifest.webmanifest` && manifest.errors.length === 0, `the manifest parses without errors (${JSON.stringify(manifest.errors)})`);
  const parsed = JSON.parse(manifest.data);
  check(parsed.display === 'standalone' && parsed.start_url === '/' && parsed.scope === '/' && parsed.name && parsed.short_name, `the manifest names a standalone app at / (${manifest.data})`);
  for (const [size, purpose] of [['192x192', 'any'], ['512x512', 'any'], ['512x512', 'maskable']]) {
    const entry = parsed.icons.find((i) => i.sizes === size && i.purpose === purpose && i.type === 'image/png');
    check(entry, `the manifest has a ${size} ${purpose} PNG icon`);
    check((await pngSize(entry.src)) === size, `${entry.src} is ${size}`);
  }
  check(
    await carol.evaluate(async () => (await navigator.serviceWorker.ready).active?.scriptURL === `${location.origin}/sw.js`),
    'the service worker at /sw.js is active',
  );
  // The browser offers installing: the page shows its own button, which opens the prompt.
  await visible(carol, '#install-app-auth');
  await shot(carol, 'install-offer-desktop');
  await carol.click('#install-app-auth');
  await hidden(carol, '#install-app-auth');
  check(await carol.evaluate(() => window.installPrompted === true), "the button opens the browser's install prompt");
  // A new offer shows the button again, and installing (from the browser's own menu) hides it.
  await carol.evaluate(() => {
    const offer = new Event('beforeinstallprompt', { cancelable: true });
    offer.prompt = async () => ({ outcome: 'dismissed' });
    window.dispatchEvent(offer);
  });
  await visible(carol, '#install-app-auth');
  await carol.evaluate(() => window.dispatchEvent(new Event('appinstalled')));
  await hidden(carol, '#install-app-auth');
  pass('the app is installable: no installability errors, a manifest with 192/512 and maskable icons, a service worker, an "Install app" button while the browser offers it');

  await register(carol, 'carol', 'Carol Danvers');
  const carolTokens = await tokens(carol);
  check(carolTokens.local && carolTokens.mirrored === carolTokens.local, `the session token is mirrored into IndexedDB for the service worker (${JSON.stringify(carolTokens)})`);

  // ---- (b) A push delivered through the DevTools protocol shows the incoming-call notification.
  const deliver = await pushDeliverer(context, carol);
  const ids = Array.from({ length: 3 }, () => randomBytes(16).toString('hex'));
  const [ringing] = await deliverUntil(deliver, { type: 'call.incoming', call_id: ids[0], from: 'amy', display_name: 'Amy', media: 'video' }, carol, ids[0], (list) => list.length === 1, 'the incoming-call notification');
  check(ringing.title === 'Amy is calling' && ringing.body === 'Incoming video call on Switchboard', `the notification names the caller (${JSON.stringify(ringing)})`);
  check(ringing.actions.join() === 'accept,decline', `it has Accept and Decline (${ringing.actions})`);
  check(ringing.requireInteraction && ringing.renotify, 'it stays until answered and rings again when renewed');
  check(ringing.data?.url === `/?accept=${ids[0]}`, `a click opens the app to accept it (${JSON.stringify(ringing.data)})`);
  await deliverUntil(deliver, { type: 'call.ended', call_id: ids[0], from: 'amy', display_name: 'Amy', reason: 'cancelled', missed: true }, carol, ids[0], (list) => list.length === 1 && list[0].title === 'Missed call from Amy' && list[0].actions.length === 0, 'the missed-call notification in its place');
  await deliverUntil(deliver, { type: 'call.incoming', call_id: ids[1], from: 'cat', display_name: 'Cat', media: 'audio' }, carol, ids[1], (list) => list[0]?.body === 'Incoming audio call on Switchboard', 'an audio call notification');
  await deliverUntil(deliver, { type: 'call.ended', call_id: ids[1], from: 'cat', display_name: 'Cat', reason: 'answered_elsewhere', missed: false }, carol, ids[1], (list) => list.length === 0, 'the notification of a call answered elsewhere to go');
  await deliverUntil(deliver, { type: 'call.missed', call_id: ids[2], from: 'dan', display_name: '', media: 'audio' }, carol, ids[2], (list) => list[0]?.title === 'Missed call from dan', 'a missed call (by username when there is no display name)');
  await deliverUntil(deliver, { type: 'friend.request', from: { username: 'cat', display_name: 'Cat' } }, carol, 'friend-cat', (list) => list[0]?.title === 'Cat wants to be your friend', 'the friend-request notification');
  await carol.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).forEach((n) => n.close()));
  pass('pushes delivered through the DevTools protocol: incoming call (Accept, Decline), replaced by "Missed call", closed when answered elsewhere, missed call, friend request');

  // ---- (d) The broker can't be reached: the app opens from its cache and says it is offline.
  blockBroker(true);
  try {
    await carol.reload();
    await visible(carol, '#home-screen');
    await visible(carol, '#conn-banner[data-state="offline"]');
    // Between retries; while one is under way it says "trying to reach".
    await until(carol, () => /^Offline: Switchboard can't be reached\. Retrying in \d+ s…$/.test(document.querySelector('#conn-text').textContent.trim()), null, 'the page to say it is offline and retrying');
    check(await carol.evaluate(() => Boolean(navigator.serviceWorker.controller)), 'the page came from the service worker');
    await shot(carol, 'offline-desktop');
    await axeScan(carol, 'offline, with the call-notifications offer (desktop)');
    // Wait, still unreachable, for a retry scheduled seconds away: then it is the button, not
    // the page's own timer, that reconnects once the broker is back.
    await until(carol, () => Number(document.querySelector('#conn-text')?.textContent.match(/Retrying in (\d+) s/)?.[1]) >= 4, null, 'a retry scheduled at least 3 s away');
  } finally {
    blockBroker(false);
  }
  await carol.click('#conn-retry');
  const afterClick = await carol.evaluate(() => window.switchboard.connection);
  check(afterClick === 'connecting' || afterClick === 'online', `"Retry now" connects at once, before the scheduled retry (state ${afterClick})`);
  await online(carol);
  await hidden(carol, '#conn-banner');
  pass('with the broker unreachable, a reload opens the app from its cache with an offline banner; it reconnects once the broker is back');

  // ---- (c) A call rings Carol's closed app by push; she accepts it from the notification.
  const other = await context.browser().newContext({ viewport: { width: 1280, height: 800 }, permissions: ['camera', 'microphone'] });
  const dave = await openPage(other, 'dave');
  await register(dave, 'dave', 'Dave Lister');
  await befriend(dave, carol, 'carol');
  await visible(dave, '#friend-list [data-user="carol"][data-status="online"]');
  await visible(carol, '#notify-offer');
  check((await textOf(carol, '#notify-enable')) === 'Enable call notifications', 'the offer is to enable call notifications');
  await shot(carol, 'call-notifications-offer-desktop');
  await carol.click('#notify-enable');
  await toast(carol, 'push_on');
  await hidden(carol, '#notify-offer');
  const vapid = await (await fetch(`${BASE}/api/v1/push/vapid-public-key`)).json();
  const asked = await carol.evaluate(() => JSON.parse(localStorage.getItem('test.push-subscription')));
  check(asked?.userVisibleOnly === true, 'the page subscribes with userVisibleOnly');
  check(Buffer.from(asked.key, 'base64').toString('base64url') === vapid.public_key, "the page subscribes with the broker's VAPID key");
  pass('"Enable call notifications" subscribes with the broker\'s VAPID key and registers the subscription');

  await carol.close();
  await driver.goto(`${BASE}/healthz`); // In the worker's scope, no app and no socket.
  await visible(dave, '#friend-list [data-user="carol"][data-status="offline"]');
  const deliverToClosedApp = await pushDeliverer(context, driver);

  // The first call is declined from the notification, as its Decline button does.
  await dave.click('#friend-list [data-user="carol"] .call-video');
  await callPhase(dave, 'ringing', 'Dave');
  const rung = await pushService.next('the first call');
  const callId = await dave.evaluate(() => window.switchboard.call.id);
  const incoming = decryptPush(rung.body, keys);
  check(rung.path === '/push/carol' && rung.headers['content-encoding'] === 'aes128gcm', `the push goes to the subscription, encrypted (${rung.path} ${rung.headers['content-encoding']})`);
  check(rung.headers.urgency === 'high' && rung.headers.topic === callId && Number(rung.headers.ttl) === RING_TIMEOUT_MS / 1000, `an incoming call is pushed with Urgency high, the call as Topic and the ring timeout as TTL (${JSON.stringify(rung.headers)})`);
  check(/^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=/.test(rung.headers.authorization ?? '') && rung.headers.authorization.endsWith(`k=${vapid.public_key}`), `the push is VAPID-signed with the broker's key (${rung.headers.authorization})`);
  check(
    incoming.type === 'call.incoming' && incoming.call_id === callId && incoming.from === 'dave' && incoming.display_name === 'Dave Lister' && incoming.media === 'video',
    `the push says who calls (${JSON.stringify(incoming)})`,
  );
  await deliverUntil(deliverToClosedApp, incoming, driver, callId, (list) => list[0]?.title === 'Dave Lister is calling', "the notification of Dave's call");
  await clickNotification(context, callId, 'decline');
  const declinedByPush = await toast(dave, 'declined');
  check(declinedByPush === 'Carol Danvers declined the call.', `Decline on the notification declines the call (got "${declinedByPush}")`);
  const followUp = decryptPush((await pushService.next('the end of the first call')).body, keys);
  check(followUp.type === 'call.ended' && followUp.call_id === callId && followUp.missed === false, `a declined call's follow-up push clears its notification (${JSON.stringify(followUp)})`);
  await deliverUntil(deliverToClosedApp, followUp, driver, callId, (list) => list.length === 0, 'no notification left for the declined call');
  await endedScreenGone(dave);
  pass("a call to Carol's closed app rings by push (encrypted, VAPID-signed, Urgency high, Topic and TTL); Decline on its notification declines it");

  // The second call is accepted: the notification opens the app, which accepts it.
  await clearToasts(dave);
  await dave.click('#friend-list [data-user="carol"] .call-video');
  await callPhase(dave, 'ringing', 'Dave');
  const secondId = await dave.evaluate(() => window.switchboard.call.id);
  const second = decryptPush((await pushService.next('the second call')).body, keys);
  check(second.call_id === secondId, 'the second call is pushed too');
  const [toAccept] = await deliverUntil(deliverToClosedApp, second, driver, secondId, (list) => list.length === 1, "the second call's notification");
  const answered = await openPage(context, 'carol-from-notification', { path: toAccept.data.url });
  await callPhase(answered, 'active', 'Carol');
  await callPhase(dave, 'active', 'Dave');
  const carolFrames = await remoteVideoPlays(answered, 'Carol');
  await remoteVideoPlays(dave, 'Dave');
  log(`framesDecoded for Carol after accepting from the notification: ${carolFrames}`);
  check(answered.url() === `${BASE}/`, `the page forgets ?accept= once the call is accepted (${answered.url()})`);
  await untilNotification(driver, secondId, (list) => list.length === 0, 'the notification of the accepted call to go');
  await shot(answered, 'accepted-from-notification-desktop');
  pass('the app opened from the notification (/?accept=<call>) signs in, connects and accepts the call; video plays (framesDecoded > 0)');
  await answered.click('#call-hangup');
  await toast(dave, 'completed');
  await endedScreenGone(answered);

  // With the app open, Accept on a call's notification answers it there.
  await clearToasts(dave);
  await dave.click('#friend-list [data-user="carol"] .call-video');
  await visible(answered, '#incoming');
  // The call's id comes with the invite's ack, which may follow Carol's alert.
  await until(dave, () => Boolean(window.switchboard.call?.id), null, "the third call's id");
  const thirdId = await dave.evaluate(() => window.switchboard.call.id);
  await deliverUntil(deliverToClosedApp, { type: 'call.incoming', call_id: thirdId, from: 'dave', display_name: 'Dave Lister', media: 'video' }, driver, thirdId, (list) => list.length === 1, "the third call's notification");
  await clickNotification(context, thirdId, 'accept');
  await callPhase(answered, 'active', 'Carol');
  await callPhase(dave, 'active', 'Dave');
  await untilNotification(driver, thirdId, (list) => list.length === 0, 'the notification to go once clicked');
  await answered.click('#call-hangup');
  await toast(dave, 'completed');
  await endedScreenGone(answered);
  pass('Accept on a notification while the app is open answers the call in that window');

  // ---- Signing out ends the push subscription, on the broker and in the browser.
  const signOutRequests = [];
  answered.on('request', (request) => signOutRequests.push(`${request.method()} ${new URL(request.url()).pathname}`));
  await answered.click('#logout');
  await visible(answered, '#auth-screen');
  const removed = signOutRequests.indexOf('DELETE /api/v1/push/subscriptions/current');
  check(removed >= 0 && removed < signOutRequests.indexOf('POST /api/v1/auth/logout'), `sign-out deletes the subscription before the session (${signOutRequests})`);
  check((await answered.evaluate(() => localStorage.getItem('test.push-subscription'))) === null, 'sign-out unsubscribes the browser');
  const after = await tokens(answered);
  check(after.local === null && after.mirrored === null, `sign-out clears both copies of the token (${JSON.stringify(after)})`);
  pass('sign-out deletes the push subscription and unsubscribes, and clears the mirrored token');
  pushService.close();
}

/** Runs the service worker's handler for a click on the notification of call `tag` (`action`:
 * the button, '' for the notification itself), as the browser does when it is clicked: headless
 * Chromium shows no notification to click. */
async function clickNotification(context, tag, action) {
  const worker = context.serviceWorkers().filter((w) => w.url() === `${BASE}/sw.js`).pop();
  check(worker, 'the service worker runs');
  await worker.evaluate(
    async ([t, a]) => {
      const [notification] = await self.registration.getNotifications({ tag: t });
      await handleNotificationClick(notification, a);
    },
    [tag, action],
  );
}

/** `from` asks `to` (signed in on `toPage`) to be friends and `to` accepts, over the REST API. */
async function befriend(fromPage, toPage, to) {
  const from = await fromPage.evaluate(() => JSON.parse(localStorage.getItem('switchboard.session')).user.username);
  const call = (page, method, path, body) =>
    page.evaluate(
      async ([m, p, b]) => {
        const token = JSON.parse(localStorage.getItem('switchboard.session')).token;
        const headers = { authorization: `Bearer ${token}` };
        if (b) headers['content-type'] = 'application/json';
        return (await fetch(`/api/v1${p}`, { method: m, headers, body: b ? JSON.stringify(b) : undefined })).status;
      },
      [method, path, body],
    );
  check((await call(fromPage, 'POST', '/friends/requests', { username: to })) < 300, `${from} asks ${to} to be friends`);
  check((await call(toPage, 'POST', `/friends/requests/${from}/accept`)) < 300, `${to} accepts ${from}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`[browser] FAILED: ${error.stack ?? error}`);
    process.exit(1);
  },
);
