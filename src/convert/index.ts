// Conversion between JS values and Arrow data. Both directions read and write the typed arrays
// inside arrow `Data` directly: arrow's `vectorFromArray` took 8x (1M float64) to 30x (1M short
// strings) the time of `valuesToData`, and its row proxies (`toArray()` + `toJSON()`) 6x that of
// `batchToRows` on 200k rows of 3 columns (Node 20, 2-core VM, median of 5).
//
// Two views of a value, kept apart by name:
//   JsValue        the logical value a row or a UDF argument sees (Date for date/timestamp, views
//                  into binary buffers): valueAt, dataToValues, valuesToData, the batch functions.
//   PhysicalValue  the kernels' view, an Arrow slot as stored (date as days, timestamp as ticks),
//                  for literals, is_in lists, tests and cast-to-utf8 of nested values:
//                  physicalValues, physicalValuesToData, formatPhysicalValue.
//
//   js-value.ts     JsValue, its mapping to Arrow types, and the checks shared by the builders
//   infer.ts        schema inference from JS values
//   to-arrow.ts     JS values -> Data, one builder per type (utf8-encode.ts: the string encoder)
//   from-arrow.ts   Data -> JS values, and the row builder (zipper)
//   rows.ts         records / columns -> RecordBatch, RecordBatch -> rows
//   physical.ts     PhysicalValue <-> Data, and the display form used by cast-to-utf8
export type { JsValue } from './js-value.ts';
export { inferSchemaFromRecords } from './infer.ts';
export { valuesToData } from './to-arrow.ts';
export { dataToValues, valueAt } from './from-arrow.ts';
export { batchToRows, columnsToBatch, recordsToBatch } from './rows.ts';
export {
  formatFloat32,
  formatPhysicalValue,
  physicalValues,
  physicalValuesToData,
  type PhysicalValue,
} from './physical.ts';
