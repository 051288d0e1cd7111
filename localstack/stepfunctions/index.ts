// The local Step Functions API (see service.ts); one concept per module:
//   hooks.ts      loading aws-local-stepfunctions, the Promise.withResolvers polyfill, event-capture hooks
//   normalize.ts  rewriting a definition for the interpreter, classifying its Task states
//   tasks.ts      the local Lambda / ECS / S3 ItemReader task handlers
//   errors.ts     task errors (matched by Retry/Catch) and API errors
//   executions.ts the execution table: run lifecycle and history events
//   http.ts       the JSON 1.0 protocol server
//   service.ts    startLocalStepFunctions, which wires them together
export { normalizeDefinitionForLocal } from './normalize.ts';
export { startLocalStepFunctions, type LocalStepFunctions } from './service.ts';
export type { EcsTaskParams, LambdaContextLike } from './tasks.ts';
