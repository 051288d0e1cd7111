// s3://bucket/key URIs: the only place besides the storage layer that knows the scheme.
export interface S3Location {
  bucket: string;
  key: string;
}

export function isS3Uri(p: unknown): p is string {
  return typeof p === 'string' && /^s3:\/\//i.test(p);
}

/** `s3://bucket/key...` → { bucket, key } (key may be '' or end with '/'). Keys are taken literally. */
export function parseS3Uri(uri: string): S3Location {
  if (!isS3Uri(uri)) throw new Error(`not an s3:// URI: ${uri}`);
  const rest = uri.slice(5);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$/.test(bucket)) throw new Error(`invalid bucket name '${bucket}' in ${uri}`);
  return { bucket, key };
}

export function formatS3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Join a key prefix ("directory") and a relative path; `..` may not climb above the bucket. */
export function joinS3(dirUri: string, rel: string): string {
  if (isS3Uri(rel)) return rel;
  const { bucket, key } = parseS3Uri(dirUri);
  const parts: string[] = [];
  for (const p of `${key}/${rel}`.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (!parts.length) throw new Error(`path ${rel} leaves bucket ${bucket} (relative to ${dirUri})`);
      parts.pop();
    } else parts.push(p);
  }
  return formatS3Uri(bucket, parts.join('/'));
}

/** The URI with exactly one trailing slash removed (prefix form without '/'). */
export function trimSlash(uri: string): string {
  return uri.endsWith('/') ? uri.replace(/\/+$/, '') : uri;
}
