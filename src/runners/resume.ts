// resumeRun: finish a failed serverless run on the current AWS runner without recomputing what it
// finished (aws/resume.ts has the Plan step's side).
import { getRunner } from '../runner.ts';
import type { RunSummary } from '../aws/run.ts';
import { AwsRunner, type ResumeOptions } from './aws.ts';

/**
 * Resumes the failed (or stopped) run `runId` on the current AWS runner (`setRunner('aws', …)`): its
 * stored plan is reused with every finished shard, only the partitions without a completion marker
 * run again, and the output is committed exactly once. Resolves with the run's summary, as a run
 * does; a run whose plan no longer matches the pipeline (`opts.pipeline`, the UDFs its modules
 * register now, `opts.output`) is refused with an error naming what changed.
 */
export function resumeRun(runId: string, opts: ResumeOptions = {}): Promise<RunSummary> {
  const runner = getRunner();
  if (!(runner instanceof AwsRunner)) {
    return Promise.reject(
      new Error(`resumeRun(${JSON.stringify(runId)}): the current runner is '${runner.name}'; resuming needs the AWS runner (setRunner('aws', …))`),
    );
  }
  return runner.resume(runId, opts);
}
