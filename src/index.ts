// Public API of fanout.
export { DataType, Field, Schema, ColumnNotFoundError } from './datatypes.ts';
export type { DataTypeJSON, FieldJSON, SchemaJSON, TimeUnit } from './datatypes.ts';
export { col, lit, Expr } from './expressions.ts';
export type { ExprNode, ExprLike, Scalar, LiteralJSON } from './expressions.ts';
export { ExpressionTypeError } from './eval.ts';
export { DataFrame, readParquet, readCsv, fromRecords, fromColumns, fromArrow } from './dataframe.ts';
export type { ExplainOptions, WriteOptions, WrittenFileRow, ReadParquetOptions, ReadCsvOptions, Simplify } from './dataframe.ts';
export { setRunner, getRunner } from './runner.ts';
export type { EmbeddedOptions } from './runners/embedded.ts';
export { shutdownWorkers } from './runners/embedded.ts';
export type { PlanNode } from './plan.ts';
export type { JsValue } from './convert.ts';
export { func, cls } from './udf.ts';
export type { UdfOptions, ClsOptions, MethodOptions, Udf, ClsHandle, OnError, UdfKind, BatchResult } from './udf.ts';
export { metrics, UdfError } from './udf-exec.ts';
export type { RunMetrics, UdfStats } from './udf-exec.ts';
export type { Untyped, ValueOf } from './expressions.ts';
