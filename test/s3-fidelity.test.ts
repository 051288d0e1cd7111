// The harness's S3 (localstack/s3-server.ts: s3rver behind localstack/s3-proxy.ts) answers as S3
// does for clients nobody here wrote: a JS SDK v3 client with default settings (flexible checksums,
// aws-chunked streaming uploads), lib-storage, and raw requests byte-for-byte as botocore (AWS CLI)
// sends them; and its event feed gives one event per write with S3's reason.
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteBucketCorsCommand,
  DeleteObjectCommand,
  GetBucketCorsCommand,
  GetObjectAttributesCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutBucketCorsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { startEventBridgeBridge, type EventBridgeBridge } from '../localstack/eventbridge.ts';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import { listS3, putS3Object, s3Client } from '../src/io/s3/index.ts';
import { tempDir } from './helpers.ts';

const BUCKET = 'fidelity';
let server: S3Server;
let s3: S3Client;
const savedEnv: Record<string, string | undefined> = {};

/** A client as a user would make one: default checksum settings, any key pair. */
const client = (accessKeyId = 'test', secretAccessKey = 'test'): S3Client =>
  new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });

const bytesOf = async (key: string, range?: string): Promise<{ body: Buffer; contentRange: string | undefined; status: number | undefined }> => {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, ...(range ? { Range: range } : {}) }));
  return { body: Buffer.from(await r.Body!.transformToByteArray()), contentRange: r.ContentRange, status: r.$metadata.httpStatusCode };
};

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP request as botocore sends it over http: a SigV4 Authorization (not a valid signature: the
 * harness does not check them), the payload's SHA-256 in x-amz-content-sha256; `headers` override.
 */
function raw(method: string, path: string, headers: Record<string, string | number>, body?: Buffer): Promise<RawResponse> {
  const url = new URL(server.endpoint);
  const amzDate = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const all: Record<string, string | number> = {
    host: url.host,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': createHash('sha256')
      .update(body ?? Buffer.alloc(0))
      .digest('hex'),
    authorization: `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
    ...headers,
  };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers: all }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const crc32b64 = (b: Buffer): string => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(b) >>> 0);
  return out.toString('base64');
};

/** botocore's aws-chunked body with a trailing checksum (STREAMING-UNSIGNED-PAYLOAD-TRAILER), in `chunk`-byte chunks. */
function unsignedTrailerBody(data: Buffer, chunk: number, trailer: string): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) {
    const c = data.subarray(i, i + chunk);
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`0\r\n${trailer}\r\n\r\n`));
  return Buffer.concat(parts);
}

/** A SigV4 streaming body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]): signed chunks, an optional signed trailer. */
function signedChunkedBody(data: Buffer, chunk: number, trailer?: string): Buffer {
  const sig = (s: string): string => createHmac('sha256', 'k').update(s).digest('hex');
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) {
    const c = data.subarray(i, i + chunk);
    parts.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${sig(c.toString('hex'))}\r\n`), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`0;chunk-signature=${sig('')}\r\n`));
  parts.push(Buffer.from(trailer ? `${trailer}\r\nx-amz-trailer-signature:${sig(trailer)}\r\n\r\n` : '\r\n'));
  return Buffer.concat(parts);
}

const payload = (n: number, seed = 1): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
};

before(async () => {
  for (const k of [
    'AWS_ENDPOINT_URL_S3',
    'AWS_ENDPOINT_URL',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
  ]) {
    savedEnv[k] = process.env[k];
  }
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
  server = await startS3Server({ buckets: [BUCKET, 'fidelity-other'] });
  s3 = client();
});

after(async () => {
  s3?.destroy();
  await server?.stop();
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('harness S3: credentials', () => {
  it("accepts any access key: LocalStack's test/test, S3RVER, and whatever a shell exports", async () => {
    for (const [id, secret] of [
      ['test', 'test'],
      ['S3RVER', 'S3RVER'],
      ['AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
    ] as const) {
      const c = client(id, secret);
      await c.send(new PutObjectCommand({ Bucket: BUCKET, Key: `creds/${id}`, Body: id }));
      const got = await c.send(new GetObjectCommand({ Bucket: BUCKET, Key: `creds/${id}` }));
      assert.equal(await got.Body!.transformToString(), id);
      c.destroy();
    }
  });

  it("the project's own S3 client works with whatever keys the shell exports (npm run local crashed on them at start-up)", async () => {
    process.env['AWS_ENDPOINT_URL_S3'] = server.endpoint;
    process.env['AWS_ACCESS_KEY_ID'] = 'AKIAIOSFODNN7EXAMPLE';
    process.env['AWS_SECRET_ACCESS_KEY'] = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const own = await s3Client();
    await own.send(new CreateBucketCommand({ Bucket: 'fidelity-created' }));
    await putS3Object('s3://fidelity-created/a.txt', Buffer.from('a'));
    assert.deepEqual(
      (await listS3('s3://fidelity-created/')).objects.map((o) => o.key),
      ['a.txt'],
    );
  });
});

describe('harness S3: uploads from clients with default settings', () => {
  it('a default SDK v3 client streaming a file (PutObject with a stream body) stores exactly the file', async () => {
    const dir = tempDir('fanout-fidelity-');
    const file = join(dir, 'data.bin');
    const data = payload(300_000);
    fs.writeFileSync(file, data);
    const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk/file.bin', Body: fs.createReadStream(file) }));
    // The default client sent aws-chunked with a trailing CRC32: the object is the file, not the framing.
    assert.equal(put.ChecksumCRC32, crc32b64(data));
    const got = await bytesOf('sdk/file.bin');
    assert.equal(got.body.length, data.length);
    assert.ok(got.body.equals(data));
    // A Readable of known length too.
    const small = payload(1234, 3);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'sdk/stream.bin', Body: Readable.from([small]), ContentLength: small.length }));
    assert.ok((await bytesOf('sdk/stream.bin')).body.equals(small));
    // GET with checksum mode (the default client asks for it) returns the stored checksum, and validates it.
    const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'sdk/stream.bin', ChecksumMode: 'ENABLED' }));
    assert.equal(r.ChecksumCRC32, crc32b64(small));
    await r.Body!.transformToByteArray();
  });

  it('lib-storage uploads a file stream, single-part and multipart, byte-exact', async () => {
    const dir = tempDir('fanout-fidelity-');
    for (const [name, size] of [
      ['small', 200_000],
      ['large', 11 * 1024 * 1024 + 17],
    ] as const) {
      const file = join(dir, `${name}.bin`);
      const data = payload(size, size);
      fs.writeFileSync(file, data);
      await new Upload({ client: s3, params: { Bucket: BUCKET, Key: `lib/${name}.bin`, Body: fs.createReadStream(file) } }).done();
      const got = await bytesOf(`lib/${name}.bin`);
      assert.equal(got.body.length, size, name);
      assert.equal(createHash('md5').update(got.body).digest('hex'), createHash('md5').update(data).digest('hex'), name);
    }
  });

  it('PutObject as the AWS CLI v1 sends it over http: CRC32 in a header, the payload SHA-256 signed, Expect: 100-continue', async () => {
    const data = payload(3000, 11);
    const headers = {
      'x-amz-sdk-checksum-algorithm': 'CRC32',
      'content-type': 'application/octet-stream',
      expect: '100-continue',
      'x-amz-checksum-crc32': crc32b64(data),
      'content-length': data.length,
    };
    const ok = await raw('PUT', `/${BUCKET}/cli1/f.bin`, headers, data);
    assert.equal(ok.status, 200, ok.body);
    assert.ok((await bytesOf('cli1/f.bin')).body.equals(data));
    const bad = await raw('PUT', `/${BUCKET}/cli1/g.bin`, { ...headers, 'x-amz-checksum-crc32': crc32b64(Buffer.from('x')) }, data);
    assert.equal(bad.status, 400);
    assert.match(bad.body, /<Code>BadDigest<\/Code>/);
    const badSha = await raw('PUT', `/${BUCKET}/cli1/h.bin`, { ...headers, 'x-amz-content-sha256': 'ab'.repeat(32) }, data);
    assert.equal(badSha.status, 400);
    assert.match(badSha.body, /XAmzContentSHA256Mismatch/);
  });

  it('aws-chunked as botocore sends it over HTTPS and AWS CLI v2 (unsigned payload, trailing CRC32) is decoded and its checksum verified', async () => {
    const data = payload(70_000, 9);
    const body = unsignedTrailerBody(data, 65_536, `x-amz-checksum-crc32:${crc32b64(data)}`);
    const headers = {
      'content-encoding': 'aws-chunked',
      'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      'x-amz-decoded-content-length': data.length,
      'x-amz-trailer': 'x-amz-checksum-crc32',
      'x-amz-sdk-checksum-algorithm': 'CRC32',
      'content-length': body.length,
      'content-type': 'application/octet-stream',
    };
    const ok = await raw('PUT', `/${BUCKET}/cli/data.parquet`, headers, body);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers['x-amz-checksum-crc32'], crc32b64(data));
    const got = await bytesOf('cli/data.parquet');
    assert.ok(got.body.equals(data));
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'cli/data.parquet' }));
    assert.equal(head.ContentEncoding, undefined, 'aws-chunked is a transfer framing, not stored');

    // A wrong trailing checksum: 400 BadDigest, and nothing stored.
    const bad = unsignedTrailerBody(data, 65_536, `x-amz-checksum-crc32:${crc32b64(Buffer.from('other'))}`);
    const r = await raw('PUT', `/${BUCKET}/cli/bad.parquet`, { ...headers, 'content-length': bad.length }, bad);
    assert.equal(r.status, 400);
    assert.match(r.body, /<Code>BadDigest<\/Code>/);
    assert.match(r.body, /The CRC32 you specified did not match the calculated checksum/);
    assert.equal((await raw('HEAD', `/${BUCKET}/cli/bad.parquet`, {})).status, 404);

    // x-amz-decoded-content-length that does not match the chunks: refused.
    const short = await raw('PUT', `/${BUCKET}/cli/short.parquet`, { ...headers, 'x-amz-decoded-content-length': data.length + 1 }, body);
    assert.equal(short.status, 400);
    assert.match(short.body, /IncompleteBody/);
  });

  it('SigV4 streaming bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, with and without a trailer) are decoded', async () => {
    const data = payload(9000, 4);
    const plain = signedChunkedBody(data, 4096);
    const r1 = await raw(
      'PUT',
      `/${BUCKET}/sig/plain.bin`,
      {
        'content-encoding': 'aws-chunked',
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'x-amz-decoded-content-length': data.length,
        'content-length': plain.length,
      },
      plain,
    );
    assert.equal(r1.status, 200, r1.body);
    assert.ok((await bytesOf('sig/plain.bin')).body.equals(data));

    const sha = createHash('sha256').update(data).digest('base64');
    const trailed = signedChunkedBody(data, 4096, `x-amz-checksum-sha256:${sha}`);
    const r2 = await raw(
      'PUT',
      `/${BUCKET}/sig/trailer.bin`,
      {
        'content-encoding': 'aws-chunked',
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
        'x-amz-decoded-content-length': data.length,
        'x-amz-trailer': 'x-amz-checksum-sha256',
        'content-length': trailed.length,
      },
      trailed,
    );
    assert.equal(r2.status, 200, r2.body);
    assert.ok((await bytesOf('sig/trailer.bin')).body.equals(data));
    const attrs = await s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'sig/trailer.bin', ObjectAttributes: ['Checksum'] }));
    assert.equal(attrs.Checksum?.ChecksumSHA256, sha);
  });

  it('Content-MD5 and x-amz-checksum-* headers are verified: InvalidDigest, BadDigest, InvalidRequest', async () => {
    const data = Buffer.from('some bytes');
    const md5 = createHash('md5').update(data).digest('base64');
    assert.equal((await raw('PUT', `/${BUCKET}/md5/ok`, { 'content-md5': md5, 'content-length': data.length }, data)).status, 200);
    const wrong = await raw(
      'PUT',
      `/${BUCKET}/md5/wrong`,
      { 'content-md5': createHash('md5').update('x').digest('base64'), 'content-length': data.length },
      data,
    );
    assert.equal(wrong.status, 400);
    assert.match(wrong.body, /<Code>BadDigest<\/Code>/);
    const malformed = await raw('PUT', `/${BUCKET}/md5/malformed`, { 'content-md5': 'not-md5', 'content-length': data.length }, data);
    assert.equal(malformed.status, 400);
    assert.match(malformed.body, /<Code>InvalidDigest<\/Code>/);
    const badCrc = await raw('PUT', `/${BUCKET}/md5/crc`, { 'x-amz-checksum-crc32': crc32b64(Buffer.from('x')), 'content-length': data.length }, data);
    assert.equal(badCrc.status, 400);
    assert.match(badCrc.body, /<Code>BadDigest<\/Code>/);
    const badValue = await raw('PUT', `/${BUCKET}/md5/crcvalue`, { 'x-amz-checksum-crc32': 'AAAA', 'content-length': data.length }, data);
    assert.equal(badValue.status, 400);
    assert.match(badValue.body, /<Code>InvalidRequest<\/Code>/);
    for (const k of ['md5/wrong', 'md5/malformed', 'md5/crc', 'md5/crcvalue']) assert.equal((await raw('HEAD', `/${BUCKET}/${k}`, {})).status, 404, k);
    // The SDK's own CRC32C / SHA-1 checksums are accepted.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'md5/c', Body: data, ChecksumAlgorithm: 'CRC32C' }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'md5/s', Body: data, ChecksumAlgorithm: 'SHA1' }));
  });
});

describe('harness S3: reads', () => {
  it('a suffix range returns the last N bytes with a correct Content-Range; open and clamped ranges too', async () => {
    const data = payload(100, 5);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'range/x', Body: data }));
    const last8 = await bytesOf('range/x', 'bytes=-8');
    assert.equal(last8.status, 206);
    assert.ok(last8.body.equals(data.subarray(92)));
    assert.equal(last8.contentRange, 'bytes 92-99/100');
    const whole = await bytesOf('range/x', 'bytes=-500');
    assert.ok(whole.body.equals(data));
    assert.equal(whole.contentRange, 'bytes 0-99/100');
    const open = await bytesOf('range/x', 'bytes=90-');
    assert.ok(open.body.equals(data.subarray(90)));
    assert.equal(open.contentRange, 'bytes 90-99/100');
    const clamped = await bytesOf('range/x', 'bytes=95-200');
    assert.ok(clamped.body.equals(data.subarray(95)));
    assert.equal(clamped.contentRange, 'bytes 95-99/100');
    const past = await raw('GET', `/${BUCKET}/range/x`, { range: 'bytes=100-' });
    assert.equal(past.status, 416);
    assert.match(past.body, /InvalidRange/);
  });

  it('conditional PUTs and GETs: If-None-Match: * and If-Match on PUT, If-Match / If-None-Match on GET', async () => {
    const first = await raw('PUT', `/${BUCKET}/cond/a`, { 'if-none-match': '*', 'content-length': 3 }, Buffer.from('one'));
    assert.equal(first.status, 200);
    const etag = first.headers.etag!;
    const again = await raw('PUT', `/${BUCKET}/cond/a`, { 'if-none-match': '*', 'content-length': 3 }, Buffer.from('two'));
    assert.equal(again.status, 412);
    assert.match(again.body, /PreconditionFailed/);
    const wrongMatch = await raw('PUT', `/${BUCKET}/cond/a`, { 'if-match': '"0123"', 'content-length': 3 }, Buffer.from('two'));
    assert.equal(wrongMatch.status, 412);
    const missing = await raw('PUT', `/${BUCKET}/cond/none`, { 'if-match': etag, 'content-length': 3 }, Buffer.from('two'));
    assert.equal(missing.status, 404);
    assert.equal((await bytesOf('cond/a')).body.toString(), 'one');
    const rightMatch = await raw('PUT', `/${BUCKET}/cond/a`, { 'if-match': etag, 'content-length': 5 }, Buffer.from('three'));
    assert.equal(rightMatch.status, 200);
    const newEtag = rightMatch.headers.etag!;
    assert.equal((await raw('GET', `/${BUCKET}/cond/a`, { 'if-none-match': newEtag })).status, 304);
    assert.equal((await raw('GET', `/${BUCKET}/cond/a`, { 'if-match': etag })).status, 412);
    const g = await raw('GET', `/${BUCKET}/cond/a`, { 'if-match': newEtag });
    assert.equal(g.status, 200);
    assert.equal(g.body, 'three');
    // The SDK's IfNoneMatch parameter.
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'cond/a', Body: 'x', IfNoneMatch: '*' })),
      (e: Error) => e.name === 'PreconditionFailed',
    );
  });

  it('GetObjectAttributes: ETag, size, storage class, checksum, parts of a multipart object', async () => {
    const data = Buffer.from('attributes');
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'attr/one', Body: data }));
    const a = await s3.send(
      new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'attr/one', ObjectAttributes: ['ETag', 'Checksum', 'ObjectSize', 'StorageClass', 'ObjectParts'] }),
    );
    assert.equal(a.ETag, createHash('md5').update(data).digest('hex'));
    assert.equal(a.ObjectSize, data.length);
    assert.equal(a.StorageClass, 'STANDARD');
    assert.equal(a.Checksum?.ChecksumCRC32, crc32b64(data));
    assert.ok(a.LastModified instanceof Date);
    assert.equal(a.ObjectParts, undefined);
    await assert.rejects(
      s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: 'attr/missing', ObjectAttributes: ['ETag'] })),
      (e: Error) => e.name === 'NoSuchKey',
    );
  });
});

describe('harness S3: cached lookups', () => {
  // The server caches bucket configs and existing buckets, and the proxy reads object metadata in
  // process (localstack/s3-server.ts, s3-proxy.ts): every change must still show on the next request.
  it('bucket configs, bucket deletion and re-creation, and overwritten objects are seen at once', async () => {
    const b = 'fidelity-cache';
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    await assert.rejects(() => s3.send(new GetBucketCorsCommand({ Bucket: b })), /CORS/);
    const rule = { AllowedMethods: ['GET'], AllowedOrigins: ['https://example.com'] };
    await s3.send(new PutBucketCorsCommand({ Bucket: b, CORSConfiguration: { CORSRules: [rule] } }));
    const cors = await s3.send(new GetBucketCorsCommand({ Bucket: b }));
    assert.deepEqual(cors.CORSRules?.[0]?.AllowedOrigins, ['https://example.com']);
    await s3.send(new DeleteBucketCorsCommand({ Bucket: b }));
    await assert.rejects(() => s3.send(new GetBucketCorsCommand({ Bucket: b })), /CORS/);

    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'first' }));
    const h1 = await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'k' }));
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'second, longer' }));
    const r = await s3.send(new GetObjectCommand({ Bucket: b, Key: 'k', IfMatch: (await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'k' }))).ETag }));
    assert.equal(await r.Body!.transformToString(), 'second, longer');
    await assert.rejects(() => s3.send(new GetObjectCommand({ Bucket: b, Key: 'k', IfMatch: h1.ETag })), { name: 'PreconditionFailed' });

    // A copy onto an existing key (same size: only its content and metadata change).
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'src', Body: 'second, LONGER', ContentType: 'text/x-copied' }));
    await s3.send(new CopyObjectCommand({ Bucket: b, Key: 'k', CopySource: `${b}/src` }));
    const copied = await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'k' }));
    assert.equal(copied.ContentType, 'text/x-copied');
    assert.equal(copied.ETag, (await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'src' }))).ETag);
    assert.equal(await (await s3.send(new GetObjectCommand({ Bucket: b, Key: 'k' }))).Body!.transformToString(), 'second, LONGER');
    await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'src' }));
    await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'k' }));
    await assert.rejects(() => s3.send(new GetObjectCommand({ Bucket: b, Key: 'k' })), { name: 'NoSuchKey' });
    await s3.send(new DeleteBucketCommand({ Bucket: b }));
    await assert.rejects(() => s3.send(new GetObjectCommand({ Bucket: b, Key: 'k' })), { name: 'NoSuchBucket' });
    await assert.rejects(() => s3.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'x' })), { name: 'NoSuchBucket' });
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'k', Body: 'again' }));
    assert.equal(await (await s3.send(new GetObjectCommand({ Bucket: b, Key: 'k' }))).Body!.transformToString(), 'again');
  });
});

describe('harness S3: plain requests served by the proxy', () => {
  // Plain GET / HEAD / PUT / CopyObject and listings are answered from s3rver's store in the child
  // (no second HTTP hop); they must answer exactly as before: headers, metadata, errors, order.
  it('GET and HEAD return the stored headers and user metadata; a missing key is NoSuchKey, a missing bucket NoSuchBucket', async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'plain/a.json', Body: '{"a":1}', ContentType: 'application/json', Metadata: { owner: 'x' } }));
    const h = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'plain/a.json' }));
    assert.equal(h.ContentType, 'application/json');
    assert.equal(h.ContentLength, 7);
    assert.deepEqual(h.Metadata, { owner: 'x' });
    assert.equal(h.AcceptRanges, 'bytes');
    assert.ok(h.LastModified instanceof Date && h.ETag === `"${createHash('md5').update('{"a":1}').digest('hex')}"`);
    const g = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'plain/a.json' }));
    assert.equal(await g.Body!.transformToString(), '{"a":1}');
    assert.equal(g.ETag, h.ETag);
    assert.deepEqual(g.Metadata, { owner: 'x' });
    const r = await raw('GET', `/${BUCKET}/plain/a.json`, { range: 'bytes=1-3' });
    assert.equal(r.status, 206);
    assert.equal(r.body, '"a"');
    assert.equal(r.headers['content-range'], 'bytes 1-3/7');
    await assert.rejects(() => s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'plain/none' })), { name: 'NoSuchKey' });
    await assert.rejects(() => s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'plain/none' })), { name: 'NotFound' });
    await assert.rejects(() => s3.send(new GetObjectCommand({ Bucket: 'fidelity-none', Key: 'k' })), { name: 'NoSuchBucket' });
  });

  it('CopyObject keeps content, ETag, type and metadata (hive keys with = included); a missing source is NoSuchKey', async () => {
    const src = 'plain/dt=2026-11-30/part-0.json';
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: src, Body: 'copied', ContentType: 'text/x-src', Metadata: { k: 'v' } }));
    const c = await s3.send(
      new CopyObjectCommand({
        Bucket: 'fidelity-other',
        Key: 'out/dt=2026-11-30/p.json',
        CopySource: `${BUCKET}/${src.split('/').map(encodeURIComponent).join('/')}`,
      }),
    );
    const h = await s3.send(new HeadObjectCommand({ Bucket: 'fidelity-other', Key: 'out/dt=2026-11-30/p.json' }));
    assert.equal(c.CopyObjectResult?.ETag, h.ETag);
    assert.ok(c.CopyObjectResult?.LastModified instanceof Date);
    assert.equal(h.ContentType, 'text/x-src');
    assert.deepEqual(h.Metadata, { k: 'v' });
    assert.equal(
      await (await s3.send(new GetObjectCommand({ Bucket: 'fidelity-other', Key: 'out/dt=2026-11-30/p.json' }))).Body!.transformToString(),
      'copied',
    );
    await assert.rejects(() => s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'plain/c', CopySource: `${BUCKET}/plain/none` })), { name: 'NoSuchKey' });
  });

  it("listings come in S3's key order, nested keys included, and page with StartAfter and continuation tokens", async () => {
    const keys = ['order/b', 'order/a/2', 'order/a/10', 'order/a-b', 'order/c/d/e', 'order/a'];
    for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k }));
    const sorted = [...keys].sort();
    assert.deepEqual(
      (await listS3(`s3://${BUCKET}/order/`)).objects.map((o) => o.key),
      sorted,
    );
    assert.deepEqual(
      (await listS3(`s3://${BUCKET}/order/`, { pageSize: 2 })).objects.map((o) => o.key),
      sorted,
    );
    const after = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'order/', StartAfter: 'order/a/2' }));
    assert.deepEqual(
      after.Contents?.map((o) => o.Key),
      sorted.filter((k) => k > 'order/a/2'),
    );
    const level = await listS3(`s3://${BUCKET}/order/`, { delimiter: '/' });
    assert.deepEqual(
      level.objects.map((o) => o.key),
      ['order/a', 'order/a-b', 'order/b'],
    );
    assert.deepEqual(level.prefixes, [`s3://${BUCKET}/order/a/`, `s3://${BUCKET}/order/c/`]);
  });
});

describe('harness S3: request counts', () => {
  // The harness benches report S3 requests per partition from these counts (bench/cloud-partitions.ts).
  it('counts requests by operation and by key shape (run ids and numbers folded); reset clears them', async () => {
    await server.requests(true);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/r-1/stage-0/metrics-00001.json', Body: '{}' }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/r-2/stage-0/metrics-00002.json', Body: '{}' }));
    await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'runs/r-1/stage-0/metrics-00001.json' }));
    await bytesOf('runs/r-1/stage-0/metrics-00001.json', 'bytes=-1');
    await bytesOf('runs/r-1/stage-0/metrics-00001.json');
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'copied', CopySource: `${BUCKET}/runs/r-1/stage-0/metrics-00001.json` }));
    await listS3(`s3://${BUCKET}/runs/r-1/`);
    const counts = await server.requests();
    assert.deepEqual(Object.fromEntries(Object.entries(counts).filter(([k]) => !k.includes('/'))), {
      PutObject: 2,
      HeadObject: 1,
      'GetObject range': 1,
      GetObject: 1,
      CopyObject: 1,
      ListObjects: 1,
    });
    assert.equal(counts[`PutObject ${BUCKET}/runs/<run>/stage-N/metrics-N.json`], 2);
    assert.equal(counts[`ListObjects ${BUCKET}/runs/<run>/`], 1);
    assert.deepEqual(await server.requests(true), counts);
    assert.deepEqual(await server.requests(), {});
  });
});

describe('harness S3: store work', () => {
  it('a PUT caches the metadata it wrote: GET and HEAD after it read no metadata file, and answer as s3rver would', async () => {
    const keys = Array.from({ length: 6 }, (_, i) => `store-work/obj-${i}.bin`);
    const bodies = keys.map((_, i) => randomBytes(1000 + i * 777));
    const before = (await server.storeStats()).metadataFileReads;
    for (const [i, k] of keys.entries()) {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: bodies[i], ContentType: 'application/x-test', Metadata: { n: String(i) } }));
    }
    for (const [i, k] of keys.entries()) {
      const h = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: k }));
      assert.equal(h.ETag, `"${createHash('md5').update(bodies[i]!).digest('hex')}"`);
      assert.equal(h.ContentLength, bodies[i]!.length);
      assert.equal(h.ContentType, 'application/x-test');
      assert.deepEqual(h.Metadata, { n: String(i) });
      assert.ok(h.LastModified instanceof Date && Date.now() - h.LastModified.getTime() < 120_000);
      assert.ok((await bytesOf(k)).body.equals(bodies[i]!));
      const r = await bytesOf(k, 'bytes=10-99');
      assert.ok(r.body.equals(bodies[i]!.subarray(10, 100)));
      assert.equal(r.status, 206);
      assert.equal(r.contentRange, `bytes 10-99/${bodies[i]!.length}`);
    }
    assert.equal((await server.storeStats()).metadataFileReads - before, 0, "no metadata file read: not for the PUT's event, nor for the reads after it");
  });

  it('objects over 1 MiB stream from their file; smaller ones are read whole; both byte-exact, ranges too', async () => {
    for (const size of [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20]) {
      const body = randomBytes(size);
      const key = `store-work/size-${size}.bin`;
      await putS3Object(`s3://${BUCKET}/${key}`, body);
      assert.ok((await bytesOf(key)).body.equals(body), `${size} bytes`);
      assert.ok((await bytesOf(key, 'bytes=-5')).body.equals(body.subarray(size - 5)), `${size} bytes, suffix`);
      const from = Math.max(0, size - (1 << 20) - 3);
      assert.ok((await bytesOf(key, `bytes=${from}-`)).body.equals(body.subarray(from)), `${size} bytes, open range`);
    }
  });
});

describe('harness S3: multipart uploads', () => {
  it('ListMultipartUploads, ListParts and AbortMultipartUpload; an aborted upload is gone (NoSuchUpload)', async () => {
    const key = 'mp/aborted.bin';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part1 = payload(5 * 1024 * 1024, 1);
    const part2 = payload(1000, 2);
    const p1 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: part1 }));
    await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: part2 }));
    const other = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'elsewhere/x' }));

    const all = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    assert.deepEqual(all.Uploads?.map((u) => [u.Key, u.UploadId]).sort(), [
      ['elsewhere/x', other.UploadId],
      [key, UploadId],
    ]);
    const mp = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'mp/' }));
    assert.deepEqual(
      mp.Uploads?.map((u) => u.UploadId),
      [UploadId],
    );
    assert.ok(mp.Uploads?.[0]?.Initiated instanceof Date);

    const parts = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId }));
    assert.deepEqual(
      parts.Parts?.map((p) => [p.PartNumber, p.Size]),
      [
        [1, part1.length],
        [2, part2.length],
      ],
    );
    assert.equal(parts.Parts?.[0]?.ETag, p1.ETag);

    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId }));
    const left = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'mp/' }));
    assert.equal(left.Uploads?.length ?? 0, 0);
    for (const op of [
      () => s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId })),
      () => s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 3, Body: 'x' })),
      () => s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }] } })),
      () => s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId })),
    ]) {
      await assert.rejects(op(), (e: Error) => e.name === 'NoSuchUpload');
    }
    assert.equal((await raw('HEAD', `/${BUCKET}/${key}`, {})).status, 404);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'elsewhere/x', UploadId: other.UploadId }));
  });

  it("CompleteMultipartUpload checks the parts (InvalidPart, EntityTooSmall) and gives S3's multipart ETag", async () => {
    const key = 'mp/complete.bin';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const small = payload(1000, 1);
    const big = payload(5 * 1024 * 1024, 2);
    const a = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: small }));
    const b = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: big }));
    const complete = (Parts: { PartNumber: number; ETag: string | undefined }[]) =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts } }));
    await assert.rejects(complete([{ PartNumber: 1, ETag: '"0123456789abcdef0123456789abcdef"' }]), (e: Error) => e.name === 'InvalidPart');
    await assert.rejects(
      complete([
        { PartNumber: 1, ETag: a.ETag },
        { PartNumber: 2, ETag: b.ETag },
      ]),
      (e: Error) => e.name === 'EntityTooSmall',
    );
    // Part 1 again, large enough now: the upload completes with md5(part MD5s)-2.
    const a2 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: big }));
    const done = await complete([
      { PartNumber: 1, ETag: a2.ETag },
      { PartNumber: 2, ETag: b.ETag },
    ]);
    const md5 = (x: Buffer): Buffer => createHash('md5').update(x).digest();
    const want = `"${createHash('md5')
      .update(Buffer.concat([md5(big), md5(big)]))
      .digest('hex')}-2"`;
    assert.equal(done.ETag, want);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(head.ETag, want);
    assert.equal(head.ContentLength, 2 * big.length);
    const attrs = await s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: key, ObjectAttributes: ['ObjectParts'] }));
    assert.equal(attrs.ObjectParts?.TotalPartsCount, 2);
  });
});

describe('harness S3: events', () => {
  let bridge: EventBridgeBridge;
  after(async () => bridge?.stop());

  it('one event per write, an identical re-upload included, with the reason S3 gives', async () => {
    bridge = await startEventBridgeBridge({
      buckets: [BUCKET],
      rules: [],
      sfnEndpoint: 'http://127.0.0.1:9',
      stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:none',
      s3Endpoint: server.endpoint,
      pollIntervalMs: 60_000,
    });
    const same = Buffer.from('identical bytes');
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ev/same.bin', Body: same }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ev/same.bin', Body: same }));
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: 'ev/copy.bin', CopySource: `${BUCKET}/ev/same.bin` }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'ev/multi.bin' }));
    const part = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: 'ev/multi.bin', UploadId, PartNumber: 1, Body: same }));
    await s3.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: 'ev/multi.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }),
    );
    // A failed (conditional) write and a write to an unwatched bucket are no events here.
    await assert.rejects(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'ev/same.bin', Body: 'x', IfNoneMatch: '*' })));
    await s3.send(new PutObjectCommand({ Bucket: 'fidelity-other', Key: 'ev/else.bin', Body: same }));
    await bridge.poll();
    const seen = bridge.events.map((e) => {
      const d = e['detail'] as { object: { key: string; size: number; etag: string }; reason: string };
      return [d.object.key, d.reason, d.object.size];
    });
    assert.deepEqual(seen, [
      ['ev/same.bin', 'PutObject', same.length],
      ['ev/same.bin', 'PutObject', same.length],
      ['ev/copy.bin', 'CopyObject', same.length],
      ['ev/multi.bin', 'CompleteMultipartUpload', same.length],
    ]);
    const etags = bridge.events.map((e) => (e['detail'] as { object: { etag: string } }).object.etag);
    assert.equal(etags[0], createHash('md5').update(same).digest('hex'));
    assert.match(etags[3]!, /-1$/);
  });
});
