// Text rendering of values and tables, in the style of Daft/Polars `show()`:
//
//   ┌───────┬─────────┬───────┐
//   │ id    ┆ x       ┆ name  │
//   │ int64 ┆ float64 ┆ utf8  │
//   ╞═══════╪═════════╪═══════╡
//   │     1 ┆     1.5 ┆ alice │
//   │     2 ┆    null ┆ bob   │
//   └───────┴─────────┴───────┘
//   (Showing first 2 of 10 rows)
//
// Numbers are right-aligned, everything else (and the two header rows) left-aligned. Nulls print
// as `null`, bigints without `n`, floats always with a decimal point or exponent (`2.0`), dates as
// YYYY-MM-DD, timestamps as ISO 8601 in UTC (`Z` suffix only when the column has a time zone),
// binary as b"..." with \xNN escapes, lists and structs compactly (`[1, 2]`, `{a: 1, b: "x"}`).
// Cells wider than `maxColWidth` display columns are cut and end in '…'; CJK and emoji count as two
// columns so that tables stay aligned in terminals.
import type { JsValue } from './convert/index.ts';
import type { DataType, DataTypeJSON, Schema } from './datatypes.ts';

export interface FormatTableOptions {
  /**
   * Total rows of the source. A number greater than rows.length adds "(Showing first N of M rows)";
   * null means unknown with more possibly remaining and adds "(Showing first N rows)"; undefined
   * (default) means `rows` is everything: no footer.
   */
  totalRows?: number | null;
  /** Widest cell, in display columns, before truncation with '…' (default 30, minimum 2). */
  maxColWidth?: number;
}

const NUMERIC = new Set<DataTypeJSON['kind']>(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float32', 'float64']);

export function formatTable(schema: Schema, rows: readonly Record<string, JsValue>[], opts: FormatTableOptions = {}): string {
  const maxW = Math.max(2, Math.floor(opts.maxColWidth ?? 30));
  const fields = schema.fields;
  const footer = footerLine(rows.length, opts.totalRows);
  if (fields.length === 0) return `(no columns)${footer ? `\n${footer}` : ''}`;

  const names = fields.map((f) => truncate(oneLine(f.name), maxW));
  const types = fields.map((f) => truncate(f.type.toString(), maxW));
  const cells = rows.map((r) =>
    fields.map((f) => {
      const v = Object.hasOwn(r, f.name) ? r[f.name] : null;
      return truncate(formatValue(v ?? null, f.type), maxW);
    }),
  );
  const right = fields.map((f) => NUMERIC.has(f.type.kind));
  const widths = fields.map((_, j) => {
    let w = Math.max(displayWidth(names[j]!), displayWidth(types[j]!));
    for (const row of cells) w = Math.max(w, displayWidth(row[j]!));
    return w;
  });

  const rule = (l: string, mid: string, r: string, fill: string): string => l + widths.map((w) => fill.repeat(w + 2)).join(mid) + r;
  const line = (vals: readonly string[], align: readonly boolean[] | null): string =>
    `│${vals.map((v, j) => ` ${pad(v, widths[j]!, align !== null && align[j]!)} `).join('┆')}│`;

  const out = [rule('┌', '┬', '┐', '─'), line(names, null), line(types, null)];
  if (cells.length > 0) {
    out.push(rule('╞', '╪', '╡', '═'));
    for (const row of cells) out.push(line(row, right));
  }
  out.push(rule('└', '┴', '┘', '─'));
  if (footer) out.push(footer);
  return out.join('\n');
}

function footerLine(shown: number, total: number | null | undefined): string {
  if (total === null) return `(Showing first ${shown} rows)`;
  if (typeof total === 'number' && total > shown) return `(Showing first ${shown} of ${total} rows)`;
  return '';
}

/** One value as table-cell text (untruncated). A value that does not match `type` is rendered by its JS type. */
export function formatValue(v: JsValue, type: DataType): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return type.kind === 'utf8' || !isNested(type.json) ? oneLine(v) : JSON.stringify(v);
  return render(v, type.json);
}

function isNested(t: DataTypeJSON): boolean {
  return t.kind === 'list' || t.kind === 'fixedSizeList' || t.kind === 'struct';
}

/** Values inside lists/structs: like top-level ones, but strings quoted so that `["a, b"]` stays unambiguous. */
function renderNested(v: JsValue | undefined, t: DataTypeJSON | null): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  return render(v, t);
}

function render(v: Exclude<JsValue, null | string>, t: DataTypeJSON | null): string {
  switch (typeof v) {
    case 'number':
      return t !== null && (t.kind === 'float64' || t.kind === 'float32') ? formatFloat(v, t.kind === 'float32') : String(v);
    case 'bigint':
      return v.toString();
    case 'boolean':
      return v ? 'true' : 'false';
  }
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) return 'Invalid Date';
    if (t?.kind === 'date') return v.toISOString().slice(0, 10);
    const iso = v.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
    if (t?.kind === 'timestamp') {
      const body = t.unit === 's' ? iso.slice(0, -5) : iso.slice(0, -1);
      return t.tz ? `${body}Z` : body;
    }
    return iso;
  }
  if (v instanceof Uint8Array) return formatBytes(v);
  if (Array.isArray(v)) {
    const child = t !== null && (t.kind === 'list' || t.kind === 'fixedSizeList') ? t.child : null;
    return `[${v.map((x) => renderNested(x, child)).join(', ')}]`;
  }
  const fields = t?.kind === 'struct' ? t.fields : null;
  const obj = v as { [k: string]: JsValue };
  const keys = fields ? fields.map((f) => f.name) : Object.keys(obj);
  return `{${keys.map((k, j) => `${structKey(k)}: ${renderNested(obj[k], fields ? fields[j]!.type : null)}`).join(', ')}}`;
}

function structKey(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k);
}

/** Shortest text that reads back to the same float (float32: to the same float32), always float-looking. */
function formatFloat(x: number, single: boolean): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  let s = String(x);
  if (single) {
    for (let p = 1; p <= 9; p++) {
      const c = x.toPrecision(p);
      if (Math.fround(Number(c)) === x) {
        s = String(Number(c));
        break;
      }
    }
  }
  if (Object.is(x, -0)) return '-0.0';
  return /[.eE]/.test(s) || s.includes('Infinity') ? s : `${s}.0`;
}

function formatBytes(b: Uint8Array): string {
  let s = 'b"';
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x22) s += '\\"';
    else if (c === 0x5c) s += '\\\\';
    else if (c === 0x0a) s += '\\n';
    else if (c === 0x0d) s += '\\r';
    else if (c === 0x09) s += '\\t';
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
    if (s.length > 4096) {
      s += '…';
      return s;
    } // cells are truncated anyway; bound the work
  }
  return `${s}"`;
}

/** Control characters would break the grid: show them escaped. */
function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return /[\u0000-\u001f\u007f]/.test(s) ? s.replace(/[\u0000-\u001f\u007f]/g, (c) => CONTROL[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`) : s;
}
const CONTROL: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Terminal columns of one code point: 0 for combining marks, 2 for East Asian wide/fullwidth and emoji. */
function cpWidth(cp: number): number {
  if (cp < 0x300) return 1;
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0x33ff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0xa000 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  )
    return 2;
  return 1;
}

function displayWidth(s: string): number {
  let w = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x300) {
      w++;
      continue;
    }
    const cp = s.codePointAt(i)!;
    if (cp > 0xffff) i++;
    w += cpWidth(cp);
  }
  return w;
}

/** `s` cut to at most `max` display columns, ending in '…' when cut (never splits a surrogate pair). */
function truncate(s: string, max: number): string {
  if (displayWidth(s) <= max) return s;
  let w = 0;
  let end = 0;
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const cw = cpWidth(cp);
    if (w + cw > max - 1) break;
    w += cw;
    i += cp > 0xffff ? 2 : 1;
    end = i;
  }
  return `${s.slice(0, end)}…`;
}

function pad(s: string, width: number, right: boolean): string {
  const fill = ' '.repeat(Math.max(0, width - displayWidth(s)));
  return right ? fill + s : s + fill;
}
