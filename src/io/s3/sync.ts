// Synchronous facade (synckit) for the synchronous DataFrame builder: listings, HEAD, footers and
// prefixes. The worker (s3-sync-worker.ts, loaded by URL) runs the async functions; the calling
// thread blocks.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { mapLimit } from '../../concurrency.ts';
import { tsWorkerExecArgv } from '../../runners/ts-worker.ts';
import { fetchParquetTails, knownTail, type TailRequest, type TailResult } from './blob.ts';
import { S3Error, s3Error, s3Settings, s3Stats, type S3Settings, type S3Stats } from './client.ts';
import { globS3 } from './glob.ts';
import {
  getS3ObjectOrNull,
  getS3Range,
  headS3,
  headS3OrNull,
  listS3,
  S3ObjectChangedError,
  type ListOptions,
  type ListResult,
  type S3Object,
} from './objects.ts';

export type SyncOp =
  | { op: 'list'; uri: string; opts: ListOptions }
  | { op: 'listMany'; uris: string[] }
  | { op: 'glob'; uri: string }
  | { op: 'head'; uri: string; orNull: boolean }
  | { op: 'range'; uri: string; start: number; end: number; etag?: string }
  | { op: 'get'; uri: string }
  | { op: 'tails'; items: TailRequest[] };

export type SyncReply =
  | { ok: true; value: unknown; stats: Partial<S3Stats> }
  | { ok: false; error: { message: string; code: string; uri: string; operation: string; name: string }; stats: Partial<S3Stats> };

/** Runs one facade request (in the sync worker). Exported for the worker module only. */
export async function runSyncOp(req: SyncOp, settings: S3Settings): Promise<SyncReply> {
  const before = { ...s3Stats };
  const delta = (): Partial<S3Stats> => {
    const d: Partial<S3Stats> = {};
    for (const k of Object.keys(s3Stats) as (keyof S3Stats)[]) if (s3Stats[k] !== before[k]) d[k] = s3Stats[k] - before[k];
    return d;
  };
  try {
    let value: unknown;
    switch (req.op) {
      case 'list':
        value = await listS3(req.uri, req.opts, settings);
        break;
      case 'listMany':
        value = await listMany(req.uris, settings);
        break;
      case 'glob':
        value = await globS3(req.uri, settings);
        break;
      case 'head':
        value = req.orNull ? await headS3OrNull(req.uri, settings) : await headS3(req.uri, settings);
        break;
      case 'range':
        value = await getS3Range(req.uri, req.start, req.end, req.etag, settings);
        break;
      case 'get':
        value = await getS3ObjectOrNull(req.uri, settings);
        break;
      case 'tails':
        value = await fetchParquetTails(req.items, settings);
        break;
    }
    return { ok: true, value, stats: delta() };
  } catch (e) {
    const err = e instanceof S3Error ? e : s3Error(req.op, 'uri' in req ? req.uri : '', e, settings);
    return { ok: false, error: { message: err.message, code: err.code, uri: err.uri, operation: err.operation, name: err.name }, stats: delta() };
  }
}

/** Listings of many prefixes, 32 at a time; a failed one is an error naming its URI. */
async function listMany(uris: readonly string[], settings: S3Settings): Promise<(ListResult | { error: { message: string; code: string } })[]> {
  return mapLimit(uris, 32, async (uri): Promise<ListResult | { error: { message: string; code: string } }> => {
    try {
      return await listS3(uri, {}, settings);
    } catch (e) {
      const err = s3Error('ListObjectsV2', uri, e, settings);
      return { error: { message: err.message, code: err.code } };
    }
  });
}

type SyncFn = (req: SyncOp, settings: S3Settings) => SyncReply;
let syncFn: SyncFn | null = null;

/** Seconds a synchronous S3 call may block before failing (FANOUT_S3_SYNC_TIMEOUT_S, default 300). */
function syncTimeoutMs(): number {
  const s = Number(process.env.FANOUT_S3_SYNC_TIMEOUT_S);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 300_000;
}

function getSyncFn(): SyncFn {
  if (syncFn) return syncFn;
  const here = import.meta.url;
  // A sibling both in the built package (one flat directory, scripts/build.ts) and in cdk's Lambda bundles.
  const workerUrl = new URL(`./s3-sync-worker${here.endsWith('.ts') ? '.ts' : '.js'}`, here);
  const workerPath = fileURLToPath(workerUrl);
  // Loaded on first use (synckit's CommonJS build can be required synchronously): local-only runs skip it.
  const { createSyncFn } = createRequire(import.meta.url)('synckit') as typeof import('synckit');
  let opts: Parameters<typeof createSyncFn>[1] = { timeout: syncTimeoutMs() };
  const execArgv = tsWorkerExecArgv(workerUrl);
  if (execArgv) opts = { ...opts, tsRunner: 'tsx', execArgv };
  syncFn = createSyncFn(workerPath, opts) as unknown as SyncFn;
  return syncFn;
}

function callSync<T>(req: SyncOp): T {
  const settings = s3Settings();
  const reply = getSyncFn()(req, settings);
  s3Stats.syncCalls++;
  for (const [k, v] of Object.entries(reply.stats) as [keyof S3Stats, number][]) s3Stats[k] += v;
  if (!reply.ok) {
    const e = reply.error;
    const Ctor = e.name === 'S3ObjectChangedError' ? S3ObjectChangedError : S3Error;
    throw new Ctor(e.message, e.code, e.uri, e.operation);
  }
  return reply.value as T;
}

/** Blocking versions of the metadata calls, for the synchronous DataFrame builder. */
export const s3Sync = {
  list: (prefixUri: string, opts: ListOptions = {}): ListResult => callSync<ListResult>({ op: 'list', uri: prefixUri, opts }),
  /** Many listings in one blocking call (run in parallel). */
  listMany: (prefixUris: string[]): Map<string, ListResult | S3Error> => {
    const res = callSync<(ListResult | { error: { message: string; code: string } })[]>({ op: 'listMany', uris: prefixUris });
    return new Map(
      prefixUris.map((u, i) => {
        const r = res[i]!;
        return [u, 'error' in r ? new S3Error(r.error.message, r.error.code, u, 'ListObjectsV2') : r];
      }),
    );
  },
  glob: (patternUri: string): S3Object[] => callSync<S3Object[]>({ op: 'glob', uri: patternUri }),
  head: (uri: string): S3Object => callSync<S3Object>({ op: 'head', uri, orNull: false }),
  headOrNull: (uri: string): S3Object | null => callSync<S3Object | null>({ op: 'head', uri, orNull: true }),
  range: (uri: string, start: number, end: number, etag?: string): Uint8Array =>
    callSync<Uint8Array>(etag === undefined ? { op: 'range', uri, start, end } : { op: 'range', uri, start, end, etag }),
  getOrNull: (uri: string): { bytes: Uint8Array; etag: string } | null => callSync<{ bytes: Uint8Array; etag: string } | null>({ op: 'get', uri }),
  // Objects whose bytes this thread already has (knownTail) are answered here; only the others go to the worker.
  parquetTails: (items: TailRequest[]): TailResult[] => {
    const out = items.map(knownTail);
    const rest = items.filter((_, i) => out[i] === null);
    if (!rest.length) return out as TailResult[];
    const got = callSync<TailResult[]>({ op: 'tails', items: rest });
    let j = 0;
    return out.map((r) => r ?? got[j++]!);
  },
};
