// The example pipeline's UDFs live in a module of their own, so worker threads can import them by
// name (a UDF defined in the script that runs the pipeline can only run in-process).
import type * as arrow from 'apache-arrow';
import { cls, DataType, func, metrics } from 'fanout';

/** Row-wise: a label per amount. */
export const bucket = func(
  (amount: number) => {
    if (amount >= 500) {
      metrics.increment('big_orders');
      return 'large';
    }
    return amount >= 100 ? 'medium' : 'small';
  },
  { returnDtype: DataType.utf8(), name: 'bucket' },
);

/** Batch: a typed-array kernel over the whole Arrow vector. */
export const withTax = func.batch(
  (amount: arrow.Vector) => {
    const src = amount.toArray() as Float64Array;
    const out = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = Math.round(src[i]! * 1.2 * 100) / 100;
    return out;
  },
  { returnDtype: DataType.float64(), batchSize: 8192, name: 'withTax' },
);

/** Stateful: builds a lookup table once per worker, then scores every batch with it. */
export class RegionScorer {
  private readonly weights: Map<string, number>;
  constructor(seed: number) {
    metrics.increment('scorer_inits');
    this.weights = new Map(['north', 'south', 'east', 'west'].map((r, i) => [r, ((seed * (i + 3)) % 7) / 7]));
  }
  score(region: string, amount: number): number {
    metrics.increment('scored');
    return Math.round((this.weights.get(region) ?? 0) * amount * 100) / 100;
  }
}
export const Scorer = cls(RegionScorer, { name: 'RegionScorer', concurrency: 2, methods: { score: { returnDtype: DataType.float64() } } });
