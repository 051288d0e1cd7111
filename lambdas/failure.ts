// Failure Lambda: records which partitions failed, and why, before the execution fails.
import { handleFailure, type FailureEvent } from '../src/aws/handlers.ts';

export const handler = (event: FailureEvent) => handleFailure(event);
