// The parquet-testing files fanout reads through hyparquet, over s3:// (a local s3rver child process):
// the fallback reader takes the same ranged reads (S3Blob) as parquet-wasm.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { putS3Object } from '../src/io/s3/index.ts';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import { EXPECTED, ROOT, compare, readAll } from './parquet-corpus-helpers.ts';

describe('parquet-testing corpus over s3://', () => {
  // The files parquet-wasm cannot read take hyparquet over the same ranged reads (S3Blob).
  const FILES = [
    'data/repeated_no_annotation.parquet',
    'data/dict-page-offset-zero.parquet',
    'data/old_list_structure.parquet',
    'data/map_no_value.parquet',
    'data/nested_maps.snappy.parquet',
  ];
  const KEYS = [
    'AWS_ENDPOINT_URL_S3',
    'AWS_ENDPOINT_URL',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_PROFILE',
    'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
  ];
  const saved: Record<string, string | undefined> = {};
  let server: S3Server;
  before(async () => {
    for (const k of KEYS) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
    server = await startS3Server({ buckets: ['corpus'] });
    process.env.AWS_ENDPOINT_URL_S3 = server.endpoint; // no credentials: the local fallback applies
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    for (const f of FILES) await putS3Object(`s3://corpus/${f}`, fs.readFileSync(join(ROOT, f)));
  });
  after(async () => {
    await server?.stop();
    for (const k of KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  for (const f of FILES) {
    it(f, async () => {
      const exp = EXPECTED[f]!;
      assert.ok('columns' in exp);
      compare(`s3://corpus/${f}`, await readAll(`s3://corpus/${f}`), exp);
    });
  }
});
