// The HTTP front of the local S3 server: CommonJS source that localstack/s3-server.ts runs in its
// child process, next to s3rver (`server`, its filesystem `store`), and that makes the endpoint
// answer as S3 does for clients nobody here wrote (AWS CLI / botocore, pyarrow, SDKs with default
// settings), where s3rver 3.7.1 does not:
// - `aws-chunked` bodies (STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD
//   [-TRAILER]) are decoded, their trailing checksum verified and x-amz-decoded-content-length
//   checked; s3rver would store the chunk framing as the object.
// - Content-MD5 and x-amz-checksum-* (crc32, crc32c, crc64nvme, sha1, sha256) are verified
//   (InvalidDigest / BadDigest / InvalidRequest, AWS's codes), kept with the object, and returned
//   on PUT, on GET/HEAD with x-amz-checksum-mode: ENABLED and by GetObjectAttributes.
// - Ranges: suffix (`bytes=-8`) and open ranges resolved against the object's size, clamped,
//   416 InvalidRange past the end; a malformed or multi-range header is ignored, as S3 does.
// - Conditional requests: If-Match / If-None-Match on PUT (412, or 404 for If-Match on a missing
//   key) and If-Match / If-None-Match / If-(Un)Modified-Since on GET/HEAD (412 / 304).
// - ListMultipartUploads, ListParts, AbortMultipartUpload, GetObjectAttributes; NoSuchUpload for an
//   unknown upload id.
// - One event per successful PutObject / CopyObject / CompleteMultipartUpload (also a re-upload of
//   the same bytes), served as JSON at GET /_fanout/events?after=<seq> for the EventBridge stand-in
//   (`_` cannot start a bucket name, so no bucket is shadowed).
// Requests on one key take a readers-writer lock, so check-then-write is atomic against other writes
// to that key and a GET never sees an object half-written, as on S3.
//
// Plain JavaScript in String.raw (no template literals inside): the child has no TypeScript loader.
// It runs in the launcher's scope (localstack/s3-server.ts): server, Store, fsSync, S3ObjectModel.
export const S3_PROXY_SOURCE = String.raw`
const crcs = require(process.env.S3_CHECKSUMS_MAIN);
const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let upstreamPort = 0;
const events = [];
let eventSeq = 0;

// ---- locks -----------------------------------------------------------------------------------
const locks = new Map();
function pump(key) {
  const l = locks.get(key);
  while (l.queue.length) {
    const next = l.queue[0];
    if (l.writer || (next.write && l.readers > 0)) break;
    l.queue.shift();
    if (next.write) l.writer = true; else l.readers++;
    next.grant();
  }
  if (!l.writer && l.readers === 0 && !l.queue.length) locks.delete(key);
}
function locked(key, write, fn) {
  if (!locks.has(key)) locks.set(key, { readers: 0, writer: false, queue: [] });
  return new Promise((grant) => { locks.get(key).queue.push({ write, grant }); pump(key); }).then(() => {
    const release = () => { const l = locks.get(key); if (write) l.writer = false; else l.readers--; pump(key); };
    return Promise.resolve().then(fn).finally(release);
  });
}

// ---- helpers ---------------------------------------------------------------------------------
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const requestId = () => crypto.randomBytes(8).toString('hex').toUpperCase();
function sendXml(res, status, body, headers) {
  const text = '<?xml version="1.0" encoding="UTF-8"?>\n' + body;
  const id = requestId();
  res.writeHead(status, Object.assign({ 'content-type': 'application/xml', 'content-length': Buffer.byteLength(text), 'x-amz-request-id': id }, headers || {}));
  res.end(text);
}
function fail(req, res, status, code, message, extra) {
  if (!req.complete) req.resume(); // drain a body we will not store
  const id = requestId();
  let more = '';
  for (const [k, v] of Object.entries(extra || {})) more += '<' + k + '>' + esc(v) + '</' + k + '>';
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + '</Code><Message>' + esc(message) + '</Message>' + more +
    '<RequestId>' + id + '</RequestId><HostId>' + id + '</HostId></Error>';
  if (res.headersSent) { res.destroy(); return; }
  // HEAD answers carry no body.
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': req.method === 'HEAD' ? 0 : Buffer.byteLength(body), 'x-amz-request-id': id });
  res.end(req.method === 'HEAD' ? undefined : body);
}
class S3Fail extends Error {
  constructor(status, code, message, extra) { super(message); this.status = status; this.code = code; this.extra = extra; }
}
function upstream(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: upstreamPort, method, path, headers: headers || {}, agent }, (resp) => {
      const chunks = [];
      resp.on('data', (c) => chunks.push(c));
      resp.on('end', () => resolve({ status: resp.statusCode, headers: resp.headers, body: Buffer.concat(chunks) }));
      resp.on('error', reject);
    });
    r.on('error', reject);
    r.end(body);
  });
}
// What s3rver knows of an object (status 200 when it exists).
const head = (path) => upstream('HEAD', path);
// The same for an object key, read from s3rver's store in this process (the headers its HEAD
// sends: stored metadata, etag, last-modified, content-length) instead of an HTTP round trip through
// its middleware: every read and write looks its object up once. A missing object is status 404
// with missing: true (its bucket may be missing too: readObject tells NoSuchKey from NoSuchBucket).
function objectHead(t) {
  if (!t.bucket || !t.key) return head(t.path);
  return server.store.getMetadata(t.bucket, t.key).then(
    (m) => {
      const headers = {};
      for (const [k, v] of Object.entries(m)) headers[k.toLowerCase()] = String(v);
      return { status: 200, headers };
    },
    (e) => (e && (e.code === 'ENOENT' || e.code === 'ENOTDIR') ? { status: 404, headers: {}, missing: true } : Promise.reject(e)),
  );
}
function forward(req, res, opts) {
  opts = opts || {};
  return new Promise((resolve) => {
    const headers = Object.assign({}, req.headers, opts.headers || {});
    delete headers['expect'];
    for (const k of opts.drop || []) delete headers[k];
    if (opts.body) { headers['content-length'] = String(opts.body.length); delete headers['transfer-encoding']; }
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: opts.path || req.url, headers, agent }, (r) => {
      Promise.resolve(opts.onResponse ? opts.onResponse(r) : undefined).then((extraHeaders) => {
        const out = Object.assign({}, r.headers, extraHeaders || {});
        for (const k of Object.keys(out)) if (k.startsWith('x-amz-meta-fanout-')) delete out[k];
        res.writeHead(r.statusCode, r.statusMessage, out);
        r.pipe(res);
      }, (e) => { r.resume(); fail(req, res, 500, 'InternalError', 's3 proxy: ' + (e && e.message || e)); resolve(); });
      r.on('end', resolve);
      r.on('error', resolve);
      // A client that goes away mid-body must not hold the key's lock.
      res.on('close', () => { if (!r.complete) r.destroy(); resolve(); });
    });
    req.on('aborted', () => { up.destroy(); resolve(); });
    up.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('s3 proxy: ' + e.message);
      resolve();
    });
    if (opts.body) up.end(opts.body); else req.pipe(up);
  });
}
function unquote(t) { return String(t).trim().replace(/^W\//, '').replace(/^"|"$/g, ''); }
function readAll(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---- checksums -------------------------------------------------------------------------------
// The implementations the AWS SDK itself uses (its @aws-sdk/checksums), and node:crypto's SHA.
const ALGORITHMS = {
  crc32: { bytes: 4, make: () => new crcs.Crc32() },
  crc32c: { bytes: 4, make: () => new crcs.Crc32c() },
  crc64nvme: { bytes: 8, make: () => new crcs.Crc64Nvme() },
  sha1: { bytes: 20, make: () => shaHash('sha1') },
  sha256: { bytes: 32, make: () => shaHash('sha256') },
};
function shaHash(name) {
  const h = crypto.createHash(name);
  return { update: (b) => h.update(b), digest: () => Promise.resolve(h.digest()) };
}
async function checksumOf(alg, buf) {
  const h = ALGORITHMS[alg].make();
  h.update(buf);
  return Buffer.from(await h.digest()).toString('base64');
}
const CHECKSUM_HEADER = /^x-amz-checksum-(crc32|crc32c|crc64nvme|sha1|sha256)$/;

// ---- aws-chunked -----------------------------------------------------------------------------
// <hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n[<trailer>:<value>\r\n]*\r\n
function decodeAwsChunked(buf) {
  const data = [];
  const trailers = {};
  let pos = 0;
  const malformed = () => new S3Fail(400, 'IncompleteBody', 'The request body is not a well-formed aws-chunked stream.');
  for (;;) {
    const nl = buf.indexOf('\r\n', pos);
    if (nl < 0) throw malformed();
    const line = buf.subarray(pos, nl).toString('latin1');
    const size = parseInt(line.split(';')[0], 16);
    if (!/^[0-9a-fA-F]+$/.test(line.split(';')[0].trim()) || !Number.isFinite(size)) throw malformed();
    pos = nl + 2;
    if (size === 0) break;
    if (pos + size + 2 > buf.length || buf[pos + size] !== 13 || buf[pos + size + 1] !== 10) throw malformed();
    data.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
  while (pos < buf.length) {
    let nl = buf.indexOf('\r\n', pos);
    if (nl < 0) nl = buf.length;
    const line = buf.subarray(pos, nl).toString('latin1');
    pos = nl + 2;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon < 0) throw new S3Fail(400, 'MalformedTrailerError', 'The request contained trailing data that was not well-formed or did not conform to our published schema.');
    trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { body: Buffer.concat(data), trailers };
}

// Decodes and verifies a PUT body (object or part). Returns the bytes to store, the headers to
// send to s3rver instead of the client's, and the checksum the object carries.
async function checkedBody(req) {
  const raw = await readAll(req);
  const h = req.headers;
  const sha = String(h['x-amz-content-sha256'] || '');
  const encodings = String(h['content-encoding'] || '').split(',').map((s) => s.trim()).filter(Boolean);
  const chunked = sha.startsWith('STREAMING-') || encodings.includes('aws-chunked');
  let body = raw;
  let trailers = {};
  if (chunked) {
    ({ body, trailers } = decodeAwsChunked(raw));
    const declared = h['x-amz-decoded-content-length'];
    if (declared !== undefined && Number(declared) !== body.length) {
      throw new S3Fail(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header');
    }
    const wanted = String(h['x-amz-trailer'] || '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean);
    for (const t of wanted) {
      if (!(t in trailers)) throw new S3Fail(400, 'MalformedTrailerError', 'The request contained trailing data that was not well-formed or did not conform to our published schema.');
    }
  } else if (sha && sha !== 'UNSIGNED-PAYLOAD' && /^[0-9a-f]{64}$/.test(sha)) {
    if (crypto.createHash('sha256').update(raw).digest('hex') !== sha) {
      throw new S3Fail(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
  }
  const md5Header = h['content-md5'];
  if (md5Header !== undefined) {
    const want = Buffer.from(String(md5Header), 'base64');
    if (want.length !== 16 || want.toString('base64') !== String(md5Header).trim()) throw new S3Fail(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.');
    if (!crypto.createHash('md5').update(body).digest().equals(want)) throw new S3Fail(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
  }
  const given = [];
  for (const [k, v] of Object.entries(h).concat(Object.entries(trailers))) {
    const m = CHECKSUM_HEADER.exec(k);
    if (m) given.push([m[1], String(v)]);
  }
  if (given.length > 1) throw new S3Fail(400, 'InvalidRequest', 'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  let checksum = null;
  if (given.length === 1) {
    const [alg, value] = given[0];
    const decoded = Buffer.from(value, 'base64');
    if (decoded.length !== ALGORITHMS[alg].bytes || decoded.toString('base64') !== value.trim()) {
      throw new S3Fail(400, 'InvalidRequest', 'Value for x-amz-checksum-' + alg + ' header is invalid.');
    }
    const actual = await checksumOf(alg, body);
    if (actual !== value.trim()) throw new S3Fail(400, 'BadDigest', 'The ' + alg.toUpperCase() + ' you specified did not match the calculated checksum.');
    checksum = { alg, value: actual };
  } else if (h['x-amz-sdk-checksum-algorithm']) {
    // Algorithm named without a value: S3 computes it.
    const alg = String(h['x-amz-sdk-checksum-algorithm']).toLowerCase();
    if (!ALGORITHMS[alg]) throw new S3Fail(400, 'InvalidRequest', 'Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]');
    checksum = { alg, value: await checksumOf(alg, body) };
  }
  const headers = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
  const rest = encodings.filter((e) => e !== 'aws-chunked');
  const drop = ['x-amz-decoded-content-length', 'x-amz-trailer', 'content-md5', 'x-amz-sdk-checksum-algorithm'];
  for (const k of Object.keys(h)) if (CHECKSUM_HEADER.test(k)) drop.push(k);
  if (rest.length) headers['content-encoding'] = rest.join(','); else drop.push('content-encoding');
  return { body, headers, drop, checksum };
}

// ---- objects ---------------------------------------------------------------------------------
function parseTarget(req) {
  const url = new URL(req.url, 'http://x');
  const path = req.url.split('?')[0]; // raw (still percent-encoded), as s3rver will see it
  const segs = path.split('/').filter(Boolean);
  let bucket = '';
  let key = '';
  try {
    bucket = segs[0] ? decodeURIComponent(segs[0]) : '';
    key = segs.length >= 2 ? decodeURIComponent(path.slice(path.indexOf(segs[0]) + segs[0].length + 1)) : '';
  } catch {}
  // Query keys that do not name a sub-resource: the SDK's x-id, presigned-URL auth, response-* overrides.
  const plain = [...url.searchParams.keys()].every((k) => k === 'x-id' || k === 'versionId' || /^x-amz-/i.test(k) || k.startsWith('response-'));
  return { url, q: url.searchParams, path, bucket, key, isObject: segs.length >= 2, plain };
}
async function conditionsOnPut(req, path) {
  const ifMatch = req.headers['if-match'];
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifMatch === undefined && ifNoneMatch === undefined) return;
  const cur = await head(path);
  const exists = cur.status === 200;
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw new S3Fail(501, 'NotImplemented', 'A header you provided implies functionality that is not implemented', { Header: 'If-None-Match' });
    if (exists) throw new S3Fail(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-None-Match' });
  }
  if (ifMatch !== undefined) {
    if (!exists) throw new S3Fail(404, 'NoSuchKey', 'The specified key does not exist.');
    const want = ifMatch.split(',').map(unquote);
    if (!want.includes('*') && !want.includes(unquote(cur.headers.etag || ''))) {
      throw new S3Fail(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Match' });
    }
  }
}
// GET/HEAD preconditions, in RFC 7232's order (as S3 applies them).
function conditionsOnRead(req, cur) {
  const h = req.headers;
  const etag = unquote(cur.headers.etag || '');
  const modified = Date.parse(cur.headers['last-modified'] || '');
  const notModified = () => new S3Fail(304, 'NotModified', 'Not Modified');
  if (h['if-match'] !== undefined) {
    const want = String(h['if-match']).split(',').map(unquote);
    if (!want.includes('*') && !want.includes(etag)) throw new S3Fail(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Match' });
  } else if (h['if-unmodified-since'] !== undefined) {
    const t = Date.parse(String(h['if-unmodified-since']));
    if (Number.isFinite(t) && modified > t + 999) throw new S3Fail(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-Unmodified-Since' });
  }
  if (h['if-none-match'] !== undefined) {
    const want = String(h['if-none-match']).split(',').map(unquote);
    if (want.includes('*') || want.includes(etag)) throw notModified();
  } else if (h['if-modified-since'] !== undefined) {
    const t = Date.parse(String(h['if-modified-since']));
    if (Number.isFinite(t) && modified <= t + 999) throw notModified();
  }
}
function storedChecksum(headers) {
  const v = headers['x-amz-meta-fanout-checksum'];
  if (!v) return null;
  const i = String(v).indexOf(':');
  return { alg: String(v).slice(0, i), value: String(v).slice(i + 1) };
}
// Resolves a Range header against the object's size: null to serve the whole object (no header, or
// one S3 ignores), or [start, end] inclusive.
function resolveRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(String(header).trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start;
  let end;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw new S3Fail(416, 'InvalidRange', 'The requested range is not satisfiable', { RangeRequested: header, ActualObjectSize: size });
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) throw new S3Fail(416, 'InvalidRange', 'The requested range is not satisfiable', { RangeRequested: header, ActualObjectSize: size });
  return [start, end];
}
// A plain GET or HEAD of an existing object (what SDK clients send: no query but x-id, so no
// presigned-URL expiry or response-* overrides for s3rver to apply) is served from s3rver's store
// here, with the headers s3rver's own answer has, instead of another HTTP round trip through its
// middleware; so is a missing key's NoSuchKey. Other reads go to s3rver.
function servedHere(req, t) {
  return req.headers.authorization !== undefined && [...t.q.keys()].every((k) => k === 'x-id');
}
function sendObject(req, res, t, cur, range, extra) {
  const size = Number(cur.headers['content-length'] || 0);
  const headers = Object.assign({ 'accept-ranges': 'bytes' }, cur.headers, extra, { 'x-amz-request-id': requestId() });
  for (const k of Object.keys(headers)) if (k.startsWith('x-amz-meta-fanout-')) delete headers[k];
  if (range) {
    headers['content-range'] = 'bytes ' + range[0] + '-' + range[1] + '/' + size;
    headers['content-length'] = String(range[1] + 1 - range[0]);
  } else headers['content-length'] = String(size);
  if (req.method === 'HEAD' || size === 0) {
    res.writeHead(range ? 206 : 200, headers);
    res.end();
    return Promise.resolve();
  }
  const file = server.store.getResourcePath(t.bucket, t.key, 'object');
  const length = range ? range[1] + 1 - range[0] : size;
  if (length <= 1 << 20) {
    // A small body (a marker, a footer, a partition's result) read with synchronous calls: a read
    // stream's open, reads and close each cost a thread-pool round trip and most of a GET's CPU here
    // (s3-server.ts: stats and small reads are synchronous, writes are not).
    let body;
    try {
      const fd = fsSync.openSync(file, 'r');
      try {
        body = Buffer.allocUnsafe(length);
        let got = 0;
        while (got < length) {
          const n = fsSync.readSync(fd, body, got, length - got, (range ? range[0] : 0) + got);
          if (n === 0) break;
          got += n;
        }
        if (got < length) throw new Error('object ' + t.key + ' is shorter than its metadata says (' + got + ' of ' + length + ' bytes)');
      } finally { fsSync.closeSync(fd); }
    } catch (e) {
      fail(req, res, 500, 'InternalError', 's3 proxy: ' + e.message);
      return Promise.resolve();
    }
    res.writeHead(range ? 206 : 200, headers);
    res.end(body);
    return Promise.resolve();
  }
  const opts = range ? { start: range[0], end: range[1] } : {};
  return new Promise((resolve) => {
    const body = require('fs').createReadStream(file, opts);
    body.once('open', () => {
      res.writeHead(range ? 206 : 200, headers);
      body.pipe(res);
    });
    body.once('error', (e) => {
      if (res.headersSent) res.destroy();
      else fail(req, res, 500, 'InternalError', 's3 proxy: ' + e.message);
      resolve();
    });
    body.once('end', resolve);
    // A client that goes away mid-body must not hold the key's lock.
    res.once('close', () => { body.destroy(); resolve(); });
  });
}
async function readObject(req, res, t) {
  const cur = await objectHead(t);
  if (cur.status !== 200) {
    if (cur.missing && servedHere(req, t) && (await server.store.getBucket(t.bucket))) {
      throw new S3Fail(404, 'NoSuchKey', 'The specified key does not exist.', { Key: t.key });
    }
    return forward(req, res); // s3rver's NoSuchKey / NoSuchBucket
  }
  conditionsOnRead(req, cur);
  const size = Number(cur.headers['content-length'] || 0);
  const headers = {};
  const drop = ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since'];
  let ranged = false;
  if (req.headers['range'] !== undefined) {
    const r = size === 0 ? null : resolveRange(req.headers['range'], size);
    if (r) { headers['range'] = 'bytes=' + r[0] + '-' + r[1]; ranged = true; } else drop.push('range');
  }
  const cs = storedChecksum(cur.headers);
  const mode = String(req.headers['x-amz-checksum-mode'] || '').toUpperCase() === 'ENABLED';
  if (servedHere(req, t)) {
    const extra = cs && mode && !ranged ? { ['x-amz-checksum-' + cs.alg]: cs.value, 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
    return sendObject(req, res, t, cur, ranged ? headers['range'].slice(6).split('-').map(Number) : null, extra);
  }
  return forward(req, res, {
    headers, drop,
    onResponse: () => (cs && mode && !ranged ? { ['x-amz-checksum-' + cs.alg]: cs.value, 'x-amz-checksum-type': 'FULL_OBJECT' } : {}),
  });
}
function recordEvent(bucket, key, reason, cur) {
  const etag = unquote(cur.headers.etag || '');
  events.push({ seq: ++eventSeq, bucket, key, size: Number(cur.headers['content-length'] || 0), etag, reason, time: new Date().toISOString() });
  // A long session writes many shards and markers: keep the newest (a follower polls every 200 ms).
  if (events.length > 100000) events.splice(0, 50000);
}
// Plain PUTs and copies (as servedHere reads) into an existing bucket are stored through s3rver's
// store here, with the answer s3rver gives, instead of another HTTP round trip through its
// middleware (which a CopyObject, two per committed file, paid twice over). Anything unusual (a
// REPLACE directive, copy conditions, a version id, a '.' or '..' segment for its middleware to
// refuse, a missing source or bucket, a copy onto itself) goes to s3rver. (S3ObjectModel: s3-server.ts.)
const dotSegment = (k) => k.split('/').some((s) => s === '.' || s === '..');
function copySourceHere(req, t) {
  const src = String(req.headers['x-amz-copy-source']);
  if (src.includes('?') || String(req.headers['x-amz-metadata-directive'] || '').toUpperCase() === 'REPLACE') return null;
  if (Object.keys(req.headers).some((k) => k.startsWith('x-amz-copy-source-if'))) return null;
  let decoded;
  try { decoded = decodeURIComponent(src).replace(/^\//, ''); } catch { return null; }
  const cut = decoded.indexOf('/');
  if (cut <= 0) return null;
  const bucket = decoded.slice(0, cut);
  const key = decoded.slice(cut + 1);
  if (!key || dotSegment(key) || dotSegment(t.key) || (bucket === t.bucket && key === t.key)) return null;
  return { bucket, key };
}
async function copyHere(req, res, t) {
  const src = copySourceHere(req, t);
  if (!src || !(await server.store.getBucket(t.bucket)) || !(await server.store.getBucket(src.bucket))) return false;
  if (!(await server.store.existsObject(src.bucket, src.key))) return false;
  if (!req.complete) req.resume();
  const meta = await server.store.copyObject(src.bucket, src.key, t.bucket, t.key, null);
  recordEvent(t.bucket, t.key, 'CopyObject', await objectHead(t)); // before the answer, as for forwarded writes
  sendXml(res, 200, '<CopyObjectResult xmlns="' + XMLNS + '"><LastModified>' + new Date(meta['last-modified']).toISOString() + '</LastModified><ETag>' + esc(meta.etag) + '</ETag></CopyObjectResult>');
  return true;
}
async function putObject(req, res, t) {
  await conditionsOnPut(req, t.path);
  if (req.headers['x-amz-copy-source']) {
    if (servedHere(req, t) && (await copyHere(req, res, t))) return;
    return forward(req, res, {
      onResponse: async (r) => { if (r.statusCode === 200) recordEvent(t.bucket, t.key, 'CopyObject', await objectHead(t)); },
    });
  }
  const { body, headers, drop, checksum } = await checkedBody(req);
  if (checksum) headers['x-amz-meta-fanout-checksum'] = checksum.alg + ':' + checksum.value;
  if (servedHere(req, t) && !dotSegment(t.key) && (await server.store.getBucket(t.bucket))) {
    const meta = Object.assign({}, req.headers, headers);
    for (const k of drop) delete meta[k];
    meta['content-length'] = String(body.length);
    let object = null;
    try { object = new S3ObjectModel(t.bucket, t.key, body, meta); } catch {} // s3rver answers its own refusal (a storage class)
    if (object) {
      const { md5 } = await server.store.putObject(object);
      const extra = checksum ? { ['x-amz-checksum-' + checksum.alg]: checksum.value, 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
      recordEvent(t.bucket, t.key, 'PutObject', await objectHead(t));
      res.writeHead(200, Object.assign({ etag: JSON.stringify(md5), 'content-length': 0, 'x-amz-request-id': requestId() }, extra));
      res.end();
      return;
    }
  }
  return forward(req, res, {
    body, headers, drop,
    onResponse: async (r) => {
      if (r.statusCode !== 200) return {};
      recordEvent(t.bucket, t.key, 'PutObject', await objectHead(t));
      return checksum ? { ['x-amz-checksum-' + checksum.alg]: checksum.value, 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
    },
  });
}

// ---- multipart -------------------------------------------------------------------------------
const uploadsDir = (bucket) => server.store.getResourcePath(bucket, undefined, 'uploads');
const uploadDir = (bucket, id) => pathMod.join(uploadsDir(bucket), id);
async function uploadKey(bucket, id) {
  if (!/^[0-9a-f]{32}$/.test(id)) return null;
  try { return await fsp.readFile(pathMod.join(uploadDir(bucket, id), 'key'), 'utf8'); } catch { return null; }
}
async function requireUpload(t, id) {
  const key = await uploadKey(t.bucket, id);
  if (key === null || key !== t.key) {
    throw new S3Fail(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: id });
  }
}
async function uploadPart(req, res, t) {
  await requireUpload(t, t.q.get('uploadId'));
  if (req.headers['x-amz-copy-source']) return forward(req, res);
  const { body, headers, drop, checksum } = await checkedBody(req);
  return forward(req, res, {
    body, headers, drop,
    onResponse: (r) => (r.statusCode === 200 && checksum ? { ['x-amz-checksum-' + checksum.alg]: checksum.value } : {}),
  });
}
async function completeUpload(req, res, t) {
  await requireUpload(t, t.q.get('uploadId'));
  await conditionsOnPut(req, t.path);
  return forward(req, res, {
    onResponse: async (r) => { if (r.statusCode === 200) recordEvent(t.bucket, t.key, 'CompleteMultipartUpload', await objectHead(t)); },
  });
}
async function abortUpload(req, res, t) {
  const id = t.q.get('uploadId');
  await requireUpload(t, id);
  await fsp.rm(uploadDir(t.bucket, id), { recursive: true, force: true });
  req.resume();
  res.writeHead(204, { 'x-amz-request-id': requestId() });
  res.end();
}
const owner = '<ID>' + 'a'.repeat(64) + '</ID><DisplayName>local</DisplayName>';
async function listParts(req, res, t) {
  const id = t.q.get('uploadId');
  await requireUpload(t, id);
  const dir = uploadDir(t.bucket, id);
  const marker = Number(t.q.get('part-number-marker') || 0);
  const max = Math.min(Number(t.q.get('max-parts') || 1000), 1000);
  const numbers = (await fsp.readdir(dir)).filter((f) => /^\d+$/.test(f)).map(Number).filter((n) => n > marker).sort((a, b) => a - b);
  const page = numbers.slice(0, max);
  let parts = '';
  for (const n of page) {
    const file = pathMod.join(dir, String(n));
    const [st, md5] = await Promise.all([fsp.stat(file), fsp.readFile(file + '.md5', 'utf8').catch(() => '')]);
    parts += '<Part><PartNumber>' + n + '</PartNumber><LastModified>' + st.mtime.toISOString() + '</LastModified><ETag>&quot;' + esc(md5.trim()) + '&quot;</ETag><Size>' + st.size + '</Size></Part>';
  }
  const truncated = numbers.length > page.length;
  sendXml(res, 200, '<ListPartsResult xmlns="' + XMLNS + '"><Bucket>' + esc(t.bucket) + '</Bucket><Key>' + esc(t.key) + '</Key><UploadId>' + id + '</UploadId>' +
    '<PartNumberMarker>' + marker + '</PartNumberMarker>' + (page.length ? '<NextPartNumberMarker>' + page[page.length - 1] + '</NextPartNumberMarker>' : '') +
    '<MaxParts>' + max + '</MaxParts><IsTruncated>' + truncated + '</IsTruncated>' + parts +
    '<Initiator>' + owner + '</Initiator><Owner>' + owner + '</Owner><StorageClass>STANDARD</StorageClass></ListPartsResult>');
}
async function listUploads(req, res, t) {
  const dir = uploadsDir(t.bucket);
  if ((await head('/' + encodeURIComponent(t.bucket))).status === 404) throw new S3Fail(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: t.bucket });
  const prefix = t.q.get('prefix') || '';
  const keyMarker = t.q.get('key-marker') || '';
  const idMarker = t.q.get('upload-id-marker') || '';
  const max = Math.min(Number(t.q.get('max-uploads') || 1000), 1000);
  let ids = [];
  try { ids = await fsp.readdir(dir); } catch {}
  const all = [];
  for (const id of ids) {
    const key = await uploadKey(t.bucket, id);
    if (key === null || !key.startsWith(prefix)) continue;
    const st = await fsp.stat(pathMod.join(uploadDir(t.bucket, id), 'key'));
    all.push({ key, id, initiated: st.mtime });
  }
  all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated - b.initiated));
  const after = all.filter((u) => !keyMarker || u.key > keyMarker || (u.key === keyMarker && idMarker && u.id > idMarker));
  const page = after.slice(0, max);
  const truncated = after.length > page.length;
  const last = page[page.length - 1];
  let body = '<ListMultipartUploadsResult xmlns="' + XMLNS + '"><Bucket>' + esc(t.bucket) + '</Bucket><KeyMarker>' + esc(keyMarker) + '</KeyMarker><UploadIdMarker>' + esc(idMarker) + '</UploadIdMarker>' +
    (truncated ? '<NextKeyMarker>' + esc(last.key) + '</NextKeyMarker><NextUploadIdMarker>' + last.id + '</NextUploadIdMarker>' : '') +
    '<Prefix>' + esc(prefix) + '</Prefix><MaxUploads>' + max + '</MaxUploads><IsTruncated>' + truncated + '</IsTruncated>';
  for (const u of page) {
    body += '<Upload><Key>' + esc(u.key) + '</Key><UploadId>' + u.id + '</UploadId><Initiator>' + owner + '</Initiator><Owner>' + owner + '</Owner>' +
      '<StorageClass>STANDARD</StorageClass><Initiated>' + u.initiated.toISOString() + '</Initiated></Upload>';
  }
  sendXml(res, 200, body + '</ListMultipartUploadsResult>');
}
async function objectAttributes(req, res, t) {
  const cur = await head(t.path);
  if (cur.status !== 200) throw new S3Fail(404, 'NoSuchKey', 'The specified key does not exist.', { Key: t.key });
  conditionsOnRead(req, cur);
  const names = String(req.headers['x-amz-object-attributes'] || '').split(',').map((s) => s.trim()).filter(Boolean);
  const known = ['ETag', 'Checksum', 'ObjectParts', 'StorageClass', 'ObjectSize'];
  if (!names.length || names.some((n) => !known.includes(n))) throw new S3Fail(400, 'InvalidArgument', 'Invalid attribute name specified.');
  const etag = unquote(cur.headers.etag || '');
  const parts = /-(\d+)$/.exec(etag);
  const cs = storedChecksum(cur.headers);
  let body = '<GetObjectAttributesResponse xmlns="' + XMLNS + '">';
  if (names.includes('ETag')) body += '<ETag>' + esc(etag) + '</ETag>';
  if (names.includes('Checksum') && cs) {
    const tag = 'Checksum' + cs.alg.toUpperCase().replace('CRC64NVME', 'CRC64NVME');
    body += '<Checksum><' + tag + '>' + cs.value + '</' + tag + '><ChecksumType>FULL_OBJECT</ChecksumType></Checksum>';
  }
  if (names.includes('ObjectParts') && parts) body += '<ObjectParts><PartsCount>' + parts[1] + '</PartsCount></ObjectParts>';
  if (names.includes('StorageClass')) body += '<StorageClass>STANDARD</StorageClass>';
  if (names.includes('ObjectSize')) body += '<ObjectSize>' + Number(cur.headers['content-length'] || 0) + '</ObjectSize>';
  sendXml(res, 200, body + '</GetObjectAttributesResponse>', { 'last-modified': cur.headers['last-modified'] });
}
// ---- CompleteMultipartUpload in the store -------------------------------------------------------
// s3rver stores a multipart object's plain MD5 as its ETag and accepts any part list; S3 checks
// each listed part (InvalidPart: missing or another ETag), their order (InvalidPartOrder) and sizes
// (EntityTooSmall: every part but the last at least 5 MiB), and gives the object the ETag
// md5(concatenated part MD5s)-<parts>.
{
  const libDir = pathMod.dirname(process.env.S3RVER_MAIN);
  const S3Error = require(pathMod.join(libDir, 'models', 'error.js'));
  const S3Object = require(pathMod.join(libDir, 'models', 'object.js'));
  const { Readable } = require('stream');
  Store.prototype.putObjectMultipart = async function putObjectMultipart(bucket, uploadId, parts) {
    const dir = pathMod.join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId);
    const [key, metadata] = await Promise.all([fsp.readFile(pathMod.join(dir, 'key'), 'utf8'), fsp.readFile(pathMod.join(dir, 'metadata'), 'utf8').then(JSON.parse)]);
    const digests = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i > 0 && p.number <= parts[i - 1].number) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
      const file = pathMod.join(dir, String(p.number));
      const md5 = await fsp.readFile(file + '.md5', 'utf8').catch(() => null);
      if (md5 === null || md5.trim() !== p.etag.trim()) {
        throw new S3Error('InvalidPart', "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.", { UploadId: uploadId, PartNumber: p.number, ETag: p.etag });
      }
      const { size } = await fsp.stat(file);
      if (i < parts.length - 1 && size < 5 * 1024 * 1024) {
        throw new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.', { ProposedSize: size, MinSizeAllowed: 5 * 1024 * 1024, PartNumber: p.number, ETag: p.etag });
      }
      digests.push(Buffer.from(md5.trim(), 'hex'));
    }
    const content = Readable.from((async function* () { for (const p of parts) yield* require('fs').createReadStream(pathMod.join(dir, String(p.number))); })());
    const { size } = await this.putObject(new S3Object(bucket, key, content, metadata));
    const etag = crypto.createHash('md5').update(Buffer.concat(digests)).digest('hex') + '-' + parts.length;
    await fsp.writeFile(this.getResourcePath(bucket, key, 'object.md5'), etag);
    touched(this.getResourcePath(bucket, key, 'object')); // putObject cached the plain MD5 as its ETag
    await fsp.rm(dir, { recursive: true, force: true });
    return { size, md5: etag };
  };
}

// ---- routing ---------------------------------------------------------------------------------
function route(req, res, t) {
  const m = req.method;
  if (m === 'GET' && t.path === '/_fanout/events') {
    const after = Number(t.q.get('after') || 0);
    const text = JSON.stringify({ seq: eventSeq, events: events.filter((e) => e.seq > after) });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return Promise.resolve();
  }
  if (m === 'GET' && t.path === '/_fanout/store') {
    const text = JSON.stringify(storeStats);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return Promise.resolve();
  }
  if (t.path === '/_fanout/requests') {
    const text = JSON.stringify(Object.fromEntries(requestCounts));
    if (m === 'DELETE') requestCounts.clear(); // answered with the counts it cleared
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return Promise.resolve();
  }
  if (!t.isObject) {
    if (m === 'GET' && t.q.has('uploads')) return listUploads(req, res, t);
    return forward(req, res);
  }
  const uploadId = t.q.has('uploadId');
  if (uploadId) {
    if (m === 'PUT') return uploadPart(req, res, t);
    if (m === 'GET') return listParts(req, res, t);
    if (m === 'DELETE') return abortUpload(req, res, t);
    if (m === 'POST') return locked(t.path, true, () => completeUpload(req, res, t));
    return forward(req, res);
  }
    if (m === 'PUT' && t.plain) return locked(t.path, true, () => putObject(req, res, t));
  if (m === 'DELETE' && t.plain) return locked(t.path, true, () => forward(req, res));
  if ((m === 'GET' || m === 'HEAD') && t.q.has('attributes')) return locked(t.path, false, () => objectAttributes(req, res, t));
  if ((m === 'GET' || m === 'HEAD') && t.plain) return locked(t.path, false, () => readObject(req, res, t));
  return forward(req, res);
}
// Requests served, by operation and by key shape (run ids and numbers folded), for the harness
// benches (S3 requests per partition): GET /_fanout/requests; DELETE there answers them and resets them.
const requestCounts = new Map();
function countRequest(req, t) {
  if (t.path.startsWith('/_fanout/')) return;
  const m = req.method;
  let op;
  if (!t.isObject) op = m === 'GET' ? (t.q.has('uploads') ? 'ListMultipartUploads' : t.bucket ? 'ListObjects' : 'ListBuckets') : m === 'POST' && t.q.has('delete') ? 'DeleteObjects' : m + ' bucket';
  else if (t.q.has('uploadId') || t.q.has('uploads')) op = m + ' multipart';
  else if (m === 'PUT') op = req.headers['x-amz-copy-source'] ? 'CopyObject' : 'PutObject';
  else if (m === 'GET') op = req.headers.range ? 'GetObject range' : 'GetObject';
  else op = { HEAD: 'HeadObject', DELETE: 'DeleteObject' }[m] || m;
  const shape = (t.isObject ? t.key : t.q.get('prefix') || '').replace(/^runs\/[^/]+\//, 'runs/<run>/').replace(/\d+/g, 'N');
  for (const k of [op, op + ' ' + t.bucket + '/' + shape]) requestCounts.set(k, (requestCounts.get(k) || 0) + 1);
}
const proxy = http.createServer((req, res) => {
  const t = parseTarget(req);
  countRequest(req, t);
  route(req, res, t).catch((e) => {
    if (e instanceof S3Fail) {
      if (e.status === 304) { if (!req.complete) req.resume(); res.writeHead(304, { 'x-amz-request-id': requestId() }); res.end(); return; }
      return fail(req, res, e.status, e.code, e.message, e.extra);
    }
    fail(req, res, 500, 'InternalError', 's3 proxy: ' + (e && e.message || e));
  });
});
proxy.keepAliveTimeout = 65000;
`;
