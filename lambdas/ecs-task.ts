// ECS GPU task entrypoint: processes this task's slot of a GPU stage's partitions, then exits.
// Non-zero exit code = task failure (the state machine retries or records it).
import { handleEcsTask } from '../src/aws/handlers.ts';

try {
  const n = await handleEcsTask();
  console.log(`fanout ecs task: ${n} partition(s) done`);
  process.exit(0);
} catch (err) {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
}
