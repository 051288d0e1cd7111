// S3 access for the storage layer (src/io/store/): URIs, the shared client and its settings, object
// operations, listing hints, streamed uploads, key globs, the S3Blob parquet-wasm reads ranges from,
// and the synchronous facade for the synchronous DataFrame builder.
export * from './uri.ts';
export * from './client.ts';
export * from './objects.ts';
export * from './hints.ts';
export * from './write-stream.ts';
export * from './glob.ts';
export * from './blob.ts';
export * from './sync.ts';
