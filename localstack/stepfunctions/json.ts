// JSON helpers shared by the harness's modules: everything crossing the API or a task boundary is JSON.
import type { JsonValue } from '../../src/aws/state-machine.ts';

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export function isObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `v` as Step Functions serializes it (undefined is null). */
export const json = (v: unknown): string => JSON.stringify(v ?? null);

/** Bytes of `v` serialized, as the payload limit counts them. */
export function sizeOf(v: unknown): number {
  return Buffer.byteLength(json(v));
}
