// Plan Lambda: builds (or loads) the run plan and returns the stage summary for the state machine.
import { handlePlan, type RunEvent } from '../src/aws/handlers.ts';

export const handler = (event: RunEvent) => handlePlan(event);
