// The work bucket of a serverless run as an ObjectStore, on the shared S3 functions of src/io/s3.ts
// (endpoint overrides and checksum settings for S3-compatible servers live there).
import {
  copyS3Object, createS3WriteStream, deleteS3Objects, formatS3Uri, getS3ObjectOrNull, headS3OrNull, isS3Uri, listS3,
  openS3ReadStream, putS3Object, S3Error,
} from '../io/s3/index.ts';
import { NotFoundError, type ObjectStore } from './store.ts';

export class S3Store implements ObjectStore {
  constructor(readonly bucket: string) {}

  uri(key: string): string {
    return formatS3Uri(this.bucket, key);
  }

  async get(key: string): Promise<Uint8Array> {
    const r = await getS3ObjectOrNull(this.uri(key));
    if (!r) throw new NotFoundError(this.uri(key));
    return r.bytes;
  }

  async stream(key: string): Promise<AsyncIterable<Uint8Array>> {
    try {
      return await openS3ReadStream(this.uri(key));
    } catch (e) {
      if (e instanceof S3Error && e.code === 'NoSuchKey') throw new NotFoundError(this.uri(key));
      throw e;
    }
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    await putS3Object(this.uri(key), body);
  }

  async upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    const w = await createS3WriteStream(this.uri(key));
    try {
      for await (const chunk of body) await w.write(chunk);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return (await w.close()).bytes;
  }

  async exists(key: string): Promise<boolean> {
    return (await headS3OrNull(this.uri(key))) !== null;
  }

  async list(prefix: string): Promise<string[]> {
    const { objects } = await listS3(this.uri(prefix));
    return objects.map((o) => o.key).sort();
  }

  async copy(from: string, toUri: string): Promise<void> {
    if (isS3Uri(toUri)) {
      await copyS3Object(this.uri(from), toUri);
      return;
    }
    // A local destination (local output of a run): download.
    const { writeFile, mkdir } = await import('node:fs/promises');
    const { dirname } = await import('node:path');
    await mkdir(dirname(toUri), { recursive: true });
    await writeFile(toUri, await this.get(from));
  }

  async delete(keys: string[]): Promise<void> {
    await deleteS3Objects(keys.map((k) => this.uri(k)));
  }
}
