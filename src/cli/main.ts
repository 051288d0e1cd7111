// The `fanout` command: run history over a work location (an S3 work bucket, or a local directory
// with the same runs/ layout), cancelling a run, and the run dashboard.
//
//   fanout runs list   [--work s3://bucket] [--limit 20] [--json]
//   fanout runs show   <runId> [--work …] [--json] [--watch]
//   fanout runs cancel <runId> --state-machine <arn>
//   fanout runs resume <runId> --state-machine <arn> --work s3://<work-bucket> [--pipeline <module>]
//   fanout dashboard   [--work …] [--port 8787]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { describeRun, listRuns, recordCancel, type RunDetail } from '../aws/history.ts';
import { formatRunDetail, formatRunList } from './format.ts';

/** Where the runs are: --work, else FANOUT_WORK (a URI or directory), else FANOUT_WORK_BUCKET. */
function workOf(opt: string | undefined, env: NodeJS.ProcessEnv): string {
  const w = opt ?? env['FANOUT_WORK'] ?? (env['FANOUT_WORK_BUCKET'] ? `s3://${env['FANOUT_WORK_BUCKET']}` : undefined);
  if (!w) throw new Error('no work location: pass --work s3://<work-bucket> (or a directory), or set FANOUT_WORK / FANOUT_WORK_BUCKET');
  return w;
}

function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got '${v}'`);
  return n;
}

/** The execution of a run: the state machine runs each run as an execution named by its run id. */
export function executionArnOf(stateMachineArn: string, runId: string): string {
  const m = /^(arn:[^:]+:states:[^:]*:[^:]*):stateMachine:([^:]+)$/.exec(stateMachineArn);
  if (!m) throw new Error(`--state-machine: not a state machine ARN: '${stateMachineArn}'`);
  return `${m[1]}:execution:${m[2]}:${runId}`;
}

export interface CliIo {
  out(text: string): void;
  env: NodeJS.ProcessEnv;
  /** Resolves when the command should stop (Ctrl-C for `dashboard` and `runs show --watch`). */
  interrupted?: Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Builds the command tree; `io` decides where output goes (tests capture it). */
export function buildCli(io: CliIo): Command {
  const program = new Command('fanout').description('fanout: run history and dashboard of serverless runs').exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.out(s.trimEnd()) });
  const runs = program.command('runs').description('runs in a work location (S3 work bucket or local directory)');

  runs
    .command('list')
    .description('runs, newest first')
    .option('--work <uri>', 'work location: s3://bucket or a directory (default: FANOUT_WORK, FANOUT_WORK_BUCKET)')
    .option('--limit <n>', 'at most this many runs', (v) => positiveInt(v, '--limit'))
    .option('--json', 'print the records as JSON')
    .action(async (o: { work?: string; limit?: number; json?: boolean }) => {
      const list = await listRuns(workOf(o.work, io.env), o.limit !== undefined ? { limit: o.limit } : {});
      io.out(o.json ? JSON.stringify(list, null, 2) : formatRunList(list));
    });

  runs
    .command('show')
    .description('one run: its stages, partitions (timings, rows, errors) and UDF metrics')
    .argument('<runId>')
    .option('--work <uri>', 'work location (as for list)')
    .option('--json', 'print the record as JSON')
    .option('--watch', 'while the run goes, print its progress every 2 s')
    .action(async (runId: string, o: { work?: string; json?: boolean; watch?: boolean }) => {
      const work = workOf(o.work, io.env);
      let r: RunDetail = await describeRun(work, runId);
      let stop = false;
      void io.interrupted?.then(() => {
        stop = true;
      });
      while (o.watch && r.state === 'running' && !stop) {
        const last = r.stageViews.at(-1);
        const stage = r.stageViews.find((s) => s.done < s.partitions.length) ?? last;
        io.out(`run ${runId}: running, stage ${stage?.index ?? 0}: ${stage?.done ?? 0}/${stage?.partitions.length ?? 0} partitions done`);
        await sleep(2000);
        r = await describeRun(work, runId);
      }
      io.out(o.json ? JSON.stringify(r, null, 2) : formatRunDetail(r));
    });

  runs
    .command('cancel')
    .description('stop a running run (StopExecution); nothing is committed')
    .argument('<runId>')
    .option('--state-machine <arn>', "the pipeline's state machine (default: FANOUT_STATE_MACHINE_ARN)")
    .option('--work <uri>', 'work location, to record the cancellation in the run history (as for list)')
    .action(async (runId: string, o: { stateMachine?: string; work?: string }) => {
      const sm = o.stateMachine ?? io.env['FANOUT_STATE_MACHINE_ARN'];
      if (!sm) throw new Error('runs cancel: pass --state-machine <arn> or set FANOUT_STATE_MACHINE_ARN');
      const executionArn = executionArnOf(sm, runId);
      const { SFNClient, StopExecutionCommand } = await import('@aws-sdk/client-sfn');
      const sfn = new SFNClient({});
      try {
        await sfn.send(new StopExecutionCommand({ executionArn, error: 'fanout.Cancelled', cause: 'cancelled with fanout runs cancel' }));
      } finally {
        sfn.destroy();
      }
      // Recorded so that histories stop showing the run as running (best effort: the stop is what counts).
      const work = o.work ?? io.env['FANOUT_WORK'] ?? (io.env['FANOUT_WORK_BUCKET'] ? `s3://${io.env['FANOUT_WORK_BUCKET']}` : undefined);
      if (work) await recordCancel(work, runId, 'fanout runs cancel');
      io.out(`run ${runId}: cancelled (${executionArn})`);
    });

  runs
    .command('resume')
    .description('finish a failed run: only partitions without a completion marker run again; one commit')
    .argument('<runId>')
    .option('--state-machine <arn>', "the pipeline's state machine (default: FANOUT_STATE_MACHINE_ARN)")
    .option('--work <uri>', 'the work bucket, s3://<bucket> (as for list)')
    .option('--pipeline <module>', 'import this pipeline module first: the resume is refused if its UDFs no longer match the stored plan')
    .option('--region <region>', 'AWS region (default: the SDK default)')
    .action(async (runId: string, o: { stateMachine?: string; work?: string; pipeline?: string; region?: string }) => {
      const sm = o.stateMachine ?? io.env['FANOUT_STATE_MACHINE_ARN'];
      if (!sm) throw new Error('runs resume: pass --state-machine <arn> or set FANOUT_STATE_MACHINE_ARN');
      executionArnOf(sm, runId); // checks the ARN's shape
      const work = workOf(o.work, io.env);
      const bucket = /^s3:\/\/([^/]+)\/?$/.exec(work)?.[1];
      if (!bucket) throw new Error(`runs resume: --work must be the work bucket as s3://<bucket>, got '${work}'`);
      // Loaded here: the other commands must not pay for the engine's runners.
      const [{ setRunner }, { resumeRun }] = await Promise.all([import('../runner.ts'), import('../runners/resume.ts')]);
      if (o.pipeline) await import(pathToFileURL(resolve(o.pipeline)).href);
      setRunner('aws', { stateMachineArn: sm, workBucket: bucket, ...(o.region ? { region: o.region } : {}) });
      const ac = new AbortController();
      void io.interrupted?.then(() => ac.abort(new Error('interrupted')));
      io.out(`run ${runId}: resuming (only partitions without a completion marker run again)`);
      const summary = await resumeRun(runId, { signal: ac.signal });
      const partial = (summary as { complete?: boolean }).complete === false ? ' (complete: false: some partitions failed within the tolerance)' : '';
      io.out(`run ${runId}: ${summary.status}, ${summary.rows} rows in ${summary.files.length} file(s)${partial}`);
    });

  program
    .command('dashboard')
    .description('serve the run dashboard on 127.0.0.1')
    .option('--work <uri>', 'work location (as for runs list)')
    .option('--port <n>', 'port (0: any free one)', (v) => (v === '0' ? 0 : positiveInt(v, '--port')), 8787)
    .action(async (o: { work?: string; port: number }) => {
      const { startDashboard } = await import('../dashboard/server.ts');
      const d = await startDashboard({ work: workOf(o.work, io.env), port: o.port });
      io.out(`fanout dashboard: ${d.url} (runs in ${d.work}); Ctrl-C stops it`);
      await (io.interrupted ?? new Promise(() => undefined));
      await d.close();
    });
  return program;
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    await buildCli(io).parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) return err.exitCode ?? 1;
    io.out(`fanout: ${err.message ?? String(e)}`);
    return 1;
  }
}
