// Globs over S3 keys, matched with picomatch (POSIX flavour: `\` escapes, `/` separates): `*` and
// `?` stay within a segment, `**` spans segments, `[...]` classes, `{a,b}` alternatives, and
// wildcards never match a segment's leading '.'.
import { picomatch } from '../glob.ts';
import { formatS3Uri, parseS3Uri } from './uri.ts';
import { listS3, type S3Object } from './objects.ts';
import { s3Settings, type S3Settings } from './client.ts';

const GLOB_CHARS = /[*?[\]{}]/;

export function isS3Glob(uri: string): boolean {
  return GLOB_CHARS.test(parseS3Uri(uri).key);
}

/** A matcher for keys against a key glob (no bucket). */
export function keyGlobMatcher(pattern: string): (key: string) => boolean {
  // posix: `[!a-z]` negates a class (as in shells); without it picomatch reads the '!' literally.
  return picomatch()(pattern, { dot: false, windows: false, posix: true });
}

/** The literal key prefix before the first (unescaped) glob character: what to list. */
function globListPrefix(keyPattern: string): string {
  let prefix = '';
  for (let i = 0; i < keyPattern.length; i++) {
    const c = keyPattern[i]!;
    if (c === '\\' && i + 1 < keyPattern.length) prefix += keyPattern[++i];
    else if (GLOB_CHARS.test(c)) break;
    else prefix += c;
  }
  return prefix;
}

/** Objects whose keys match a glob URI (s3://bucket/data/*.parquet). */
export async function globS3(patternUri: string, settings: S3Settings = s3Settings()): Promise<S3Object[]> {
  const { bucket, key } = parseS3Uri(patternUri);
  const match = keyGlobMatcher(key);
  const { objects } = await listS3(formatS3Uri(bucket, globListPrefix(key)), {}, settings);
  return objects.filter((o) => !o.key.endsWith('/') && match(o.key));
}
