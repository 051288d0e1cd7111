// What listings said about objects: size and ETag (readers use them to skip HEADs), and the
// listing each object came with (footers of a whole listing are fetched in one parallel batch).
import type { S3Object } from './objects.ts';

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
