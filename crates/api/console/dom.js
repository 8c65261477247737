// DOM helpers. Every string reaches the page as a text node: nothing here parses HTML, so a
// document name, a quote or an answer can never become markup (docs/console.md, "Safety").

/** Creates `tag` with `attrs` (event listeners for `on…` keys) and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes as they are, strings and numbers as text, arrays flattened. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Removes every child of `el`, then appends `children`. */
export function replace(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return append(el, children);
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes (no text parsing either). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A labelled form field: `<label>` text, then the input (`attrs` go on the input). */
export function field(label, attrs = {}, tag = 'input') {
  const id = attrs.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  const input = h(tag, { ...attrs, id });
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A labelled `<select>` with `options` as `[value, label]` pairs. */
export function select(label, name, options, value) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const sel = h('select', { id, name },
    options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
  return h('div', { class: 'field' }, h('label', { for: id }, label), sel);
}

/** The values of a form's named fields. */
export function values(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else if (el.multiple) out[el.name] = [...el.selectedOptions].map((o) => o.value);
    else out[el.name] = el.value;
  }
  return out;
}

/**
 * A model's answer or a quote as the words it says: the server escapes markup in them
 * (`<` becomes `&lt;`) for Markdown renderers; shown as a text node, the entities are turned
 * back into the characters (never parsed as HTML either way).
 */
export function plain(s) {
  return String(s ?? '').replace(/&(lt|gt|amp|quot|#39);/g, (_, e) => ({ lt: '<', gt: '>', amp: '&', quot: '"', '#39': "'" })[e]);
}

/** A date as local text. */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A byte count as text. */
export function bytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
