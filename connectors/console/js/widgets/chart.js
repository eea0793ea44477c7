// Per-minute bar charts as SVG, scaled to the data (no library, no inline style).

import { h, s, num, shortTime, localText } from '../dom.js';

/**
 * points: [{at: ISO minute, value}]; barClass colors the bars ('bar-lead', 'bar-ok', 'bar-bad').
 */
export function barChart({ title, total, points, barClass, id }) {
  const n = Math.max(points.length, 1);
  const max = Math.max(0, ...points.map((p) => p.value));
  const W = n * 10;
  const H = 100;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    preserveAspectRatio: 'none',
    role: 'img',
    'aria-label': `${title}: ${num(total)} in all, at most ${num(max)} in one minute`,
  });
  for (const y of [25, 50, 75]) svg.append(s('line', { class: 'grid', x1: 0, x2: W, y1: y, y2: y }));
  points.forEach((p, i) => {
    if (!p.value) return;
    const bh = max ? Math.max(1.5, (p.value / max) * (H - 4)) : 0;
    svg.append(s('rect', { class: barClass, x: i * 10 + 1, y: H - bh, width: 8, height: bh },
      s('title', null, `${localText(p.at)}: ${p.value}`)));
  });
  const first = points[0];
  const last = points[points.length - 1];
  return h('section', { class: 'chart-card chart', 'aria-labelledby': `${id}-h`, dataset: { chart: id, points: String(points.length) } },
    h('h2', { id: `${id}-h` }, title),
    h('p', { class: 'chart-total', dataset: { total: String(total) } }, num(total)),
    h('div', { class: 'chart-max' }, `peak ${num(max)} / min`),
    h('div', { class: 'chart-frame' }, svg),
    h('div', { class: 'chart-axis' },
      h('span', null, first ? shortTime(first.at) : ''),
      h('span', null, last ? shortTime(last.at) : '')));
}

/** A stacked bar of parts [{label, value, cls}] out of `whole`, with a text legend. */
export function stackedBar(parts, whole) {
  const total = Math.max(whole || 0, parts.reduce((a, p) => a + (p.value || 0), 0));
  const bar = h('div', { class: 'stacked', role: 'img',
    'aria-label': parts.map((p) => `${p.label} ${p.value}`).join(', ') });
  for (const p of parts) {
    if (!p.value || !total) continue;
    const seg = h('span', { class: `seg-${p.cls}`, title: `${p.label}: ${p.value}` });
    seg.style.width = `${(p.value / total) * 100}%`;
    bar.append(seg);
  }
  const legend = h('div', { class: 'legend' },
    parts.map((p) => h('span', { class: ['key', p.cls], dataset: { part: p.label } }, `${p.label} ${num(p.value)}`)));
  return h('div', { class: 'stacked-block' }, bar, legend);
}
