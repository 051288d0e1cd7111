// explain()'s money estimate: the arithmetic on a known plan (numbers computed by hand below), the
// price table's options, and the estimate as the AWS runner's explain() prints it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { col, readParquet, setRunner, PRICES_US_EAST_1, type PriceTable } from 'fanout';
import { estimateRunCost, TRANSITIONS, type CostInput } from '../src/aws/cost.ts';
import { buildStateMachineDefinition } from '../src/aws/state-machine.ts';
import { tempDir, writeSample } from './helpers.ts';

// 10 partitions of 100 MB (uncompressed), 20 row groups x 3 columns; a Lambda stage (1769 MiB = 1
// vCPU, concurrency 5) then a GPU stage on 2 tasks.
const known: CostInput = {
  partitions: 10,
  uncompressedBytes: 1e9,
  rowGroups: 20,
  columns: 3,
  stages: [
    { index: 0, executor: 'lambda', memoryMiB: 1769, concurrency: 5, slots: 0 },
    { index: 1, executor: 'ecs-gpu', memoryMiB: 1769, concurrency: 2, slots: 2 },
  ],
};

function part(e: ReturnType<typeof estimateRunCost>, prefix: string) {
  const p = e.parts.find((x) => x.item.startsWith(prefix));
  assert.ok(p, `part ${prefix} in ${e.parts.map((x) => x.item).join(', ')}`);
  return p;
}

describe('cost estimate (USD)', () => {
  it('adds up a known plan by hand, with the default us-east-1 table', () => {
    const e = estimateRunCost(known);
    assert.equal(e.region, 'us-east-1');
    assert.equal(e.asOf, PRICES_US_EAST_1.asOf);
    assert.equal(e.fallback, false);
    // Each partition: 100e6 B / 50e6 B/s at 1 vCPU = 2 s.
    // Lambda: Plan + Finalize 2 x 1 s x 1769/1024 GB = 3.455078125; stage 0: 10 x 2 s x 1769/1024 GB = 34.55078125.
    const lambda = part(e, 'Lambda compute');
    assert.equal(lambda.quantity, 38.005859375);
    assert.equal(lambda.unitUsd, 0.0000166667);
    assert.equal(part(e, 'Lambda requests').quantity, 12); // 10 partitions + Plan + Finalize
    // Transitions: 5 per run; stage 0: 3 + 10 partitions; stage 1: 3 + 2 GPU tasks.
    const sfn = part(e, 'Step Functions');
    assert.equal(sfn.quantity, 23);
    assert.equal(sfn.usd, 23 * 0.000025);
    // PUT/COPY/LIST: 4 fixed (plan.json once, summary, manifest, commit marker) + 1 copy x 10 result
    // files = 14; per stage: items 1 + 1 Finalize LIST
    // page + 10 x (14 shard writes (100 MB in 8 MiB parts: 12 parts + create + complete) + 1 marker)
    // = 152, twice = 304; progress polls: wall time (2 s control + 2 waves x 2 s + 300 s GPU
    // start-up + 5 partitions x 2 s per GPU task = 316 s) / 2 s = 158. 14 + 304 + 158 = 476.
    assert.equal(part(e, 'S3 PUT').quantity, 476);
    // GET/HEAD: 5 fixed + 20 x 3 column chunks + markers 10 x 2 stages x 2 readers + 10 Finalize
    // rows = 115; stage 0: plan + footer per partition = 20; stage 1: plan per GPU task 2 + 10 shards = 12.
    assert.equal(part(e, 'S3 GET').quantity, 147);
    // Storage: 2 stages x 1e9 B of shards for 7 days: (2e9 / 2^30) GiB x 168 h / 730 h.
    const storage = part(e, 'S3 storage');
    assert.ok(Math.abs(storage.quantity - 0.4286635411928778) < 1e-12);
    // GPU: 2 instances x (300 s start-up + 10 s work + 900 s scale-in) / 3600 = 0.67222 h of g5.xlarge at $1.006.
    const gpu = part(e, 'GPU instances (g5.xlarge)');
    assert.ok(Math.abs(gpu.quantity - 2420 / 3600) < 1e-12);
    assert.ok(Math.abs(gpu.usd - 0.6762555555555556) < 1e-12);
    for (const p of e.parts) assert.ok(Math.abs(p.usd - p.quantity * p.unitUsd) < 1e-15, p.item);
    // 0.000633431 + 0.0000024 + 0.000575 + 0.00238 + 0.0000588 + 0.009859261 + 0.676255556
    assert.ok(Math.abs(e.totalUsd - 0.6897644492594373) < 1e-9, String(e.totalUsd));
  });

  it('a run without an output commits a manifest of its results in place: no commit marker, no copies', () => {
    const write = estimateRunCost(known);
    const collect = estimateRunCost({ ...known, output: false });
    // 476 above, less the commit marker and the copies of the 10 result files.
    assert.equal(part(collect, 'S3 PUT').quantity, 465);
    assert.match(part(collect, 'S3 PUT').detail, /a manifest of the results in place/);
    assert.match(part(write, 'S3 PUT').detail, /result copies/);
    assert.equal(part(collect, 'S3 GET').quantity, part(write, 'S3 GET').quantity);
  });

  it('takes its assumptions and a user price table from the options', () => {
    const prices: PriceTable = {
      ...PRICES_US_EAST_1,
      region: 'eu-west-1',
      asOf: '2026-01-01',
      lambda: { gbSecond: { x86_64: 1, arm64: 0.5 }, request: 0 },
      ec2Hourly: { 'g6.xlarge': 2 },
    };
    const e = estimateRunCost(known, {
      prices,
      architecture: 'arm64',
      gpuInstanceType: 'g6.xlarge',
      gpuStartupSeconds: 0,
      gpuScaleInSeconds: 0,
      retentionDays: 0,
    });
    assert.equal(e.region, 'eu-west-1');
    assert.equal(part(e, 'Lambda compute').usd, 38.005859375 * 0.5);
    const gpu = part(e, 'GPU instances (g6.xlarge)');
    assert.ok(Math.abs(gpu.quantity - 20 / 3600) < 1e-12); // 2 x 10 s of work, no start-up or scale-in
    assert.equal(gpu.usd, gpu.quantity * 2);
    assert.equal(part(e, 'S3 storage').quantity, 0);
    // Another region without a built-in table: us-east-1's, flagged.
    const fb = estimateRunCost(known, { region: 'ap-south-1' });
    assert.equal(fb.region, 'us-east-1');
    assert.equal(fb.fallback, true);
    assert.throws(
      () => estimateRunCost(known, { gpuInstanceType: 'x9.huge' }),
      /no price for GPU instance type 'x9\.huge' in the us-east-1 table.*cost\.prices\.ec2Hourly/,
    );
    assert.throws(() => estimateRunCost(known, { retentionDays: -1 }), /cost option 'retentionDays' must be a non-negative number/);
  });

  it("prints the estimate and its parts in the AWS runner's explain(), with the runner's price table", async () => {
    const f = join(tempDir(), 'cost.parquet');
    await writeSample(f, 0, 4000, 1000); // 4 row groups
    try {
      setRunner('aws', {
        stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:x',
        workBucket: 'work',
        region: 'eu-west-1',
        targetPartitionBytes: 1,
        cost: { prices: { ...PRICES_US_EAST_1, region: 'eu-west-1', asOf: '2026-01-01' } },
      });
      const text = await readParquet(f).explain();
      assert.match(text, /== Cost estimate \(USD, eu-west-1 prices as of 2026-01-01\) ==/);
      // 4 partitions of one Lambda stage: 5 + 3 + 4 transitions.
      assert.match(text, /Step Functions: 12 state transitions x \$0\.0000250 = \$0\.00030/);
      assert.match(text, /Lambda requests: 6 requests/);
      assert.match(text, /S3 PUT\/COPY\/LIST: \d+ requests/);
      assert.match(text, /S3 storage: .* kept 7 day\(s\)/);
      assert.match(text, /Total: ~\$/);
      assert.doesNotMatch(text, /GPU instances/);
      setRunner('aws', { stateMachineArn: 'arn:x', workBucket: 'work', region: 'eu-west-1' });
      assert.match(await readParquet(f).explain(), /no built-in price table for eu-west-1: us-east-1 prices shown/);
    } finally {
      setRunner('native');
    }
  });

  it('adds up a relational run by hand: stages of their own widths, map partitions x buckets PUTs and GETs', () => {
    // 20 MB over a map stage of 4 partitions (a hash exchange into 3 buckets) and a reduce of 3.
    const e = estimateRunCost({
      partitions: 4,
      uncompressedBytes: 2e7,
      rowGroups: 8,
      columns: 2,
      stages: [
        { index: 0, executor: 'lambda', memoryMiB: 1769, concurrency: 4, slots: 0, partitions: 4, buckets: 3 },
        { index: 1, executor: 'lambda', memoryMiB: 1769, concurrency: 3, slots: 0, partitions: 3 },
      ],
    });
    // Seconds per partition at 1 vCPU: stage 0 5e6 B / 50e6 B/s = 0.1 s; stage 1 (2e7 / 3) B = 0.1333 s.
    // GB-s: (2 x 1 s Plan/Finalize + 4 x 0.1 + 3 x 0.1333) x 1769/1024.
    assert.ok(Math.abs(part(e, 'Lambda compute').quantity - 2.8 * (1769 / 1024)) < 1e-9);
    assert.equal(part(e, 'Lambda requests').quantity, 9); // 4 map + 3 reduce + Plan + Finalize
    assert.equal(part(e, 'Step Functions').quantity, 18); // 5 + (3 + 4) + (3 + 3)
    // PUT: 4 fixed + 1 copy x 3 result files = 7; stage 0: items 1 + LIST 1 + 4 x (3 buckets + 1 marker) = 18;
    // stage 1: 1 + 1 + 3 x (1 shard + 1 marker) = 8; polls: (2 + 0.1 + 0.1333) s / 2 s -> 2. 7 + 18 + 8 + 2 = 35.
    const puts = part(e, 'S3 PUT');
    assert.equal(puts.quantity, 35);
    assert.match(puts.detail, /12 exchange bucket file\(s\) \(map partitions x buckets\)/);
    // GET: 5 fixed + 8 x 2 column chunks + markers (4 + 3) x 2 + 3 Finalize = 38; 12 bucket reads;
    // plan + input per partition: 4 x 2 + 3 x 2 = 14. 38 + 12 + 14 = 64.
    assert.equal(part(e, 'S3 GET').quantity, 64);
  });

  it("prints an estimate in a relational plan's explain() on the AWS runner, with the exchange's bucket requests", async () => {
    const f = join(tempDir(), 'cost-rel.parquet');
    await writeSample(f, 0, 4000, 1000); // 4 row groups: 4 map partitions at targetPartitionBytes 1
    try {
      setRunner('aws', {
        stateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:x',
        workBucket: 'work',
        region: 'us-east-1',
        targetPartitionBytes: 1,
        shufflePartitions: 3,
      });
      const text = await readParquet(f).groupBy('category').agg(col('x').sum().alias('sx')).explain();
      assert.match(text, /Stage 0: lambda, 4 partition\(s\)[\s\S]*Stage 1: lambda, 3 partition\(s\)/, text);
      assert.match(text, /== Cost estimate \(USD, us-east-1 prices as of [\d-]+\) ==/, text);
      // 5 per run; stage 0: 3 + 4 partitions; stage 1: 3 + 3.
      assert.match(text, /Step Functions: 18 state transitions/, text);
      assert.match(text, /Lambda requests: 9 requests/, text);
      assert.match(text, /S3 PUT\/COPY\/LIST: \d+ requests .*12 exchange bucket file\(s\) \(map partitions x buckets\)/, text);
      assert.match(text, /S3 GET\/HEAD: \d+ requests .*12 exchange bucket reads/, text);
      assert.match(text, /Total: ~\$/, text);
    } finally {
      setRunner('native');
    }
  });

  it("counts the transitions of the generated state machine's success path", () => {
    const def = buildStateMachineDefinition({
      planFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:plan',
      stageFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:stage',
      finalizeFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:finalize',
      failureFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:failure',
      ecs: {
        clusterArn: 'arn:aws:ecs:us-east-1:123456789012:cluster/c',
        taskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/t:1',
        containerName: 'w',
        subnets: [],
        securityGroups: [],
      },
      distributed: false,
      lambdaTimeoutSeconds: 60,
    });
    type State = {
      Type: string;
      Next?: string;
      End?: boolean;
      Choices?: { StringEquals?: string; Next: string }[];
      ItemProcessor?: { StartAt: string; States: Record<string, State> };
    };
    // The states a successful path enters, following Next (a Choice takes the branch for `executor`).
    const walk = (states: Record<string, State>, start: string, executor?: string): string[] => {
      const path: string[] = [];
      for (let name: string | undefined = start; name !== undefined; ) {
        const st: State = states[name]!;
        path.push(name);
        if (st.Type === 'Choice') name = st.Choices!.find((c) => c.StringEquals === executor)?.Next;
        else name = st.End || st.Type === 'Succeed' ? undefined : st.Next;
      }
      return path;
    };
    const top = def.States as unknown as Record<string, State>;
    assert.equal(walk(top, def.StartAt).length, TRANSITIONS.run);
    const stage = top['Stages']!.ItemProcessor!;
    for (const executor of ['lambda', 'ecs-gpu']) {
      const path = walk(stage.States, stage.StartAt, executor);
      assert.equal(path.length, TRANSITIONS.perStage, `${executor}: ${path.join(' -> ')}`);
      const item = stage.States[path[path.length - 1]!]!.ItemProcessor!;
      assert.equal(walk(item.States, item.StartAt).length, TRANSITIONS.perItem);
    }
  });
});
