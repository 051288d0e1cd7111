// The bench's UDFs live in a module of their own so that worker threads can import them.
import type * as arrow from 'apache-arrow';
import { DataType, func } from 'fanout';

export const batchUdf = func.batch(
  (v: arrow.Vector) => {
    const src = v.data.length === 1 ? (v.data[0]!.values as Float64Array) : (v.toArray() as Float64Array);
    const o = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) o[i] = src[i]! * 2 + 1;
    return o;
  },
  { returnDtype: DataType.float64(), name: 'peers.batch' },
);
export const rowUdf = func((x: number) => x * 2 + 1, { returnDtype: DataType.float64(), name: 'peers.row' });
