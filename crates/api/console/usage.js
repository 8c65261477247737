// Usage: the plan with used and remaining tokens, the window's tokens over time (the report's
// series, one column per hour or day, inline SVG), and its tokens per model and per member.

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

/** A time of a series bucket: the hour over 24 h, the day otherwise. */
function bucketLabel(start, hourly) {
  const d = new Date(start);
  return hourly ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

/** A column chart of the report's series (one column per bucket, oldest left), inline SVG. */
function overTime(report) {
  const series = report.series || [];
  const hourly = report.window === '24h';
  const max = Math.max(1, ...series.map((p) => p.total_tokens));
  const width = 600; const top = 16; const height = 140; const base = top + height;
  const step = width / Math.max(1, series.length);
  const title = `Tokens per ${hourly ? 'hour' : 'day'} over the last ${report.window}`;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${base + 22}`, role: 'img', 'aria-label': title, class: 'chart series' },
    svg('line', { x1: 0, y1: base, x2: width, y2: base, class: 'axis' }),
    svg('text', { x: 0, y: 11, class: 'label' }, `${max} tokens`),
    series.map((p, i) => {
      const h = Math.round((p.total_tokens / max) * height);
      return svg('rect', { x: Math.round(i * step + 1), y: base - h, width: Math.max(1, Math.round(step - 2)), height: Math.max(h, p.total_tokens ? 1 : 0), class: 'bar point', 'data-start': p.start },
        svg('title', {}, `${bucketLabel(p.start, hourly)}: ${p.total_tokens} tokens (${p.prompt_tokens} prompt, ${p.completion_tokens} completion) in ${p.requests} requests`));
    }),
    series.length ? [
      svg('text', { x: 0, y: base + 16, class: 'label' }, bucketLabel(series[0].start, hourly)),
      svg('text', { x: width, y: base + 16, class: 'label', 'text-anchor': 'end' }, bucketLabel(series[series.length - 1].start, hourly)),
    ] : []);
  return h('figure', {}, h('figcaption', {}, title), chart);
}

function table(caption, head, rows) {
  return h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, String(c)))))
      : h('tr', {}, h('td', { colspan: head.length }, 'Nothing used in this window.'))));
}

export async function view(window = sessionStorage.getItem('quire.window') || '30d') {
  const [plan, report] = await Promise.all([
    api.get('/billing/plan'),
    api.get(`/usage?window=${WINDOWS.includes(window) ? window : '30d'}`),
  ]);
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
    h('section', { class: 'card' }, h('h2', {}, `The last ${report.window}`), windowPicker,
      h('p', {}, `${report.totals.total_tokens} tokens in ${report.totals.requests} requests.`),
      overTime(report),
      bars('Tokens per model', report.by_model.map((m) => [m.model, m.total_tokens])),
      h('div', { class: 'scroll' }, table('Per model', ['Model', 'Kind', 'Prompt', 'Completion', 'Total'],
        report.by_model.map((m) => [m.model, m.kind || '', m.prompt_tokens, m.completion_tokens, m.total_tokens]))),
      h('div', { class: 'scroll' }, table('Per member (or API key)', ['Member', 'Prompt', 'Completion', 'Total'],
        report.by_user.map((u) => [u.user_id || (u.api_key_id ? `key ${u.api_key_id}` : 'background work (ingestion)'), u.prompt_tokens, u.completion_tokens, u.total_tokens])))));
}
