// `fanout runs list|show|cancel` over the harness's work bucket and over a local work directory,
// and the run dashboard in a real headless Chromium (Debian's chromium, driven by playwright-core).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { chromium } from 'playwright-core';
import type { RunDetail, RunListEntry } from '../src/aws/history.ts';
import { finalizeRun, planRun, preparePlan, runStagePartition } from '../src/aws/run.ts';
import { executionArnOf, main } from '../src/cli/main.ts';
import { startDashboard } from '../src/dashboard/server.ts';
import { putS3Object } from '../src/io/s3/index.ts';
import { LocalStore } from '../src/io/store/index.ts';
import { counted, cursed, slow } from './fixtures/history-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

const fixture = join(import.meta.dirname, 'fixtures', 'history-pipeline.ts');
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

/** Runs the command line, capturing what it prints. */
async function cli(...argv: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await main(argv, { out: (s) => lines.push(s), env: process.env });
  return { code, out: lines.join('\n') };
}

let localInput: string;
before(async () => {
  // ids 3000..4999 in row groups of 500: id 4242 is in partition 2.
  localInput = join(tempDir(), 'ids.parquet');
  await writeSample(localInput, 3000, 2000, 500);
});

describe('fanout runs over a local work directory', () => {
  it('lists and shows a run driven through the lifecycle functions', async () => {
    const dir = tempDir();
    const work = new LocalStore(dir);
    const plan = planRun(readParquet(localInput).withColumn('y', counted(col('x'))).plan, { pipeline: pathToFileURL(fixture).href, targetPartitionBytes: 1 });
    await preparePlan(work, plan, 'work');
    for (let p = 0; p < plan.sources.length; p++) await runStagePartition(work, plan.runId, 0, p);
    const list = await cli('runs', 'list', '--work', dir, '--json');
    assert.equal(list.code, 0, list.out);
    const runs = JSON.parse(list.out) as RunListEntry[];
    assert.deepEqual(
      runs.map((r) => [r.runId, r.state, r.done, r.partitions]),
      [[plan.runId, 'running', 4, 4]],
      'every partition done, not finalized yet: running',
    );
    await finalizeRun(work, plan.runId);
    const text = await cli('runs', 'list', '--work', dir);
    assert.match(text.out, /^RUN\s+STATE\s+STARTED\s+TIME\s+PARTITIONS\s+ROWS\s+INPUT$/m);
    assert.match(text.out, new RegExp(`^${plan.runId}\\s+succeeded\\s+.*\\s4/4\\s+2000\\s+.*ids\\.parquet`, 'm'));
    const show = await cli('runs', 'show', plan.runId, '--work', dir);
    assert.match(show.out, new RegExp(`^run ${plan.runId}: succeeded`));
    assert.match(show.out, /stage 0 \(lambda: history\.counted\): 4\/4 done/);
    assert.match(show.out, /history\.counted\s+2000\s+2000\s+2000\s+0\s+0\s+\d+\s+seen=2000/);
  });

  it('bad input: no work location, an unknown run, an invalid run id, a bad --limit', async () => {
    const env = { ...process.env };
    delete env['FANOUT_WORK'];
    delete env['FANOUT_WORK_BUCKET'];
    const lines: string[] = [];
    assert.equal(await main(['runs', 'list'], { out: (s) => lines.push(s), env }), 1);
    assert.match(lines.join('\n'), /no work location: pass --work/);
    const dir = tempDir();
    const missing = await cli('runs', 'show', 'nope', '--work', dir);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /run nope: no plan at .*runs\/nope\/plan\.json/);
    const bad = await cli('runs', 'show', 'a/../b', '--work', dir);
    assert.match(bad.out, /invalid run id "a\/\.\.\/b"/);
    const limit = await cli('runs', 'list', '--work', dir, '--limit', '0');
    assert.notEqual(limit.code, 0);
    assert.match(limit.out, /--limit must be a positive integer, got '0'/);
    assert.throws(() => executionArnOf('arn:aws:lambda:us-east-1:1:function:x', 'r'), /not a state machine ARN/);
  });
});

describe('fanout runs and the dashboard over the local cloud', () => {
  let cloud: LocalCloud;
  let work: string;
  let okRun: string;
  let failedRun: string;

  before(async () => {
    cloud = await startLocalCloud({ pipeline: fixture, lambdaConcurrency: 2 });
    await putS3Object(`s3://${cloud.inputBucket}/ids/ids.parquet`, readFileSync(localInput));
    process.env['AWS_ENDPOINT_URL_SFN'] = cloud.sfnEndpoint;
    work = `s3://${cloud.workBucket}`;
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const input = `s3://${cloud.inputBucket}/ids/`;
    await readParquet(input)
      .withColumn('y', counted(col('x')))
      .collect();
    const err = await readParquet(input)
      .withColumn('c', cursed(col('id')))
      .collect()
      .then(
        () => assert.fail('the cursed run should fail'),
        (e: { runId?: string }) => e,
      );
    assert.ok(err.runId, 'RunFailedError carries the run id');
    failedRun = err.runId;
    const runs = JSON.parse((await cli('runs', 'list', '--work', work, '--json')).out) as RunListEntry[];
    okRun = runs.find((r) => r.state === 'succeeded')?.runId ?? assert.fail(JSON.stringify(runs));
  });

  after(async () => {
    setRunner('native');
    await cloud?.stop();
    await shutdownWorkers();
    delete process.env['AWS_ENDPOINT_URL_SFN'];
  });

  it('runs list prints both runs, newest first, with their states', async () => {
    const r = await cli('runs', 'list', '--work', work);
    assert.equal(r.code, 0, r.out);
    const rows = r.out.split('\n').slice(1);
    assert.match(rows[0] ?? '', new RegExp(`^${failedRun}\\s+failed\\s`));
    assert.match(rows[1] ?? '', new RegExp(`^${okRun}\\s+succeeded\\s.*4/4\\s+2000\\s+s3://${cloud.inputBucket}/ids/ids\\.parquet`));
    // FANOUT_WORK_BUCKET is enough.
    const lines: string[] = [];
    await main(['runs', 'list'], { out: (s) => lines.push(s), env: { ...process.env, FANOUT_WORK_BUCKET: cloud.workBucket } });
    assert.ok(lines.join('\n').includes(okRun));
  });

  it('runs show: the failed partition with its UDF and message; timings and counters of the good run', async () => {
    const failed = await cli('runs', 'show', failedRun, '--work', work);
    assert.match(failed.out, new RegExp(`^run ${failedRun}: failed — `));
    assert.match(failed.out, /^\s+2\s+failed\s+.*UDF 'history\.cursed'.*cursed: id 4242 may not pass/m);
    const ok = JSON.parse((await cli('runs', 'show', okRun, '--work', work, '--json')).out) as RunDetail;
    assert.equal(ok.state, 'succeeded');
    assert.equal(ok.rows, 2000);
    const parts = ok.stageViews[0]?.partitions ?? [];
    assert.equal(parts.length, 4);
    for (const p of parts) {
      assert.equal(p.state, 'done');
      assert.equal(p.rows, 500);
      assert.ok(p.startedAt && p.finishedAt && p.startedAt <= p.finishedAt, JSON.stringify(p));
      assert.ok(Date.parse(p.startedAt) >= Date.parse(ok.createdAt) - 1000);
    }
    assert.equal(ok.metrics['history.counted']?.counters['seen'], 2000);
  });

  it('runs resume re-runs only the failed partition through the harness and reports why it failed again', async () => {
    const before = cloud.stats()['stage'] ?? 0;
    const r = await cli('runs', 'resume', failedRun, '--state-machine', cloud.stateMachineArn, '--work', work, '--pipeline', fixture);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`run ${failedRun}: resuming`));
    // The cause is still there (id 4242): the one unfinished partition ran again and failed the same way.
    assert.match(r.out, /history\.cursed.*cursed: id 4242 may not pass/s);
    assert.equal((cloud.stats()['stage'] ?? 0) - before, 1, 'only the failed partition ran again');
    const bad = await cli('runs', 'resume', failedRun, '--state-machine', cloud.stateMachineArn, '--work', '/tmp/not-a-bucket');
    assert.match(bad.out, /--work must be the work bucket as s3:\/\/<bucket>/);
  });

  it('runs cancel stops a running run: its execution is ABORTED', async () => {
    const pending = readParquet(`s3://${cloud.inputBucket}/ids/`)
      .withColumn('s', slow(col('x')))
      .collect()
      .then(
        () => null,
        (e: unknown) => e,
      );
    let running: RunListEntry | undefined;
    for (let i = 0; i < 100 && !running; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const runs = JSON.parse((await cli('runs', 'list', '--work', work, '--json')).out) as RunListEntry[];
      running = runs.find((r) => r.state === 'running');
    }
    assert.ok(running, 'the slow run shows as running');
    const r = await cli('runs', 'cancel', running.runId, '--state-machine', cloud.stateMachineArn, '--work', work);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`run ${running.runId}: cancelled`));
    const err = await pending;
    assert.ok(err instanceof Error, 'the action rejects');
    const sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    try {
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: executionArnOf(cloud.stateMachineArn, running.runId) }));
      assert.equal(d.status, 'ABORTED');
    } finally {
      sfn.destroy();
    }
    const shown = JSON.parse((await cli('runs', 'show', running.runId, '--work', work, '--json')).out) as RunDetail;
    assert.equal(shown.state, 'cancelled');
    assert.equal(shown.error, 'cancelled (fanout runs cancel)');
  });

  it('the dashboard lists the runs and shows a failed partition with its error, in headless Chromium', async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium is needed at ${CHROMIUM} (apt-get install chromium; .ci/run installs it), or set CHROMIUM_PATH`);
    const dash = await startDashboard({ work, port: 0 });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(dash.url);
      await page.waitForSelector(`a[href="#run=${failedRun}"]`);
      const listText = (await page.locator('main').textContent()) ?? '';
      assert.ok(listText.includes(okRun) && listText.includes(failedRun), listText);
      assert.equal((await page.locator('[data-state="succeeded"]').count()) >= 1, true);
      await page.click(`a[href="#run=${failedRun}"]`);
      await page.waitForSelector('#failures');
      const failures = (await page.locator('#failures').textContent()) ?? '';
      assert.match(failures, /cursed: id 4242 may not pass/);
      assert.match(failures, /ids\.parquet row groups 2/);
      await page.click('a[href="#"]');
      await page.click(`a[href="#run=${okRun}"]`);
      await page.waitForSelector('section.stage svg.timeline rect[data-partition="3"]');
      assert.equal(await page.locator('section.stage svg.timeline rect').count(), 4, 'one bar per partition');
      const shot = join(tempDir(), 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10_000, 'a real screenshot');
      if (process.env['FANOUT_DASHBOARD_SCREENSHOT']) await page.screenshot({ path: process.env['FANOUT_DASHBOARD_SCREENSHOT'], fullPage: true });
      assert.deepEqual(problems, [], 'no script errors');
      // The API refuses what is not a run id, and writes are not allowed.
      assert.equal((await fetch(`${dash.url}api/runs/..%2Fx`)).status, 400);
      assert.equal((await fetch(dash.url, { method: 'POST' })).status, 405);
    } finally {
      await browser.close();
      await dash.close();
    }
  });
});
