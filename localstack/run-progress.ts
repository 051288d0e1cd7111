// What `npm run local` prints while it follows an execution: the plan, each stage's progress, and
// how each stage ended, read from the execution's history (GetExecutionHistory events in order).
import type { HistoryEvent } from '@aws-sdk/client-sfn';

interface PlannedStage {
  index: number;
  executor: string;
  partitions: number;
  slots: number;
}

/** Feed it the history's new events; it returns the lines to print. */
export class RunProgress {
  #stages: PlannedStage[] = [];
  #stage = -1;
  #done = 0;
  #last = '';

  constructor(private readonly tag: string) {}

  /** Lines for these events (in history order), then the current stage's progress line if it changed. */
  onEvents(events: HistoryEvent[]): string[] {
    const lines: string[] = [];
    const tag = this.tag;
    const name = (s: PlannedStage | undefined, i: number | undefined): string => (s ? `stage ${s.index} (${s.executor})` : `stage ${i ?? '?'}`);
    for (const ev of events) {
      const exited = ev.stateExitedEventDetails;
      if (ev.type === 'TaskStateExited' && exited?.name === 'Plan' && exited.output) {
        this.#stages = (JSON.parse(exited.output) as { plan?: { stages?: PlannedStage[] } }).plan?.stages ?? [];
        lines.push(
          `${tag} planned ${this.#stages.length} stage(s): ${this.#stages.map((s) => `${s.index}: ${s.executor} × ${s.executor === 'lambda' ? `${s.partitions} partition(s)` : `${s.slots} GPU task(s) over ${s.partitions} partition(s)`}`).join(', ')}`,
        );
      }
      const started = ev.mapIterationStartedEventDetails;
      if (ev.type === 'MapIterationStarted' && started?.name === 'Stages') {
        this.#stage = started.index ?? this.#stage + 1;
        this.#done = 0;
        this.#last = '';
      }
      // A stage is done when its iteration of Stages succeeded, never because the next one started:
      // a failed stage is reported as failed.
      const ok = ev.mapIterationSucceededEventDetails;
      if (ev.type === 'MapIterationSucceeded' && ok?.name === 'Stages') lines.push(`${tag} ${name(this.#stages[ok.index ?? -1], ok.index)} done`);
      const failed = ev.mapIterationFailedEventDetails;
      if (ev.type === 'MapIterationFailed' && failed?.name === 'Stages') lines.push(`${tag} ${name(this.#stages[failed.index ?? -1], failed.index)} failed`);
      const part = ev.mapIterationSucceededEventDetails;
      if (ev.type === 'MapIterationSucceeded' && (part?.name === 'Partitions' || part?.name === 'GpuSlots')) this.#done++;
    }
    const s = this.#stages[this.#stage];
    if (s) {
      const total = s.executor === 'lambda' ? s.partitions : s.slots;
      const line = `${tag} stage ${s.index} (${s.executor}): ${this.#done}/${total} ${s.executor === 'lambda' ? 'partitions' : 'GPU tasks'}`;
      if (line !== this.#last) {
        // Before the stage's own done/failed line when both came in one batch.
        const end = lines.findIndex((l) => l.startsWith(`${tag} stage ${s.index} (`) && (l.endsWith(' done') || l.endsWith(' failed')));
        if (end >= 0) lines.splice(end, 0, line);
        else lines.push(line);
        this.#last = line;
      }
    }
    return lines;
  }
}
