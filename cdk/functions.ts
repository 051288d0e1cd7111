// FanoutPipeline's four Lambda functions (Plan, Stage, Finalize, Failure), each with its own role
// that allows only what its handler does in S3, and its own log group.
import { join } from 'node:path';
import { Duration, Size, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { RemovalPolicy } from 'aws-cdk-lib';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { lambdaBundling, writeEntryWrappers } from './bundling.ts';
import { acknowledgeWildcard, grantKey, grantList, type ObjectGrants, RUNS_PREFIX, S3_DELETE, S3_READ, S3_WRITE } from './grants.ts';

export type FanoutFunctionRole = 'plan' | 'stage' | 'finalize' | 'failure';

const ROLES: readonly FanoutFunctionRole[] = ['plan', 'stage', 'finalize', 'failure'];
const ROLE_IDS: Record<FanoutFunctionRole, string> = { plan: 'Plan', stage: 'Stage', finalize: 'Finalize', failure: 'Failure' };
/** What each function's role allows, as its IAM description says (the grants follow what src/aws/run.ts does). */
const ROLE_POLICY_DOCS: Record<FanoutFunctionRole, string> = {
  plan: 'fanout Plan function: reads the inputs; reads and writes the run plans under runs/ of the work bucket',
  stage: 'fanout Stage function: reads the inputs; reads and writes shards under runs/ of the work bucket',
  finalize: 'fanout Finalize function: reads runs/ of the work bucket; writes run summaries, results kept in the work bucket, and the output',
  failure: 'fanout Failure function: reads runs/ of the work bucket; writes runs/<runId>/failure.json',
};
const ROLE_DOCS: Record<FanoutFunctionRole, string> = {
  plan: 'fanout: builds the run plan and the per-stage partition lists',
  stage: 'fanout: runs one partition of one CPU stage',
  finalize: 'fanout: checks every shard and commits the output (manifest last)',
  failure: 'fanout: records which partitions failed, and why',
};

/** Where the Lambda runtime unpacks the bundle; FANOUT_PIPELINE points at the bundle itself. */
export const LAMBDA_TASK_ROOT = '/var/task';

/** A Stage function of one sizing class (src/aws/placement.ts). */
export interface StageClassFunction {
  readonly key: string;
  /** Construct id (placement.ts stageFunctionId). */
  readonly id: string;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  readonly architecture: lambda.Architecture;
  readonly ephemeralStorageMiB: number;
}

/** Resolved settings (FanoutPipeline validates the props and applies the defaults). */
export interface FanoutFunctionsOptions {
  readonly entry: string;
  readonly projectRoot: string;
  readonly conditions: readonly string[];
  readonly workBucket: s3.IBucket;
  /** Where runs commit, with its normalized prefix; none: results stay in the work bucket. */
  readonly output?: { readonly bucket: s3.IBucket; readonly prefix: string };
  readonly planMemoryMiB: number;
  readonly stageMemoryMiB: number;
  /** The main Stage function's /tmp (MiB). @default 512 */
  readonly stageEphemeralStorageMiB?: number;
  /** Per-stage resources: a Stage function per other Lambda sizing class (construct id, sizes), same code and role as Stage. */
  readonly stageClasses?: readonly StageClassFunction[];
  readonly timeoutSeconds: number;
  readonly architecture: lambda.Architecture;
  readonly stageReservedConcurrency?: number;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  /** Records each object grant, for the wildcard acknowledgments. */
  readonly grants: ObjectGrants;
}

/**
 * Creates the roles, then the functions, in `scope` itself (not a child construct), so their
 * construct paths and logical IDs are those of the pipeline's earlier single-file version.
 */
export function addFanoutFunctions(
  scope: Construct,
  o: FanoutFunctionsOptions,
): {
  roles: Record<FanoutFunctionRole, iam.Role>;
  functions: Record<FanoutFunctionRole, nodejs.NodejsFunction>;
  stageClassFunctions: Record<string, nodejs.NodejsFunction>;
} {
  // What each handler does in S3 (src/aws/handlers.ts -> run.ts), and so all its role may do:
  //   Plan      reads the inputs (scan planning), reads/writes runs/<id>/plan.json and stage items;
  //   Stage     reads the inputs (stage 0) and earlier shards, writes shards/results/markers (and
  //             deletes a result file whose footer is short), all under runs/;
  //   Finalize  reads runs/, writes runs/<id>/summary.json, commits the output (copies, manifest,
  //             deletes what an overwrite replaces) or, without an output, runs/<id>/output/;
  //   Failure   reads runs/ (plan, markers), writes runs/<id>/failure.json.
  // None of them starts GPU tasks or passes roles: the state machine's role does. The inputs'
  // grants come from FanoutPipeline.grantReadInput.
  const roles = {} as Record<FanoutFunctionRole, iam.Role>;
  for (const role of ROLES) {
    roles[role] = new iam.Role(scope, `${ROLE_IDS[role]}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: ROLE_POLICY_DOCS[role],
    });
  }
  const { grants, workBucket: work } = o;
  const runsObjects = `${RUNS_PREFIX}*`;
  for (const role of ROLES) grantList(roles[role], work, RUNS_PREFIX);
  grants.grant(roles.plan, work, runsObjects, [...S3_READ, 's3:PutObject']);
  grants.grant(roles.stage, work, runsObjects, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
  grants.grant(roles.finalize, work, runsObjects, S3_READ);
  grants.grant(roles.finalize, work, `${RUNS_PREFIX}*/summary.json`, ['s3:PutObject']);
  // A run without an output commits into the work bucket (keys.output): parts, manifest, temp files.
  grants.grant(roles.finalize, work, `${RUNS_PREFIX}*/output/*`, [...S3_WRITE, ...S3_DELETE]);
  grants.grant(roles.failure, work, runsObjects, S3_READ);
  grants.grant(roles.failure, work, `${RUNS_PREFIX}*/failure.json`, ['s3:PutObject']);
  if (o.output) {
    grants.grant(roles.finalize, o.output.bucket, `${o.output.prefix}*`, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
    grantList(roles.finalize, o.output.bucket, o.output.prefix);
    grantKey(roles.finalize, o.output.bucket, 'readwrite');
  }

  const wrappers = writeEntryWrappers(o.projectRoot, o.entry, ROLES);
  const functions = {} as Record<FanoutFunctionRole, nodejs.NodejsFunction>;
  const make = (
    role: FanoutFunctionRole,
    id: string,
    size: { memoryMiB: number; timeoutSeconds: number; architecture: lambda.Architecture; ephemeralStorageMiB?: number },
  ): nodejs.NodejsFunction => {
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, { retention: o.logRetention, removalPolicy: o.removalPolicy });
    const fn = new nodejs.NodejsFunction(scope, `${id}Function`, {
      description: ROLE_DOCS[role],
      entry: wrappers[role],
      handler: 'handler',
      projectRoot: o.projectRoot,
      depsLockFilePath: join(o.projectRoot, 'package-lock.json'),
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: size.architecture,
      memorySize: size.memoryMiB,
      timeout: Duration.seconds(size.timeoutSeconds),
      ...(size.ephemeralStorageMiB !== undefined && size.ephemeralStorageMiB !== 512 ? { ephemeralStorageSize: Size.mebibytes(size.ephemeralStorageMiB) } : {}),
      role: roles[role],
      logGroup,
      // X-Ray: the state machine traces too, so a run is one trace from StartExecution to Finalize.
      tracing: lambda.Tracing.ACTIVE,
      ...(id === 'Stage' && o.stageReservedConcurrency !== undefined ? { reservedConcurrentExecutions: o.stageReservedConcurrency } : {}),
      environment: {
        FANOUT_WORK_BUCKET: work.bucketName,
        // Relative: resolved against LAMBDA_TASK_ROOT (/var/task on AWS; an emulator's or the app
        // harness's temp dir), so one template runs everywhere.
        FANOUT_PIPELINE: './index.mjs',
        FANOUT_PROGRESS: '0',
        // The one place runs of this deployment may commit to: the handlers refuse outputs outside
        // this prefix; empty (no output prop) refuses every output.
        FANOUT_OUTPUT_PREFIX: o.output ? `s3://${o.output.bucket.bucketName}/${o.output.prefix}` : '',
      },
      bundling: lambdaBundling(o.projectRoot, o.conditions),
    });
    logGroup.grantWrite(roles[role]);
    acknowledgeWildcard(roles[role], 'Resource::*', 'X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) accepts only "*".');
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason: 'nodejs22.x is the runtime fanout is built and tested for (Node 20+ engine); nodejs24.x is adopted once validated.',
    });
    return fn;
  };
  for (const role of ROLES) {
    functions[role] = make(role, ROLE_IDS[role], {
      memoryMiB: role === 'stage' ? o.stageMemoryMiB : o.planMemoryMiB,
      timeoutSeconds: o.timeoutSeconds,
      architecture: o.architecture,
      ...(role === 'stage' && o.stageEphemeralStorageMiB !== undefined ? { ephemeralStorageMiB: o.stageEphemeralStorageMiB } : {}),
    });
  }
  // Per-stage resources: the other sizing classes' Stage functions (same bundle and role, own sizes and log group).
  const stageClassFunctions: Record<string, nodejs.NodejsFunction> = {};
  for (const c of o.stageClasses ?? []) stageClassFunctions[c.key] = make('stage', c.id.replace(/Function$/, ''), c);
  return { roles, functions, stageClassFunctions };
}
