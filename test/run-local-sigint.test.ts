// Issue 11 item 3: Ctrl-C (SIGINT) in `npm run local` stops the running execution with StopExecution
// (it ends ABORTED) and commits no output: the stack is spawned as the npm script runs it, a file is
// uploaded, and SIGINT arrives while the run's stage is still working.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { tempDir, writeSample } from './helpers.ts';

const root = join(import.meta.dirname, '..');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

describe('npm run local: Ctrl-C', () => {
  it('stops the running execution (ABORTED) and commits nothing', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    const s3Dir = join(dir, 's3');
    const file = join(dir, 'in.parquet');
    await writeSample(file, 0, 200, 200);
    const child = spawn(
      process.execPath,
      [
        '--conditions=development',
        '--import',
        'tsx',
        join(root, 'localstack', 'run-local.ts'),
        '--s3-dir',
        s3Dir,
        '--pipeline',
        join(import.meta.dirname, 'fixtures', 'slow-pipeline.ts'),
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FANOUT_PROGRESS: '0' } },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const waitFor = async (re: RegExp, ms: number): Promise<RegExpExecArray> => {
      const until = Date.now() + ms;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (Date.now() > until || child.exitCode !== null) throw new Error(`no ${re} in the output:\n${out}\n${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      const endpoint = (await waitFor(/S3 endpoint\s+(http:\/\/127\.0\.0\.1:\d+)/, 60_000))[1]!;
      await waitFor(/Watching for uploads/, 30_000);
      const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
      await s3.send(new PutObjectCommand({ Bucket: 'fanout-input', Key: 'incoming/in.parquet', Body: readFileSync(file) }));
      s3.destroy();
      // The Plan step is done and the slow stage is running.
      await waitFor(/planned 1 stage\(s\)/, 30_000);
      child.kill('SIGINT');
      assert.equal(await exited, 0, `exit code; stderr: ${err}`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    assert.match(out, /stopping…/);
    assert.match(out, /\] ABORTED: stopped by Ctrl-C before its output was committed/);
    assert.doesNotMatch(out, /SUCCEEDED/);
    const files = filesUnder(s3Dir);
    assert.ok(
      files.some((f) => f.includes('plan.json')),
      `the run was planned (its plan is in the kept S3 data): ${files.join(', ')}`,
    );
    assert.deepEqual(
      files.filter((f) => f.includes('fanout-output')),
      [],
      'nothing was committed to the output',
    );
    assert.ok(!files.some((f) => f.includes('summary.json')), 'Finalize never ran');
  });
});
