// ECS GPU task entrypoint: processes this task's slot of a GPU stage's partitions, then exits.
// Non-zero exit code = task failure (the state machine retries or records it).
import { handleEcsTask } from '../src/aws/handlers.ts';
import { asError, ECS_FAILURE_PREFIX } from '../src/aws/run.ts';

try {
  const n = await handleEcsTask();
  console.log(`fanout ecs task: ${n} partition(s) done`);
  process.exit(0);
} catch (e) {
  const err = asError(e);
  // One line that states the error first (log tails and the local harness keep it), then the stack.
  console.error(`${ECS_FAILURE_PREFIX}${err.name}: ${err.message.split('\n')[0]}`);
  console.error(err.stack ?? err.message);
  process.exit(1);
}
