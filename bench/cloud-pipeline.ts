// Pipeline module for the harness bench: one CPU stage with a trivial UDF.
import { col, DataType, func, readParquet } from 'fanout';

export const bump = func((x: number) => x + 1, { returnDtype: DataType.float64(), name: 'bench.bump' });

export default function pipeline(input: { uri: string }) {
  return readParquet(input.uri)
    .withColumn('y', bump(col('x')))
    .select('id', 'y');
}
