// cloud.stop() with a run in flight ends everything: queued invocations are rejected, no Lambda
// environment starts afterwards, the run fails with an error naming it and the endpoint that went
// away, and the process exits by itself (no thread, child process or socket left behind).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir, writeSample } from './helpers.ts';

interface Outcome {
  atStop: Record<string, number>;
  afterStop: Record<string, number>;
  later: Record<string, number>;
  stopMs: number;
  outcome: { ok: boolean; name?: string; message?: string; runId?: string | null };
  sfnEndpoint: string;
  s3Endpoint: string;
}

describe('local cloud stop', () => {
  it('stop() with invocations queued starts no worker, fails the run by name and endpoint, and lets the process exit', async () => {
    const script = join(import.meta.dirname, 'fixtures', 'stop-scenario.ts');
    const data = join(tempDir(), 'many.parquet');
    await writeSample(data, 0, 1600, 8); // 200 row groups: 200 partitions
    const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', script, data], {
      env: { ...process.env, FANOUT_PROGRESS: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let reportedAt = 0;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!reportedAt && stdout.includes('"outcome"')) reportedAt = Date.now();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    // Start-up and the run take a while on a busy machine; a process that never exits takes forever.
    const limitMs = 150_000;
    let exitedAt = 0;
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('did not exit');
      }, limitMs);
      child.on('exit', (c, sig) => {
        exitedAt = Date.now();
        clearTimeout(timer);
        resolve(c ?? sig ?? 'unknown');
      });
    });
    const line = stdout.trim().split('\n').pop() ?? '';
    assert.ok(line.startsWith('{'), `the scenario printed its result (exit ${code}); stderr: ${stderr}`);
    const r = JSON.parse(line) as Outcome;
    assert.equal(code, 0, `the process exits by itself after stop() (within ${limitMs / 1000} s); stderr: ${stderr}`);
    // Leftovers would hold it until something times out (the Stage Lambda's 120 s): it exits at once.
    assert.ok(exitedAt - reportedAt < 15_000, `exited ${exitedAt - reportedAt} ms after its report`);
    assert.ok(r.atStop['stage']! >= 20, 'invocations were queued when stop() was called');
    assert.ok(r.stopMs < 30_000, `stop() resolved in ${r.stopMs} ms`);
    assert.equal(r.later['lambdaEnvironments'], r.afterStop['lambdaEnvironments'], 'no Lambda environment started after stop()');
    assert.ok(r.afterStop['lambdaEnvironments']! <= 2 + 3, `at most the configured environments ever started: ${r.afterStop['lambdaEnvironments']}`);
    assert.equal(r.outcome.ok, false, 'the run in flight fails');
    assert.equal(r.outcome.name, 'RunFailedError');
    assert.ok(r.outcome.runId, 'the error carries the run id');
    assert.match(r.outcome.message!, new RegExp(`^run ${r.outcome.runId}\\b`));
    assert.ok(
      r.outcome.message!.includes(r.sfnEndpoint) || r.outcome.message!.includes(r.s3Endpoint),
      `the error names the endpoint that went away: ${r.outcome.message}`,
    );
  });
});
