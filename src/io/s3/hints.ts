// What listings said about objects: size and ETag (readers use them to skip HEADs), and the
// listing each object came with (footers of a whole listing are fetched in one parallel batch).
import { mapLimit } from '../../concurrency.ts';
import { listS3, type S3Object } from './objects.ts';
import { isS3Uri } from './uri.ts';

export interface S3Hint {
  size: number;
  etag: string;
  at: number;
  group: readonly string[];
}
const hints = new Map<string, S3Hint>();
const HINTS_MAX = 100_000;

/** How long a listing's or HEAD's word on an object is trusted without asking again (ms). */
export const S3_METADATA_TTL_MS = 60_000;

/** Remember objects seen in one listing (or HEAD); `group` defaults to all of them. */
export function noteS3Objects(objects: readonly S3Object[], group?: readonly string[]): void {
  const g = group ?? objects.map((o) => o.uri);
  const at = Date.now();
  for (const o of objects) {
    hints.delete(o.uri); // re-insert: the Map's order is then oldest first
    hints.set(o.uri, { size: o.size, etag: o.etag, at, group: g });
  }
  while (hints.size > HINTS_MAX) hints.delete(hints.keys().next().value!);
}

/** The latest word on an object, if it is younger than `maxAgeMs`. */
export function s3Hint(uri: string, maxAgeMs = S3_METADATA_TTL_MS): S3Hint | undefined {
  const h = hints.get(uri);
  return h && Date.now() - h.at <= maxAgeMs ? h : undefined;
}

/** Make these objects one group (e.g. every S3 file of one expandPaths call): their footers are then fetched together. */
export function groupS3Hints(uris: readonly string[]): void {
  const group = [...uris];
  for (const u of group) {
    const h = hints.get(u);
    if (h) h.group = group;
  }
}

export function forgetS3Object(uri: string): void {
  hints.delete(uri);
}

/**
 * Vouch for these objects' sizes and ETags with one listing of each directory they lie in, as one
 * group: the first Parquet read among them then fetches every footer in one parallel round, without
 * a HEAD and a blocking GET per object (the runner reading back a run's committed files). Best
 * effort: a failed listing leaves the readers to ask per object, as before.
 */
export async function noteS3Files(uris: readonly string[]): Promise<void> {
  const wanted = new Set(uris.filter((u) => isS3Uri(u)));
  if (wanted.size < 2) return;
  const dirs = new Set([...wanted].map((u) => u.slice(0, u.lastIndexOf('/') + 1)));
  const listed = await mapLimit([...dirs], 8, (d) =>
    listS3(d, { delimiter: '/' }).then(
      (r) => r.objects,
      () => [] as S3Object[],
    ),
  );
  const found = listed.flat().filter((o) => wanted.has(o.uri));
  noteS3Objects(
    found,
    found.map((o) => o.uri),
  );
}
