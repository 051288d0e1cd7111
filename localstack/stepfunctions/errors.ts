// The two error kinds of the harness: task failures the interpreter matches against Retry/Catch,
// and API errors the HTTP server returns as the JSON 1.0 protocol's error documents.
import { PAYLOAD_LIMIT_BYTES } from './constants.ts';

/** A task failure as the interpreter matches it: `name` is the ASL error name, `message` the cause. */
export class TaskError extends Error {
  constructor(
    name: string,
    cause: string,
    readonly catchable = true,
  ) {
    super(cause);
    this.name = name;
  }
  // Read by aws-local-stepfunctions' Retry/Catch matching.
  get isRetryable(): boolean {
    return this.catchable;
  }
  get isCatchable(): boolean {
    return this.catchable;
  }
}

/** What AWS puts in Cause for a failed Lambda invocation: the function's error document. */
export function lambdaError(errorType: string, errorMessage: string, trace?: string): TaskError {
  return new TaskError(errorType, JSON.stringify({ errorType, errorMessage, trace: trace ? trace.split('\n').map((l) => l.trim()) : [] }));
}

export function dataLimitError(what: string, bytes: number): TaskError {
  // Not catchable by States.ALL on AWS either.
  return new TaskError('States.DataLimitExceeded', `${what} has ${bytes} bytes, more than the ${PAYLOAD_LIMIT_BYTES}-byte payload limit`, false);
}

/** An API call's failure: `type` is the protocol's error code (`com.amazonaws.sfn#<type>`). */
export class ApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}
