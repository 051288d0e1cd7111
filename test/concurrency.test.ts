import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mapLimit } from '../src/concurrency.ts';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('mapLimit', () => {
  it('keeps input order with at most `limit` calls in flight', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const out = await mapLimit([5, 1, 4, 2, 3, 0, 2], 3, async (x, i) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await tick(x * 3);
      inFlight--;
      return `${i}:${x}`;
    });
    assert.deepEqual(out, ['0:5', '1:1', '2:4', '3:2', '4:3', '5:0', '6:2']);
    assert.equal(maxInFlight, 3);
  });

  it('starts nothing after a failure and lets the calls in flight finish before throwing', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    await assert.rejects(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (x) => {
        started.push(x);
        if (x === 1) throw new Error('boom at 1');
        await tick(20);
        finished.push(x);
        return x;
      }),
      /boom at 1/,
    );
    // 0 was in flight when 1 failed: it finished before the rejection; 2.. never started.
    assert.deepEqual(started, [0, 1]);
    assert.deepEqual(finished, [0]);
  });

  it('handles no items and rejects a limit that is not a positive integer', async () => {
    assert.deepEqual(await mapLimit([], 4, async (x: number) => x), []);
    await assert.rejects(
      mapLimit([1], 0, async (x) => x),
      /limit must be a positive integer, got 0/,
    );
  });
});
