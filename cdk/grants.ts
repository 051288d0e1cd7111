// IAM helpers of FanoutPipeline: explicit S3 actions (no s3:* wildcards) on key patterns, listing
// limited to a prefix, KMS keys of encrypted buckets, and the cdk-nag acknowledgments of the
// object-ARN wildcards those grants necessarily contain.
import { Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';

/** Everything a run keeps in the work bucket (src/aws/run.ts `keys`): plans, shards, markers, summaries. */
export const RUNS_PREFIX = 'runs/';
/** Step Functions writes Distributed Map child results here (state-machine.ts ResultWriter). */
export const MAP_RESULTS_PREFIX = 'fanout-sfn-map-results/';

export const S3_READ = ['s3:GetObject'] as const;
/** PutObject and the multipart calls of streamed uploads (and of copies over 5 GB). */
export const S3_WRITE = ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'] as const;
export const S3_DELETE = ['s3:DeleteObject'] as const;

/** Object-level S3 actions (explicit, no s3:* style wildcards) on the keys matching `pattern`: a prefix and '*', or a key name under every run. */
export function grantObjectActions(grantee: iam.IGrantable, bucket: s3.IBucket, pattern: string, actions: readonly string[]): void {
  grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: [...actions], resources: [bucket.arnForObjects(pattern)] }));
}

/** s3:ListBucket, limited to keys under `prefix` ('' for the whole bucket): listing a prefix also turns a missing key's 403 into a 404. */
export function grantList(grantee: iam.IGrantable, bucket: s3.IBucket, prefix: string): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      ...(prefix ? { conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } } : {}),
    }),
  );
}

/** The bucket's KMS key, when it has one. */
export function grantKey(grantee: iam.IGrantable, bucket: s3.IBucket, mode: 'read' | 'readwrite'): void {
  if (!bucket.encryptionKey) return;
  if (mode === 'read') bucket.encryptionKey.grantDecrypt(grantee);
  else bucket.encryptionKey.grantEncryptDecrypt(grantee);
}

/** Object grants made while building the pipeline, each (bucket, pattern) once: their wildcards are acknowledged together at the end. */
export class ObjectGrants {
  readonly entries: { bucket: s3.IBucket; pattern: string }[] = [];

  grant(grantee: iam.IGrantable, bucket: s3.IBucket, pattern: string, actions: readonly string[]): void {
    grantObjectActions(grantee, bucket, pattern, actions);
    if (!this.entries.some((g) => g.bucket === bucket && g.pattern === pattern)) this.entries.push({ bucket, pattern });
  }
}

/** cdk-nag's IAM5 finding for `finding`, acknowledged on `scope` with its reason. */
export function acknowledgeWildcard(scope: Construct, finding: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
}

/** The IAM5 finding of an object grant on `bucket` under `pattern`, acknowledged on `scope` (the pipeline). */
export function acknowledgeObjectGrant(scope: Construct, bucket: s3.IBucket, pattern: string): void {
  const finding = `Resource::${nagText(Stack.of(scope).resolve(bucket.arnForObjects(pattern)))}`;
  acknowledgeWildcard(
    scope,
    finding,
    pattern.includes('*/')
      ? `Objects '${pattern}' of a bucket this pipeline writes: one key of this name per run, run ids are generated.`
      : `Objects under ${pattern === '*' ? '' : `the prefix '${pattern.slice(0, -1)}' of `}a bucket this pipeline reads or writes; keys are per run or per upload.`,
  );
}

/** A resolved CloudFormation value as cdk-nag prints it in finding ids: Ref as <Id>, GetAtt as <Id.Attr>, joins flattened. */
export function nagText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(nagText).join(',');
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o['Ref'] === 'string') return `<${o['Ref']}>`;
    const att = o['Fn::GetAtt'];
    if (Array.isArray(att)) return `<${att.join('.')}>`;
    const join = o['Fn::Join'];
    if (Array.isArray(join) && typeof join[0] === 'string' && Array.isArray(join[1])) return join[1].map(nagText).join(join[0]);
  }
  return JSON.stringify(v);
}
