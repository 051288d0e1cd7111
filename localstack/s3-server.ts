// A local S3 endpoint for tests and examples: s3rver in a child process. A child (not in-process)
// because s3rver needs `--openssl-legacy-provider` (its ListObjectsV2 continuation tokens use a
// legacy cipher) and that flag must not leak into the process under test.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { S3_PROXY_SOURCE } from './s3-proxy.ts';

export interface S3ServerOptions {
  /** Where s3rver keeps objects; a fresh temp dir (removed on stop) when not given. */
  dir?: string;
  /** 0 (default): any free port. */
  port?: number;
  buckets?: string[];
}

export interface S3Server {
  /** http://127.0.0.1:<port>, for AWS_ENDPOINT_URL_S3 */
  endpoint: string;
  port: number;
  /** The child process running s3rver (behind a proxy that honours conditional PUTs). */
  pid: number;
  /** Requests served so far, by operation and by operation + bucket/key shape (s3-proxy.ts); `reset` clears them (the answer is the counts before). */
  requests(reset?: boolean): Promise<Record<string, number>>;
  /** The store's own work so far: object metadata read from its files (a miss of the metadata cache). */
  storeStats(): Promise<{ metadataFileReads: number }>;
  stop(): Promise<void>;
}

// Runs in the child as CommonJS (no TypeScript loader there). It reports its port on stdout and
// exits when its stdin closes, which also happens when the parent dies without cleaning up.
//
// s3rver stores; the HTTP proxy in front of it (localstack/s3-proxy.ts, the endpoint clients see)
// answers what s3rver gets wrong as S3 does: aws-chunked bodies, checksums, ranges, conditional
// requests, multipart listing and abort, GetObjectAttributes, and an event per write.
const LAUNCHER = `
const http = require('http');
const crypto = require('crypto');
const S3rver = require(process.env.S3RVER_MAIN);
const opts = JSON.parse(process.env.S3RVER_OPTS);
const server = new S3rver({
  address: '127.0.0.1', port: 0, directory: opts.dir, silent: true,
  configureBuckets: opts.buckets.map((name) => ({ name, configs: [] })),
  allowMismatchedSignatures: true,
});
// Any access key is accepted, as LocalStack does (its convention is test/test; a shell may export
// real keys): s3rver knows only S3RVER's account, so every other key id resolves to that account.
// Signatures are not checked (allowMismatchedSignatures).
{
  const AWSAccount = require(require('path').join(require('path').dirname(process.env.S3RVER_MAIN), 'models', 'account.js'));
  const registry = AWSAccount.registry;
  const own = Map.prototype.get.bind(registry);
  registry.get = (id) => own(id) || own('S3RVER');
}
// s3rver maps a key to path.join(dir, bucket, ...key.split('/')), so a key with '.' or '..'
// segments (PUT ../../x, CopySource, a DeleteObjects list) reads, writes or deletes files outside its
// directory. Such keys are refused in front of it; real S3 would store them literally, and no
// fanout key has them.
const badSegment = (k) => typeof k === 'string' && k.split('/').some((s) => s === '.' || s === '..');
const xmlText = (t) => t.replace(/&(#x[0-9a-f]+|#[0-9]+|lt|gt|amp|quot|apos);/gi, (_, e) =>
  e[0] === '#' ? String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)))
    : ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e.toLowerCase()]);
const refuse = (ctx, what) => {
  ctx.status = 400;
  ctx.type = 'application/xml';
  ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>InvalidArgument</Code><Message>' +
    'the local S3 server refuses ' + what.replace(/[<>&]/g, '') + ": a key with a '.' or '..' segment would leave its directory</Message></Error>";
};
server.middleware.unshift(async (ctx, next) => {
  let segs;
  try {
    segs = ctx.path.split('/').map(decodeURIComponent);
  } catch {
    return refuse(ctx, 'a malformed path');
  }
  if (segs.some((s) => s === '.' || s === '..' || s.includes('/'))) return refuse(ctx, 'the key in ' + ctx.path);
  const src = ctx.get('x-amz-copy-source');
  if (src) {
    let decoded = src;
    try { decoded = decodeURIComponent(src.split('?')[0]); } catch { return refuse(ctx, 'a malformed copy source'); }
    if (badSegment(decoded.replace(/^\\//, ''))) return refuse(ctx, 'the copy source ' + src);
    // s3rver decodes the copy source with decodeURI, which leaves reserved escapes (%3D for '=',
    // as in hive keys dt=2026-11-29/) encoded, so it looks for a key that does not exist; S3
    // decodes them all. Hand it the source in the form decodeURI inverts exactly.
    const [, query] = src.split('?');
    ctx.req.headers['x-amz-copy-source'] = encodeURI(decoded) + (query === undefined ? '' : '?' + query);
  }
  if (ctx.method === 'POST' && 'delete' in ctx.query) {
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const keys = [...body.toString('utf8').matchAll(/<Key>([\\s\\S]*?)<\\/Key>/g)].map((m) => xmlText(m[1]));
    if (keys.some(badSegment)) return refuse(ctx, 'a DeleteObjects key');
    // s3rver reads the body from ctx.req itself: hand it the bytes again.
    ctx.req = require('stream').Readable.from([body]);
  }
  return next();
});
// s3rver 3.7.1 answers a PUT (and an UploadPart) once its hashing Transform has seen the body, not
// once the object's file is written: its fs.WriteStream may still be flushing, or not yet opened,
// when the 200 goes out, while the .md5 file (the ETag) is already new. A GET right after then serves
// the new ETag with an empty or partial body; under load a conditional manifest writer read an empty
// manifest at the current ETag, took it for "no manifest" and replaced it, losing other writers'
// entries. So objects and parts are written whole here (temp file, flushed and closed, then renamed
// into place) before the store returns and s3rver answers.
const { Readable, Transform, pipeline } = require('stream');
const fsp = require('fs').promises;
const pathMod = require('path');
// Stats, and reads of bodies up to 1 MiB (s3-proxy.ts sendObject), are synchronous calls: each
// promise-based call costs a thread-pool round trip and several allocations, most of this process's
// CPU for a small GET, while the syscalls take microseconds. Writes stay asynchronous: creating files
// is slow enough on a loaded machine that doing it on this one thread cut the throughput of
// concurrent requests (8 in flight: 2.41 -> 2.91 ms per request, measured).
const fsSync = require('fs');
function writeWhole(target, content) {
  const tmp = target + '.' + crypto.randomBytes(6).toString('hex') + '.uploading';
  if (Buffer.isBuffer(content)) {
    // A body already in memory (the proxy's plain PUTs): one writeFile (closed when it resolves), no stream pipeline.
    const md5 = crypto.createHash('md5').update(content).digest('hex');
    return fsp.writeFile(tmp, content)
      .then(() => fsp.rename(tmp, target))
      .then(() => ({ size: content.length, md5 }), (e) => fsp.rm(tmp, { force: true }).then(() => { throw e; }));
  }
  const md5 = crypto.createHash('md5');
  let size = 0;
  const src = Buffer.isBuffer(content) ? Readable.from([content]) : content;
  const hash = new Transform({ transform(chunk, enc, cb) { md5.update(chunk); size += chunk.length; cb(null, chunk); } });
  const out = require('fs').createWriteStream(tmp);
  return new Promise((resolve, reject) => pipeline(src, hash, out, (e) => (e ? reject(e) : resolve())))
    // 'close' (the fd closed, every write done) before the rename: pipeline may settle on 'finish'.
    .then(() => (out.closed ? undefined : new Promise((r) => out.once('close', r))))
    .then(() => fsp.rename(tmp, target))
    .then(() => ({ size, md5: md5.digest('hex') }), (e) => fsp.rm(tmp, { force: true }).then(() => { throw e; }));
}
const Store = server.store.constructor;
Store.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fsp.mkdir(pathMod.dirname(objectPath), { recursive: true });
  const { size, md5 } = await writeWhole(objectPath, object.content);
  const gen = metaGen.get(objectPath) || 0;
  const stored = await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  // The metadata just written, cached as getMetadata would read it back (the proxy reads it right
  // after every PUT, for the event): one stat instead of reading the two files again. Not kept if
  // another write to the key overlapped (generation count, as in getMetadata).
  const st = fsSync.statSync(objectPath);
  if ((metaGen.get(objectPath) || 0) === gen + 2 && st.size === size) {
    metaCache.set(objectPath, { sig: statSig(st), meta: Object.assign({}, stored, { etag: JSON.stringify(md5), 'last-modified': st.mtime.toUTCString(), 'content-length': st.size }) });
  }
  return { size, md5 };
};
Store.prototype.putPart = async function putPart(bucket, uploadId, partNumber, content) {
  const partPath = pathMod.join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, partNumber.toString());
  await fsp.mkdir(pathMod.dirname(partPath), { recursive: true });
  const { size, md5 } = await writeWhole(partPath, content);
  await fsp.writeFile(partPath + '.md5', md5);
  return { size, md5 };
};
// Every request reads its bucket's cors and website configs (two failing readFiles) and stats the
// bucket directory: most of s3rver's filesystem work for a small object. Buckets and their configs
// change only through this store (this process owns the directory), so bucket-level configs and
// existing buckets are cached here and dropped by the calls that change them.
const bucketConfigs = new Map();
const knownBuckets = new Map();
const { getSubresource, putSubresource, deleteSubresource, getBucket, putBucket, deleteBucket } = Store.prototype;
Store.prototype.getSubresource = async function cachedSubresource(bucket, key, type) {
  if (key !== undefined) return getSubresource.call(this, bucket, key, type);
  const k = bucket + '/' + type;
  if (!bucketConfigs.has(k)) bucketConfigs.set(k, getSubresource.call(this, bucket, key, type).catch((e) => { bucketConfigs.delete(k); throw e; }));
  return bucketConfigs.get(k);
};
const forgetConfig = (bucket, type) => { for (const k of bucketConfigs.keys()) if (k === bucket + '/' + type || (type === undefined && k.startsWith(bucket + '/'))) bucketConfigs.delete(k); };
Store.prototype.putSubresource = async function (bucket, key, resource) {
  try { return await putSubresource.call(this, bucket, key, resource); } finally { if (key === undefined) forgetConfig(bucket, resource.type); }
};
Store.prototype.deleteSubresource = async function (bucket, key, type) {
  try { return await deleteSubresource.call(this, bucket, key, type); } finally { if (key === undefined) forgetConfig(bucket, type); }
};
Store.prototype.getBucket = async function cachedBucket(bucket) {
  const hit = knownBuckets.get(bucket);
  if (hit) return hit;
  const b = await getBucket.call(this, bucket);
  if (b) knownBuckets.set(bucket, b); // only existing buckets: a missing one is looked up again
  return b;
};
Store.prototype.putBucket = async function (bucket) {
  knownBuckets.delete(bucket);
  forgetConfig(bucket);
  return putBucket.call(this, bucket);
};
Store.prototype.deleteBucket = async function (bucket) {
  try { return await deleteBucket.call(this, bucket); } finally { knownBuckets.delete(bucket); forgetConfig(bucket); }
};
// An object's metadata (its metadata.json and .md5 files) is read on every GET, HEAD and for every
// key a LIST returns (the runner's progress watcher lists the stage's markers five times a second).
// It is cached per object file, checked against a stat of that file (a rewrite renames a new one in
// place, a copy changes its mtime), and dropped around every store call that writes it; a lookup
// that overlapped such a write is not kept (generation count).
const metaCache = new Map();
// The store's own work, for tests of the caches here: GET /_fanout/store.
const storeStats = { metadataFileReads: 0 };
const metaGen = new Map();
const statSig = (st) => st.ino + ':' + st.size + ':' + st.mtimeMs + ':' + st.ctimeMs;
const touched = (p) => { metaGen.set(p, (metaGen.get(p) || 0) + 1); metaCache.delete(p); };
const { getMetadata, putMetadata, copyObject, deleteObject: removeObject } = Store.prototype;
Store.prototype.getMetadata = async function cachedMetadata(bucket, key) {
  const p = this.getResourcePath(bucket, key, 'object');
  const gen = metaGen.get(p) || 0;
  const st = fsSync.statSync(p); // missing: ENOENT, as s3rver's own lookup throws
  const hit = metaCache.get(p);
  if (hit && hit.sig === statSig(st)) return Object.assign({}, hit.meta);
  storeStats.metadataFileReads++;
  const meta = await getMetadata.call(this, bucket, key);
  if ((metaGen.get(p) || 0) === gen && String(meta['content-length']) === String(st.size)) metaCache.set(p, { sig: statSig(st), meta: Object.assign({}, meta) });
  return meta;
};
// s3rver's putMetadata (the allowed headers and x-amz-meta-* as metadata.json, the MD5 as .md5),
// its two files written side by side, returning the stored metadata (putObject caches it).
const ALLOWED_METADATA = require(pathMod.join(pathMod.dirname(process.env.S3RVER_MAIN), 'models', 'object.js')).ALLOWED_METADATA;
Store.prototype.putMetadata = async function (bucket, key, metadata, md5) {
  const p = this.getResourcePath(bucket, key, 'object');
  touched(p);
  try {
    const json = {};
    for (const k of ALLOWED_METADATA) if (k in metadata) json[k] = metadata[k];
    for (const k of Object.keys(metadata)) if (k.startsWith('x-amz-meta-')) json[k] = metadata[k];
    await Promise.all([
      md5 ? fsp.writeFile(this.getResourcePath(bucket, key, 'object.md5'), md5) : undefined,
      fsp.writeFile(this.getResourcePath(bucket, key, 'metadata.json'), JSON.stringify(json, null, 2)),
    ]);
    return JSON.parse(JSON.stringify(json));
  } finally { touched(p); }
};
// A copy with the source's metadata copies its three files, as s3rver does, but with a plain
// copyFile each: s3rver's fs-extra copy stats the source, the destination and every parent
// directory of the destination for each file, most of a copy's time (Finalize copies every result).
const COPIED_FILES = ['object', 'metadata.json', 'object.md5'];
Store.prototype.copyObject = async function (srcBucket, srcKey, destBucket, destKey, replacementMetadata) {
  const p = this.getResourcePath(destBucket, destKey, 'object');
  touched(p);
  try {
    if (replacementMetadata || this.getResourcePath(srcBucket, srcKey, 'object') === p) return await copyObject.call(this, srcBucket, srcKey, destBucket, destKey, replacementMetadata);
    await fsp.mkdir(pathMod.dirname(p), { recursive: true });
    await Promise.all(COPIED_FILES.map((r) => fsp.copyFile(this.getResourcePath(srcBucket, srcKey, r), this.getResourcePath(destBucket, destKey, r)).catch((e) => {
      // An object without its .md5 file gets one from the next metadata read, as in s3rver.
      if (r === 'object.md5' && e.code === 'ENOENT') return fsp.rm(this.getResourcePath(destBucket, destKey, r), { force: true });
      throw e;
    })));
    return await getMetadata.call(this, destBucket, destKey);
  } finally { touched(p); }
};
Store.prototype.deleteObject = async function (bucket, key) {
  const p = this.getResourcePath(bucket, key, 'object');
  touched(p);
  try { return await removeObject.call(this, bucket, key); } finally { touched(p); }
};
// s3rver lists by walking the bucket with a synchronous stat of every file it passes (each object
// is three files), blocking the server while the runner's progress watcher lists a stage's markers
// several times a second; and it returns keys in directory order, not S3's. Listed here with
// asynchronous readdirs (entry types, no stats) of only the directories the prefix can reach, keys
// in lexicographic order (so StartAfter and continuation tokens page as on S3), then each listed
// key's (cached) metadata.
const S3ObjectModel = require(pathMod.join(pathMod.dirname(process.env.S3RVER_MAIN), 'models', 'object.js'));
const OBJECT_SUFFIX = '._S3rver_object';
/** Every key under the prefix after startAfter, in S3's (UTF-8 byte) order. */
async function listKeys(store, bucket, prefix, startAfter) {
  const bucketPath = store.getBucketPath(bucket);
  const prefixPath = bucketPath + '/' + Store.encodeKeyPath(prefix);
  const keys = [];
  const walk = async (dir) => {
    let entries;
    try { entries = await fsp.readdir(dir, { withFileTypes: true }); } catch (e) { if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return; throw e; }
    const subdirs = [];
    for (const e of entries) {
      const p = dir + '/' + e.name;
      if (e.isDirectory()) {
        if (p.startsWith(prefixPath) || prefixPath.startsWith(p + '/')) subdirs.push(p);
      } else if (e.name.endsWith(OBJECT_SUFFIX)) {
        const key = Store.decodeKeyPath(p.slice(bucketPath.length + 1, -OBJECT_SUFFIX.length));
        if (key > startAfter && key.startsWith(prefix)) keys.push(key);
      }
    }
    await Promise.all(subdirs.map(walk));
  };
  await walk(bucketPath);
  return keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
/** The listed keys as s3rver's objects, with their (cached) metadata; a key deleted meanwhile is left out. */
async function listedObjects(store, bucket, keys) {
  const metas = await Promise.all(keys.map((k) => store.getMetadata(bucket, k).catch((e) => { if (e.code === 'ENOENT') return undefined; throw e; })));
  const objects = [];
  keys.forEach((k, i) => { if (metas[i] !== undefined) objects.push(new S3ObjectModel(bucket, k, null, metas[i])); });
  return objects;
}
// s3rver's delimiter listing never walks below the first level under the prefix, so a prefix whose
// objects all lie two or more levels down ('lake/' over 'lake/dt=1/region=eu/f') had no common
// prefixes at all (S3 answers 'lake/dt=1/'). Listed here as S3 does: every key under the prefix,
// rolled up at the delimiter.
Store.prototype.listObjects = async function listObjects(bucket, options) {
  const delimiter = options.delimiter || '';
  const prefix = options.prefix || '';
  const maxKeys = options.maxKeys === undefined ? Infinity : options.maxKeys;
  const keys = await listKeys(this, bucket, prefix, options.startAfter || '');
  const commonPrefixes = new Set();
  const kept = [];
  let isTruncated = false;
  for (const k of keys) {
    const idx = delimiter ? k.slice(prefix.length).indexOf(delimiter) : -1;
    if (idx !== -1) { commonPrefixes.add(k.slice(0, prefix.length + idx + 1)); continue; }
    if (kept.length < maxKeys) kept.push(k);
    else { isTruncated = true; break; }
  }
  return { objects: await listedObjects(this, bucket, kept), commonPrefixes: [...commonPrefixes].sort(), isTruncated };
};
${S3_PROXY_SOURCE}
server.run().then((addr) => {
  upstreamPort = addr.port;
  proxy.on('error', (err) => { process.stderr.write('s3 proxy failed to start: ' + err.message + '\\n'); process.exit(1); });
  proxy.listen(opts.port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: proxy.address().port }) + '\\n');
  });
}, (err) => {
  process.stderr.write('s3rver failed to start: ' + (err && err.stack || err) + '\\n');
  process.exit(1);
});
// A temp dir of our own is removed here too, so it goes even when the parent was killed.
const cleanup = () => { if (opts.removeDir) try { require('fs').rmSync(opts.dir, { recursive: true, force: true }); } catch {} };
let quitting = false;
const quit = () => {
  if (quitting) return;
  quitting = true;
  setTimeout(() => { cleanup(); process.exit(0); }, 2000);
  proxy.close();
  if (proxy.closeAllConnections) proxy.closeAllConnections();
  agent.destroy();
  const closing = Promise.resolve().then(() => server.close());
  // Clients' keep-alive sockets would hold close() open until they time out.
  if (server.httpServer && server.httpServer.closeAllConnections) server.httpServer.closeAllConnections();
  closing.catch(() => {}).finally(() => { cleanup(); process.exit(0); });
};
process.stdin.on('end', quit);
process.stdin.on('error', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
`;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous last resort: 'exit' handlers cannot await, but kill() is a plain signal (the
  // child then removes its temp dir itself).
  process.on('exit', () => {
    for (const c of live) c.kill('SIGTERM');
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode !== undefined && res.statusCode < 500);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** Start s3rver on 127.0.0.1 (fs-backed), create `buckets`, and wait until it answers. */
export async function startS3Server(opts: S3ServerOptions = {}): Promise<S3Server> {
  const buckets = opts.buckets ?? [];
  for (const b of buckets) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b)) throw new Error(`invalid bucket name '${b}'`);
  }
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? fs.mkdtempSync(join(tmpdir(), 'fanout-s3rver-'));
  fs.mkdirSync(dir, { recursive: true });
  const removeDir = (): void => {
    if (ownDir) fs.rmSync(dir, { recursive: true, force: true });
  };

  // FANOUT_S3_CPU_PROF=<dir>: a CPU profile of the child (--cpu-prof), written when it stops.
  const profile = process.env['FANOUT_S3_CPU_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['FANOUT_S3_CPU_PROF']}`] : [];
  const child = spawn(process.execPath, [...profile, '--openssl-legacy-provider', '-e', LAUNCHER], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NODE_OPTIONS: '', // a parent's --import tsx etc. is neither needed nor wanted in the child
      S3RVER_MAIN: fileURLToPath(import.meta.resolve('s3rver')),
      // The CRC implementations of the AWS SDK the project uses (resolved from @aws-sdk/client-s3).
      S3_CHECKSUMS_MAIN: createRequire(fileURLToPath(import.meta.resolve('@aws-sdk/client-s3'))).resolve('@aws-sdk/checksums/crc'),
      S3RVER_OPTS: JSON.stringify({ port: opts.port ?? 0, dir, buckets, removeDir: ownDir }),
    },
  });
  live.add(child);
  installExitHook();
  // Never keep the parent alive on the child's account; stop() is the orderly way out.
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  (child.stdin as unknown as { unref?: () => void }).unref?.();

  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    if (stderr.length < 64 << 10) stderr += s;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s${stderr ? `:\n${stderr}` : ''}`)), 15_000);
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (s: string) => {
        out += s;
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        try {
          resolve((JSON.parse(out.slice(0, nl)) as { port: number }).port);
        } catch {
          reject(new Error(`unexpected output from the s3rver child: ${out.slice(0, 200)}`));
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot spawn s3rver: ${e.message}`));
      });
      void exited.then((code) => {
        clearTimeout(timer);
        // Give stderr a moment to drain so the message says why.
        setTimeout(() => reject(new Error(`s3rver exited with code ${code} before it was ready${stderr ? `:\n${stderr.trim()}` : ''}`)), 50);
      });
    });
    const deadline = Date.now() + 10_000;
    while (!(await ping(port))) {
      if (Date.now() > deadline) throw new Error(`s3rver on port ${port} does not answer${stderr ? `:\n${stderr}` : ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    child.kill('SIGKILL');
    await exited;
    removeDir();
    throw e;
  }

  let stopped: Promise<void> | null = null;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    storeStats: async () => {
      const r = await fetch(`http://127.0.0.1:${port}/_fanout/store`);
      if (!r.ok) throw new Error(`local S3 server: GET /_fanout/store answered ${r.status}`);
      return (await r.json()) as { metadataFileReads: number };
    },
    requests: async (reset = false) => {
      const r = await fetch(`http://127.0.0.1:${port}/_fanout/requests`, { method: reset ? 'DELETE' : 'GET' });
      if (!r.ok) throw new Error(`local S3 server: GET /_fanout/requests answered ${r.status}`);
      return (await r.json()) as Record<string, number>;
    },
    stop: () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.stdin!.end(); // orderly: the launcher closes the server and exits
          const t = setTimeout(() => child.kill('SIGKILL'), 3000);
          // The child is unref'd: without a ref'd handle until it has exited, a slow exit (a loaded
          // machine, past the SIGKILL timer) leaves the loop empty and stop() never resolves.
          const keepAlive = setInterval(() => undefined, 250);
          try {
            await exited;
          } finally {
            clearTimeout(t);
            clearInterval(keepAlive);
          }
        }
        removeDir();
      })();
      return stopped;
    },
  };
}
