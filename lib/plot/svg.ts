/**
 * Minimal SVG charts (no dependency): grouped bar charts, line charts and heat-maps, written with the atomic writer.
 * Enough for benchmark results that people would rather look at than read.
 */
import { writeFile } from '../io/writer.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'];

export interface BarChart {
  title: string;
  yLabel: string;
  groups: string[]; // x categories
  series: Array<{ name: string; values: Array<number | null> }>; // one bar per series in each group
}

export function barChartSvg(c: BarChart): string {
  const W = 900,
    H = 460,
    L = 70,
    R = 170,
    T = 50,
    B = 70;
  const max = Math.max(1e-12, ...c.series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  const gw = (W - L - R) / c.groups.length;
  const bw = (gw * 0.8) / c.series.length;
  const y = (v: number) => T + (H - T - B) * (1 - v / max);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(c.title)}</text>`,
    `<text x="16" y="${(H - B + T) / 2}" transform="rotate(-90 16 ${(H - B + T) / 2})" text-anchor="middle">${esc(c.yLabel)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    out.push(
      `<line x1="${L - 4}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#ddd"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toPrecision(3)}</text>`,
    );
  }
  c.groups.forEach((g, gi) => {
    const x0 = L + gi * gw + gw * 0.1;
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined) return;
      out.push(
        `<rect x="${x0 + si * bw}" y="${y(v)}" width="${bw - 1}" height="${H - B - y(v)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${s.name} ${g}: ${v.toPrecision(4)}`)}</title></rect>`,
      );
    });
    out.push(`<text x="${L + gi * gw + gw / 2}" y="${H - B + 18}" text-anchor="middle">${esc(g)}</text>`);
  });
  c.series.forEach((s, si) =>
    out.push(
      `<rect x="${W - R + 15}" y="${T + si * 20}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/><text x="${W - R + 32}" y="${T + si * 20 + 10}">${esc(s.name)}</text>`,
    ),
  );
  out.push('</svg>');
  return out.join('\n');
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Array<{ name: string; points: Array<[number, number]> }>;
}

export function lineChartSvg(c: LineChart): string {
  const W = 900,
    H = 460,
    L = 70,
    R = 190,
    T = 50,
    B = 60;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = c.series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const y1 = Math.max(...ys, 1e-12) * 1.05;
  const y0 = Math.min(0, ...ys);
  const px = (v: number) => L + ((W - L - R) * (v - x0)) / Math.max(x1 - x0, 1e-12);
  const py = (v: number) => T + (H - T - B) * (1 - (v - y0) / (y1 - y0));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(c.title)}</text>`,
    `<text x="${(L + W - R) / 2}" y="${H - 15}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text x="16" y="${(H - B + T) / 2}" transform="rotate(-90 16 ${(H - B + T) / 2})" text-anchor="middle">${esc(c.yLabel)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    out.push(
      `<line x1="${L - 4}" y1="${py(v)}" x2="${W - R}" y2="${py(v)}" stroke="#ddd"/><text x="${L - 6}" y="${py(v) + 4}" text-anchor="end">${v.toPrecision(3)}</text>`,
    );
  }
  const uniq = [...new Set(xs)].sort((a, b) => a - b);
  const ticks = uniq.length <= 12 ? uniq : Array.from({ length: 6 }, (_, i) => Math.round(x0 + ((x1 - x0) * i) / 5));
  for (const x of ticks) out.push(`<text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`);
  c.series.forEach((s, si) => {
    const col = COLORS[si % COLORS.length];
    out.push(
      `<polyline fill="none" stroke="${col}" stroke-width="2" points="${s.points.map(([x, yv]) => `${px(x)},${py(yv)}`).join(' ')}"/>`,
    );
    for (const [x, yv] of s.points)
      out.push(
        `<circle cx="${px(x)}" cy="${py(yv)}" r="3" fill="${col}"><title>${esc(`${s.name}: ${x}, ${yv.toPrecision(4)}`)}</title></circle>`,
      );
    out.push(
      `<rect x="${W - R + 15}" y="${T + si * 20}" width="12" height="12" fill="${col}"/><text x="${W - R + 32}" y="${T + si * 20 + 10}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

interface HeatMap {
  title: string;
  xLabel: string;
  yLabel: string;
  /** column labels (x) and row labels (y, drawn top to bottom) shared by every panel */
  cols: string[];
  rows: string[];
  /** one panel per model, side by side: values[row][col] in [0, 1] (null: not measured) */
  panels: Array<{ name: string; values: Array<Array<number | null>> }>;
}

/** Heat-maps of values in [0, 1] (white 0 → blue 1), one panel per entry, each cell labelled with its percentage. */
function heatMapSvg(c: HeatMap): string {
  const cell = 44,
    L = 90,
    T = 60,
    B = 50,
    gap = 30;
  const pw = c.cols.length * cell;
  const W = L + c.panels.length * (pw + gap) + 10;
  const H = T + c.rows.length * cell + B;
  const shade = (v: number) => {
    const t = Math.max(0, Math.min(1, v));
    const ch = (a: number, b: number) => Math.round(a + (b - a) * t);
    return `rgb(${ch(255, 33)},${ch(255, 102)},${ch(255, 172)})`;
  };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="16">${esc(c.title)}</text>`,
    `<text x="14" y="${T + (c.rows.length * cell) / 2}" transform="rotate(-90 14 ${T + (c.rows.length * cell) / 2})" text-anchor="middle">${esc(c.yLabel)}</text>`,
  ];
  c.rows.forEach((r, ri) =>
    out.push(`<text x="${L - 6}" y="${T + ri * cell + cell / 2 + 4}" text-anchor="end">${esc(r)}</text>`),
  );
  c.panels.forEach((p, pi) => {
    const x0 = L + pi * (pw + gap);
    out.push(`<text x="${x0 + pw / 2}" y="${T - 22}" text-anchor="middle" font-size="13">${esc(p.name)}</text>`);
    c.cols.forEach((col, ci) =>
      out.push(`<text x="${x0 + ci * cell + cell / 2}" y="${T - 6}" text-anchor="middle">${esc(col)}</text>`),
    );
    c.rows.forEach((r, ri) =>
      c.cols.forEach((col, ci) => {
        const v = p.values[ri]?.[ci] ?? null;
        const x = x0 + ci * cell;
        const y = T + ri * cell;
        const label = v === null ? '–' : `${Math.round(100 * v)}`;
        out.push(
          `<rect x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${v === null ? '#eee' : shade(v)}"><title>${esc(`${p.name} ${r} ${col}: ${label}`)}</title></rect>`,
          `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" fill="${v !== null && v > 0.6 ? 'white' : 'black'}">${label}</text>`,
        );
      }),
    );
    out.push(`<text x="${x0 + pw / 2}" y="${H - 18}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** The passkey test's heat-maps (`mil passkey`, `npm run paper`): accuracy per (length, depth), a panel per model. */
export function passkeyHeatMapSvg(p: {
  context: number;
  trials: number;
  multiples: number[];
  lengths: number[];
  depths: number[];
  models: Array<{ name: string; cells: Array<{ length: number; depth: number; accuracy: number }> }>;
}): string {
  return heatMapSvg({
    title: `Passkey retrieval: accuracy (%), ${p.trials} trial(s) per cell (training context ${p.context})`,
    xLabel: 'needle depth',
    yLabel: 'prompt length (tokens)',
    cols: p.depths.map((d) => `${Math.round(100 * d)}%`),
    rows: p.lengths.map((l, i) => `${l} (${p.multiples[i]}×)`),
    panels: p.models.map((m) => ({
      name: m.name,
      values: p.lengths.map((l) =>
        p.depths.map((d) => m.cells.find((c) => c.length === l && c.depth === d)?.accuracy ?? null),
      ),
    })),
  });
}

export function writeSvg(path: string, svg: string): void {
  writeFile(path, svg + '\n');
}
