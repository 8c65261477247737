// Usage: the plan with used and remaining tokens, a chart over the windows (inline SVG), and
// the window's tokens per model and per member.

import * as api from './api.js';
import { h, svg, when } from './dom.js';

const WINDOWS = ['24h', '7d', '30d'];

/** A horizontal bar chart of `rows` ([label, value]) as inline SVG, with a text table beside it. */
function bars(title, rows) {
  const max = Math.max(1, ...rows.map(([, v]) => v));
  const lineHeight = 28;
  const chart = svg('svg', { viewBox: `0 0 400 ${rows.length * lineHeight + 4}`, role: 'img', 'aria-label': title, class: 'chart' },
    rows.map(([label, v], i) => [
      svg('rect', { x: 130, y: i * lineHeight + 4, width: Math.max(1, Math.round((v / max) * 200)), height: 18, class: 'bar' }),
      svg('text', { x: 0, y: i * lineHeight + 17, class: 'label' }, label.length > 18 ? `${label.slice(0, 17)}…` : label),
      svg('text', { x: 336, y: i * lineHeight + 17, class: 'value' }, String(v)),
    ]));
  return h('figure', {}, h('figcaption', {}, title), chart);
}

function table(caption, head, rows) {
  return h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, String(c)))))
      : h('tr', {}, h('td', { colspan: head.length }, 'Nothing used in this window.'))));
}

export async function view(window = sessionStorage.getItem('quire.window') || '30d') {
  const [plan, ...reports] = await Promise.all([
    api.get('/billing/plan'),
    ...WINDOWS.map((w) => api.get(`/usage?window=${w}`)),
  ]);
  const report = reports[WINDOWS.indexOf(window)] || reports[2];
  const limit = plan.monthly_token_limit;
  const meter = limit ? h('meter', { min: 0, max: limit, value: plan.used, 'aria-label': 'Tokens used this month' }) : null;
  const windowPicker = h('div', { class: 'row', role: 'group', 'aria-label': 'Window' }, WINDOWS.map((w) =>
    h('button', { type: 'button', class: w === report.window ? '' : 'secondary', 'aria-pressed': String(w === report.window), onclick: async (e) => {
      sessionStorage.setItem('quire.window', w);
      const el = e.target.closest('.usage');
      el.replaceWith(await view(w));
    } }, w)));
  return h('div', { class: 'usage' },
    h('h1', {}, 'Usage'),
    h('section', { class: 'card', id: 'plan' }, h('h2', {}, `Plan: ${plan.plan}`),
      h('p', {}, `${plan.used} tokens used`, limit ? ` of ${limit}; ${plan.remaining} remaining` : ' (no monthly limit)',
        `; resets ${when(plan.resets_at)}.`),
      meter),
    h('section', { class: 'card' }, h('h2', {}, 'Tokens over the windows'),
      bars('Total tokens used in the last 24 hours, 7 days and 30 days',
        reports.map((r, i) => [WINDOWS[i], r.totals.total_tokens]))),
    h('section', { class: 'card' }, h('h2', {}, `The last ${report.window}`), windowPicker,
      h('p', {}, `${report.totals.total_tokens} tokens in ${report.totals.requests} requests.`),
      bars('Tokens per model', report.by_model.map((m) => [m.model, m.total_tokens])),
      h('div', { class: 'scroll' }, table('Per model', ['Model', 'Kind', 'Prompt', 'Completion', 'Total'],
        report.by_model.map((m) => [m.model, m.kind || '', m.prompt_tokens, m.completion_tokens, m.total_tokens]))),
      h('div', { class: 'scroll' }, table('Per member (or API key)', ['Member', 'Prompt', 'Completion', 'Total'],
        report.by_user.map((u) => [u.user_id || (u.api_key_id ? `key ${u.api_key_id}` : 'background work (ingestion)'), u.prompt_tokens, u.completion_tokens, u.total_tokens])))));
}
