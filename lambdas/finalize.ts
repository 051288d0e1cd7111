// Finalize Lambda: checks every shard, commits the output (manifest last), writes the run summary.
import { handleFinalize, type FinalizeEvent } from '../src/aws/handlers.ts';

export const handler = (event: FinalizeEvent) => handleFinalize(event);
