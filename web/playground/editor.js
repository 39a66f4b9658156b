// A plain <textarea> code editor with line numbers and one highlighted
// range (the field a policy error names), and a locator from a policy
// field path (`routes[0].match.path.regex`) to its place in the text.
// Presentation only: what is wrong is decided by dpp-guard's core.

/** Map of field path -> {keyStart, keyEnd, start, end} for a JSON text, tolerant of errors. */
export function fieldPositions(text) {
  const out = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return [start, Math.min(i, text.length)];
  };
  const value = (path, keyStart, keyEnd) => {
    ws();
    const start = i;
    const c = text[i];
    if (c === '{') {
      i++;
      for (;;) {
        ws();
        if (text[i] !== '"') break;
        const [ks, ke] = string();
        let name;
        try {
          name = JSON.parse(text.slice(ks, ke));
        } catch {
          name = text.slice(ks + 1, ke - 1);
        }
        ws();
        if (text[i] !== ':') break;
        i++;
        value(path ? `${path}.${name}` : name, ks, ke);
        ws();
        if (text[i] !== ',') break;
        i++;
      }
      if (text[i] === '}') i++;
    } else if (c === '[') {
      i++;
      for (let n = 0; ; n++) {
        ws();
        if (text[i] === ']' || i >= text.length) break;
        const at = i;
        value(`${path}[${n}]`, at, at);
        ws();
        if (text[i] !== ',') break;
        i++;
      }
      if (text[i] === ']') i++;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && /[^\s,\]}]/.test(text[i])) i++;
    }
    if (i === start) i++; // never stall on a stray character
    out.set(path, { keyStart: keyStart ?? start, keyEnd: keyEnd ?? start, start, end: i });
  };
  value('', undefined, undefined);
  return out;
}

/** Segments of a field path: `routes[0].match` -> ['routes', '[0]', 'match']. */
function segments(path) {
  return path.match(/\[\d+\]|[^.[\]]+/g) ?? [];
}

function join(segs) {
  return segs.reduce((p, s) => (s.startsWith('[') ? p + s : p ? `${p}.${s}` : s), '');
}

/**
 * The text range to mark for a policy error: the line and column serde
 * reports for syntax errors, else the named field (its key and value), else
 * its nearest ancestor present in the text.
 */
export function errorRange(text, field, problem) {
  const at = /at line (\d+) column (\d+)/.exec(problem ?? '');
  if (at) {
    const lines = text.split('\n');
    const line = Math.min(Number(at[1]), lines.length) - 1;
    const start = lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
    // Only syntax errors are reported by position; field errors (unknown
    // field, wrong type) name a field that the text has: prefer that.
    const pos = fieldPositions(text);
    if (field && field !== '.' && pos.has(field)) return fieldRange(pos.get(field), text);
    return { start, end: start + lines[line].length, line };
  }
  const pos = fieldPositions(text);
  const segs = segments(field ?? '');
  for (let n = segs.length; n > 0; n--) {
    const p = pos.get(join(segs.slice(0, n)));
    if (p) return fieldRange(p, text);
  }
  return null;
}

function fieldRange(p, text) {
  // A whole object would mark half the document: mark its key instead.
  const multiline = text.slice(p.start, p.end).includes('\n');
  const start = p.keyStart;
  const end = multiline ? p.keyEnd : p.end;
  return { start, end: Math.max(end, start + 1), line: text.slice(0, start).split('\n').length - 1 };
}

const escapeHtml = (s) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);

/** Wires a textarea with a line-number gutter and a highlight backdrop. */
export function codeEditor(root, { onInput }) {
  const textarea = root.querySelector('textarea');
  const backdrop = root.querySelector('.backdrop');
  const gutter = root.querySelector('.gutter');
  let mark = null;

  const render = () => {
    const text = textarea.value;
    const lines = text.split('\n').length;
    const errorLine = mark ? mark.line : -1;
    gutter.innerHTML = Array.from(
      { length: lines },
      (_, n) => `<span${n === errorLine ? ' class="bad"' : ''}>${n + 1}</span>`,
    ).join('');
    if (mark && mark.end <= text.length) {
      backdrop.innerHTML =
        escapeHtml(text.slice(0, mark.start)) +
        `<mark>${escapeHtml(text.slice(mark.start, mark.end))}</mark>` +
        escapeHtml(text.slice(mark.end)) +
        '\n';
    } else {
      backdrop.textContent = text + '\n';
    }
    sync();
  };
  const sync = () => {
    backdrop.scrollTop = textarea.scrollTop;
    backdrop.scrollLeft = textarea.scrollLeft;
    gutter.scrollTop = textarea.scrollTop;
  };

  textarea.addEventListener('scroll', sync);
  textarea.addEventListener('input', () => {
    render();
    onInput?.();
  });
  textarea.addEventListener('keydown', (e) => {
    // Tab indents; Escape first releases the keyboard (then Tab moves on).
    if (e.key === 'Tab' && !e.shiftKey && !textarea.dataset.released) {
      e.preventDefault();
      textarea.setRangeText('  ', textarea.selectionStart, textarea.selectionEnd, 'end');
      textarea.dispatchEvent(new Event('input'));
    } else if (e.key === 'Escape') {
      textarea.dataset.released = '1';
    }
  });
  textarea.addEventListener('blur', () => delete textarea.dataset.released);
  textarea.addEventListener('focus', () => delete textarea.dataset.released);

  return {
    get value() {
      return textarea.value;
    },
    set value(v) {
      textarea.value = v;
      render();
    },
    mark(range) {
      mark = range;
      render();
    },
    /** Moves the caret to the marked range and scrolls it into view. */
    reveal() {
      if (!mark) return;
      textarea.focus();
      textarea.setSelectionRange(mark.start, mark.end);
      const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
      textarea.scrollTop = Math.max(0, (mark.line - 3) * lineHeight);
      sync();
    },
  };
}
