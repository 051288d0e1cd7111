// Dead-letter files: the rows a UDF failed on, with their arguments and the error text.
import * as arrow from 'apache-arrow';
import { randomUUID } from 'node:crypto';
import { joinUri, prepareObject } from '../io/store/index.ts';
import { DataType, Field, Schema } from '../datatypes.ts';
import { valuesToData } from '../convert/index.ts';
import { takeBatch } from '../eval.ts';
import type { UdfCallNode } from '../expressions.ts';
import { writeParquetFile } from '../io/parquet/index.ts';
import type { UdfDefinition } from '../udf.ts';
import type { Failure } from './call.ts';

/** Writes failed rows (their UDF arguments and the error text) to the dead-letter directory. */
export async function writeDeadLetter(def: UdfDefinition, node: UdfCallNode, args: arrow.Data[], failures: Failure[], offset: number): Promise<string> {
  const dir = def.options.deadLetter!;
  const idx = Int32Array.from(failures, (f) => f.row);
  const fields = args.map((d, i) => new Field(`arg${i}`, DataType.fromArrow(d.type)));
  const argBatch = new arrow.RecordBatch(
    new Schema(fields).toArrow(),
    arrow.makeData({
      type: new arrow.Struct(new Schema(fields).toArrow().fields),
      length: args[0]?.length ?? 0,
      nullCount: 0,
      children: args,
    }),
  );
  const taken = args.length ? takeBatch(argBatch, idx) : null;
  const udfCol = valuesToData(
    failures.map(() => def.name),
    DataType.utf8(),
  );
  const errCol = valuesToData(
    failures.map((f) => f.error),
    DataType.utf8(),
  );
  // Row numbers within the partition (as in error messages), not within the batch.
  const rowCol = valuesToData(
    failures.map((f) => offset + f.row),
    DataType.int64(),
  );
  const allFields = [new Field('udf', DataType.utf8()), new Field('row', DataType.int64()), new Field('error', DataType.utf8()), ...fields];
  const schema = new Schema(allFields);
  const children = [udfCol, rowCol, errCol, ...(taken ? taken.data.children : [])];
  const batch = new arrow.RecordBatch(
    schema.toArrow(),
    arrow.makeData({ type: new arrow.Struct(schema.toArrow().fields), length: failures.length, nullCount: 0, children }),
  );
  const name = `dead-${def.name.replace(/[^\w.-]/g, '_')}-${randomUUID()}.parquet`;
  // Through the storage layer: the file appears whole (an upload completes, or a local temp file is
  // renamed into place), so a reader never sees half of it.
  const path = joinUri(dir, name);
  await prepareObject(path);
  await writeParquetFile(path, [batch], { schema });
  void node;
  return path;
}
