// The policy playground. Every decision comes from the dpp-guard package
// (the filter's Rust core as WebAssembly): this file only wires inputs to
// it and shows what it answers. Keys are generated here and stay here.

import { checkPolicy, generateKeyring, generateLogKey, Keyring, Policy } from '/pkg/index.js';
import { codeEditor, errorRange } from '/editor.js';

const $ = (id) => document.getElementById(id);
const escapeHtml = (s) =>
  String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

const state = {
  policy: null, // compiled Policy
  keyring: null, // parsed Keyring
  samples: {},
  defaultPolicy: '',
  last: null, // last exchange and what produced it
};

const editor = codeEditor($('policy-editor'), { onInput: () => schedule(checkAndRun) });

// ---- small helpers ------------------------------------------------------

let timer;
function schedule(fn, ms = 200) {
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

function direction() {
  return document.querySelector('input[name=direction]:checked').value;
}

function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf(':');
    if (at > 0) out[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
  }
  return out;
}

function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function pretty(json) {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json.trim();
  }
}

function bytes(n) {
  return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`;
}

// ---- policy ---------------------------------------------------------------

function checkAndRun() {
  if (checkPolicyText()) run();
}

/** Checks the editor's policy; shows the error inline. True when valid. */
function checkPolicyText() {
  const text = editor.value;
  const check = checkPolicy(text);
  const status = $('policy-status');
  const box = $('policy-error');
  state.policy?.free();
  state.policy = null;
  if (!check.ok) {
    const { field, problem } = check.error;
    const range = errorRange(text, field, problem);
    editor.mark(range);
    box.hidden = false;
    box.innerHTML =
      `<strong>Invalid policy</strong> · field <code class="field">${escapeHtml(field)}</code>` +
      (range ? ` <button type="button" class="link" id="goto-error">line ${range.line + 1}</button>` : '') +
      `<div class="problem">${escapeHtml(problem)}</div>` +
      `<div class="muted">The plugin refuses to start and logs: <code>dpp-guard: ${escapeHtml(check.error.message)}</code></div>`;
    $('goto-error')?.addEventListener('click', () => editor.reveal());
    status.className = 'status bad';
    status.textContent = `Policy invalid: ${field}`;
    $('policy-sha').textContent = '';
    renderRoutes([]);
    markStale('Fix the policy to run the sample: Envoy would refuse to load it (every request gets 500).');
    return false;
  }
  editor.mark(null);
  box.hidden = true;
  state.policy = Policy.parse(text);
  status.className = 'status ok';
  status.textContent = `Policy valid · ${check.routes.length} route${check.routes.length === 1 ? '' : 's'}`;
  $('policy-sha').textContent = `sha256 ${check.sha256.slice(0, 12)}…`;
  renderRoutes(check.routes);
  return true;
}

function renderRoutes(routes) {
  const select = $('route');
  const previous = select.value;
  select.innerHTML =
    '<option value="">the route Envoy matches</option>' +
    routes.map((r) => `<option value="${escapeHtml(r.name)}">${escapeHtml(r.name)}</option>`).join('');
  if (routes.some((r) => r.name === previous)) select.value = previous;
  $('routes').innerHTML = routes
    .map((r) => {
      const tags = [
        r.kill_switch && '<span class="tag bad">kill switch</span>',
        r.no_store && '<span class="tag">no-store</span>',
        r.request && `<span class="tag ${r.request}">request: ${r.request}</span>`,
        r.response && `<span class="tag ${r.response}">response: ${r.response}</span>`,
      ].filter(Boolean);
      return `<li><strong>${escapeHtml(r.name)}</strong> ${tags.join(' ') || '<span class="muted">no controls</span>'}</li>`;
    })
    .join('');
}

// ---- keys -----------------------------------------------------------------

function loadKeyring() {
  const err = $('key-error');
  state.keyring?.free();
  state.keyring = null;
  const text = $('keyring').value.trim();
  if (!text) {
    err.hidden = false;
    err.textContent = 'No keyring: routes with field rules fail closed, as in Envoy without its keys.';
    return;
  }
  try {
    state.keyring = Keyring.parse(text);
    err.hidden = true;
  } catch (e) {
    err.hidden = false;
    err.textContent = e.message;
  }
}

function newKeyring() {
  $('keyring').value = generateKeyring(['k1']);
  loadKeyring();
}

// ---- samples ----------------------------------------------------------------

function pickSample(name) {
  const s = state.samples[name];
  if (!s) return;
  $('path').value = s.path;
  $('method').value = direction() === 'request' ? 'POST' : 'GET';
  $('body').value = s.body;
  updateBodySize();
}

function updateBodySize() {
  $('body-size').textContent = bytes(new TextEncoder().encode($('body').value).length);
}

function sample(overrides = {}) {
  return {
    method: $('method').value,
    path: $('path').value,
    host: 'orders.example.internal',
    route: $('route').value || undefined,
    direction: direction(),
    action: $('action').value || undefined,
    request_headers: parseHeaders($('request-headers').value),
    response_headers: parseHeaders($('response-headers').value),
    body: $('body').value,
    client: '203.0.113.7:50412',
    time_unix_ms: Date.now(),
    ...overrides,
  };
}

// ---- run ------------------------------------------------------------------

function run() {
  if (!state.policy) return;
  const input = sample();
  let ex;
  try {
    ex = state.policy.simulate(input, { keyring: state.keyring ?? undefined, logKey: $('log-key').value.trim() || undefined });
  } catch (e) {
    showProblem(e);
    return;
  }
  state.last = { ex, input, opened: null };
  render();
}

/** Keeps the last result visible but dimmed, with why it is out of date. */
function markStale(why) {
  document.querySelector('.result').classList.add('stale');
  $('outcome').className = 'outcome neutral';
  $('outcome').innerHTML = `<strong>Not run</strong><span>${escapeHtml(why)}</span>`;
  $('open-again').disabled = true;
}

function showProblem(e) {
  $('outcome').className = 'outcome bad';
  $('outcome').innerHTML = `<strong>Cannot run this sample</strong> · ${escapeHtml(e.message)}`;
  $('out-body').textContent = '';
  $('open-again').disabled = true;
}

/** Runs the result through the same route with the opposite action. */
function openAgain() {
  const { ex, input } = state.last ?? {};
  if (!ex?.body || !ex.route || !state.keyring) return;
  let opened;
  try {
    opened = state.policy.protect(state.keyring, {
      route: ex.route,
      direction: ex.direction,
      action: ex.action === 'encrypt' ? 'decrypt' : 'encrypt',
      body: ex.body,
    });
  } catch (e) {
    state.last.opened = { error: e };
    render();
    return;
  }
  state.last.opened = { body: opened.body, same: opened.body === input.body, fields: opened.fields, action: opened.action };
  render();
}

const ENVELOPE = /"(dpg1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)(\.[A-Za-z0-9_-]+)?)"/g;

function markEnvelopes(text, full) {
  let n = 0;
  let html = '';
  let last = 0;
  for (const m of text.matchAll(ENVELOPE)) {
    const [whole, env, key, payload, index] = m;
    const shown = full ? env : `${payload.slice(0, 12)}…${index ? ' · index' : ''}`;
    html +=
      escapeHtml(text.slice(last, m.index)) +
      `"<mark class="env" title="envelope · key ${escapeHtml(key)}${index ? ' · blind index' : ''} · ${env.length} characters">` +
      `<span class="key">${escapeHtml(key)}</span>${escapeHtml(shown)}</mark>"`;
    last = m.index + whole.length;
    n++;
  }
  return { html: html + escapeHtml(text.slice(last)), n };
}

/**
 * The opened body with the restored values marked. The rewrite keeps every
 * byte outside the fields, so the text between two envelopes of the sealed
 * body is found unchanged in the opened one.
 */
function markOpened(sealed, opened) {
  const parts = sealed.split(ENVELOPE_SPLIT);
  let html = '';
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    const seg = parts[i];
    if (opened.startsWith(seg, at) === false) return escapeHtml(opened);
    html += escapeHtml(seg);
    at += seg.length;
    if (i + 1 < parts.length) {
      const next = parts[i + 1];
      const end = next ? opened.indexOf(next, at) : opened.length;
      if (end < at) return escapeHtml(opened);
      html += `<mark class="opened">${escapeHtml(opened.slice(at, end))}</mark>`;
      at = end;
    }
  }
  return html;
}

const ENVELOPE_SPLIT = /"dpg1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?"/;

function render() {
  const { ex, input, opened } = state.last;
  document.querySelector('.result').classList.remove('stale');
  const outcome = $('outcome');
  const done = ex.action === 'encrypt' ? 'encrypted' : 'decrypted';
  const notes = (ex.notes ?? []).map((n) => `<li>${escapeHtml(n)}</li>`).join('');
  if (ex.outcome === 'refused') {
    outcome.className = 'outcome bad';
    outcome.innerHTML =
      `<strong>Refused · ${ex.reply.status} ${escapeHtml(ex.reply.code)}</strong>` +
      `<span>route ${escapeHtml(ex.route ?? ex.matched_route ?? '')} · ${ex.direction}</span>` +
      `<div class="reply">The client gets <code>${escapeHtml(ex.reply.body)}</code>; nothing is forwarded.</div>`;
  } else if (ex.outcome === 'unprotected') {
    outcome.className = 'outcome neutral';
    outcome.innerHTML = `<strong>Unprotected</strong><span>no route matches ${escapeHtml(input.method)} ${escapeHtml(input.path)}: the filter lets it pass untouched</span>`;
  } else {
    outcome.className = 'outcome ok';
    const what = ex.action ? `${ex.fields} field${ex.fields === 1 ? '' : 's'} ${done}` : 'body untouched';
    const set = [...ex.request_headers_set, ...ex.response_headers].map(([k, v]) => `${k}: ${v}`);
    outcome.innerHTML = `<strong>Forwarded · ${what}</strong><span>route ${escapeHtml(ex.route)} · ${ex.direction}${set.length ? ' · sets ' + escapeHtml(set.join(', ')) : ''}</span>`;
  }
  if (notes) outcome.innerHTML += `<ul class="notes">${notes}</ul>`;

  // Body.
  const full = $('full-envelopes').checked;
  const check = $('body-check');
  const shown = opened?.body ?? ex.body ?? (ex.reply ? ex.reply.body : '');
  const marked = markEnvelopes(shown, full);
  $('out-body').innerHTML =
    opened?.body && opened.action === 'decrypt' ? markOpened(ex.body, opened.body) : marked.html;
  $('out-body').dataset.envelopes = String(marked.n);
  if (opened?.error) {
    check.className = 'check bad';
    check.textContent = `opening again failed: ${opened.error.code}`;
  } else if (opened) {
    check.className = opened.same ? 'check ok' : 'check bad';
    check.textContent = `${opened.fields} envelope${opened.fields === 1 ? '' : 's'} ${opened.action === 'decrypt' ? 'opened' : 'sealed'} again · ${opened.same ? 'identical to the sample, byte for byte' : 'differs from the sample'}`;
  } else {
    check.className = 'check';
    check.textContent = marked.n ? `${marked.n} envelope${marked.n === 1 ? '' : 's'} marked` : '';
  }
  $('open-again').disabled = !(ex.body && ex.route && ex.action && ex.changed && state.keyring);
  $('open-again').textContent = ex.action === 'decrypt' ? 'Seal the fields again' : 'Open the envelopes again';

  // Access record.
  const note = $('record-note');
  if (ex.record) {
    const record = JSON.parse(ex.record);
    $('out-record').innerHTML = highlightJson(JSON.stringify(record, null, 2));
    $('out-record-line').textContent = ex.record;
    note.textContent = ex.sealed
      ? 'Scrubbed and sealed into the log chain (prev/mac): dpp-guard verify-log checks it with the log key.'
      : 'Scrubbed; not sealed: without a log key there is no MAC chain and PII is replaced by placeholders, not pseudonyms.';
  } else {
    $('out-record').textContent = '';
    $('out-record-line').textContent = '';
    note.textContent = 'No record: logging.access_records leaves this request out.';
  }

  // Events.
  const events = ex.events.map((line) => JSON.parse(line.replace(/^dpp_event /, '')));
  $('event-count').textContent = String(events.length);
  $('out-events').innerHTML = events.length
    ? events
        .map(
          (e) =>
            `<li class="event sev-${escapeHtml(e.severity)}"><div><span class="sev">${escapeHtml(e.severity)}</span> <strong>${escapeHtml(e.event)}</strong> <span class="muted">${escapeHtml(e.category)}</span></div>` +
            `<div class="detail">${escapeHtml(e.detail ?? '')}</div><code class="line">dpp_event ${escapeHtml(JSON.stringify(e))}</code></li>`,
        )
        .join('')
    : '<li class="none muted">No security event for this exchange.</li>';
}

function highlightJson(text) {
  return escapeHtml(text).replace(
    /(&quot;|")((?:[^"\\]|\\.)*?)\1(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g,
    (m, q, s, colon, lit, num) => {
      if (colon) return `<span class="k">"${s}"</span>${colon}`;
      if (q) return `<span class="s">"${s}"</span>`;
      if (lit) return `<span class="l">${lit}</span>`;
      return `<span class="n">${num}</span>`;
    },
  );
}

// ---- tabs -----------------------------------------------------------------

const TABS = ['body', 'record', 'events'];
function selectTab(name, focus = false) {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`pane-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
}

// ---- start ----------------------------------------------------------------

async function start() {
  const [samples, policyText] = await Promise.all([
    fetch('/samples.json').then((r) => r.json()),
    fetch('/default-policy.json').then((r) => r.text()),
  ]);
  state.samples = samples;
  state.defaultPolicy = policyText;
  $('sample-pick').innerHTML =
    Object.keys(samples)
      .map((n) => `<option value="${n}">${n}</option>`)
      .join('') + '<option value="">(your own)</option>';
  $('sample-pick').value = 'getOrderBuyerInfo';
  $('request-headers').value = `content-type: application/json\nx-request-id: ${uuid()}`;
  $('response-headers').value = 'content-type: application/json';
  // Two-space JSON keeps every line short enough for the editor's width.
  editor.value = pretty(policyText);
  newKeyring();
  pickSample('getOrderBuyerInfo');

  $('sample-pick').addEventListener('change', (e) => {
    pickSample(e.target.value);
    run();
  });
  for (const id of ['route', 'action', 'method', 'path', 'request-headers', 'response-headers', 'log-key']) {
    $(id).addEventListener('input', () => schedule(run));
  }
  $('body').addEventListener('input', () => {
    updateBodySize();
    $('sample-pick').value = '';
    schedule(run);
  });
  for (const radio of document.querySelectorAll('input[name=direction]')) {
    radio.addEventListener('change', () => {
      $('method').value = direction() === 'request' ? 'POST' : 'GET';
      run();
    });
  }
  $('keyring').addEventListener('input', () => {
    loadKeyring();
    schedule(run);
  });
  $('gen-keys').addEventListener('click', () => {
    newKeyring();
    run();
  });
  $('show-keys').addEventListener('click', (e) => {
    const show = $('keyring').type === 'password';
    for (const id of ['keyring', 'log-key']) $(id).type = show ? 'text' : 'password';
    e.target.setAttribute('aria-pressed', String(show));
    e.target.textContent = show ? 'Hide' : 'Show';
  });
  $('gen-log-key').addEventListener('click', () => {
    $('log-key').value = generateLogKey();
    run();
  });
  $('clear-log-key').addEventListener('click', () => {
    $('log-key').value = '';
    run();
  });
  $('seal-body').addEventListener('click', sealBodyFirst);
  $('format-policy').addEventListener('click', () => {
    try {
      JSON.parse(editor.value);
      editor.value = pretty(editor.value);
      checkAndRun();
    } catch {
      checkPolicyText();
      editor.reveal();
    }
  });
  $('reset-policy').addEventListener('click', () => {
    editor.value = pretty(state.defaultPolicy);
    checkAndRun();
  });
  $('run').addEventListener('click', checkAndRun);
  $('open-again').addEventListener('click', openAgain);
  $('full-envelopes').addEventListener('change', () => state.last && render());

  for (const [i, t] of TABS.entries()) {
    $(`tab-${t}`).addEventListener('click', () => selectTab(t));
    $(`tab-${t}`).addEventListener('keydown', (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) selectTab(TABS[(i + step + TABS.length) % TABS.length], true);
    });
  }
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      e.preventDefault();
      checkAndRun();
    } else if (e.altKey && ['1', '2', '3'].includes(e.key)) {
      e.preventDefault();
      selectTab(TABS[Number(e.key) - 1], true);
    }
  });

  checkAndRun();
  document.body.dataset.ready = 'true';
}

/**
 * Replaces the body by the chosen route's fields sealed for this direction,
 * as the other hop would send it: what a decrypt rule expects to receive.
 */
function sealBodyFirst() {
  if (!state.policy || !state.keyring) return;
  const ex = state.policy.simulate(sample({ action: 'encrypt' }), { keyring: state.keyring });
  if (ex.body && ex.changed) {
    $('body').value = ex.body;
    $('sample-pick').value = '';
    updateBodySize();
    run();
  } else {
    showProblem(new Error(ex.reply ? `sealing was refused: ${ex.reply.code}` : 'the route selects no field of this body'));
  }
}

start().catch((e) => {
  $('policy-status').className = 'status bad';
  $('policy-status').textContent = `The playground could not start: ${e.message}`;
});
