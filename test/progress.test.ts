import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { progressEnabled } from '../src/progress.ts';

const script = join(import.meta.dirname, 'fixtures', 'progress-run.ts');

function run(env: Record<string, string | undefined>): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...process.execArgv, script], {
    env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr };
}

describe('progress', () => {
  it('is off when not a TTY, in CI, or with FANOUT_PROGRESS=0', () => {
    const saved = { ...process.env };
    try {
      process.env['FANOUT_PROGRESS'] = '0';
      assert.equal(progressEnabled(), false);
      delete process.env['FANOUT_PROGRESS'];
      process.env['CI'] = 'true';
      assert.equal(progressEnabled(), false);
    } finally {
      process.env = saved;
    }
    const quiet = run({ CI: 'true', FANOUT_PROGRESS: undefined });
    assert.match(quiet.stdout, /rows=5000/);
    assert.doesNotMatch(quiet.stderr, /partitions/);
  });

  it('shows partitions, rows and UDF counters when forced on', () => {
    const loud = run({ FANOUT_PROGRESS: '1' });
    assert.match(loud.stdout, /rows=5000/);
    assert.match(loud.stderr, /1\/1 partitions/);
    assert.match(loud.stderr, /udf fixtures\.tagged: in 5000 out 5000/);
    assert.match(loud.stderr, /seen=5000/);
  });
});
