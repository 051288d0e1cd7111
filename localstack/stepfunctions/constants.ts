// The fixed identity of the one local state machine, and the Step Functions limits the harness enforces.

export const REGION = 'us-east-1';
export const ACCOUNT = '000000000000';
export const STATE_MACHINE_NAME = 'fanout-local';
export const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`;
/** Step Functions' limit on a state's input or output (and a task's result). */
export const PAYLOAD_LIMIT_BYTES = 256 * 1024;
