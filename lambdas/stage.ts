// Stage Lambda: one partition of one CPU stage (the embedded runner's stage executor).
import { handleStage, type StageEvent } from '../src/aws/handlers.ts';

export const handler = (event: StageEvent) => handleStage(event);
