// Stage Lambda: one partition of one CPU stage (the embedded runner's stage executor).
import { handleStage, type StageBatchEvent, type StageEvent } from '../src/aws/handlers.ts';

export const handler = (event: StageEvent | StageBatchEvent) => handleStage(event);
