// The example pipeline for the serverless runner (and the CDK app): a module whose default export
// builds the DataFrame from the run's input, and which defines the UDFs it calls. Workers (Lambda,
// ECS tasks, the local harness) import this same module, so UDFs resolve by name.
import type * as arrow from 'apache-arrow';
import { col, DataType, func, metrics, readParquet, type PipelinePlanOptions } from 'fanout';

/** CPU UDF (a Lambda stage): normalizes a category label. */
export const label = func(
  (category: string, amount: number) => {
    metrics.increment('labelled');
    return `${category.toUpperCase()}-${amount >= 0.5 ? 'HI' : 'LO'}`;
  },
  { returnDtype: DataType.utf8(), name: 'pipeline.label' },
);

/** GPU-tagged batch UDF (an ECS GPU stage in AWS; runs on CPU where no GPU is present). */
export const embed = func.batch(
  (x: arrow.Vector) => {
    const src = x.toArray() as Float64Array;
    const out = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = Math.tanh(src[i]! * 3);
    metrics.increment('embedded', src.length);
    return out;
  },
  { returnDtype: DataType.float64(), numGpus: 1, batchSize: 4096, concurrency: 2, name: 'pipeline.embed' },
);

/**
 * How the Plan Lambda partitions this pipeline's runs (S3-triggered ones too): partitions of about
 * 64 MiB of the columns read, and at least 16 of them (the UDFs are cheap, the fan-out modest).
 */
export const planOptions: PipelinePlanOptions = { targetPartitionBytes: 64 << 20, minPartitions: 16 };

export interface PipelineInput {
  /** A Parquet file, prefix or glob: s3://bucket/prefix/ or a local path. */
  uri: string;
  /**
   * Read `uri` as exactly that object (glob characters are part of its name). The S3 upload trigger
   * sets it: a key like `incoming/*.parquet` must read the uploaded object, not every object it matches.
   */
  literal?: boolean;
}

export default function pipeline(input: PipelineInput) {
  if (!input || typeof input.uri !== 'string') throw new TypeError('pipeline input needs { uri }');
  return readParquet(input.uri, { literal: input.literal === true })
    .where(col('x').gt(0.1))
    .withColumn('label', label(col('category'), col('x')))
    .withColumn('score', embed(col('x')))
    .select('id', 'x', 'label', 'score');
}
