// A local Step Functions endpoint for tests and the offline harness: an HTTP server speaking the
// JSON 1.0 protocol of @aws-sdk/client-sfn, running executions with aws-local-stepfunctions and
// sending every Task to local handlers (Lambda handlers, an ECS runner, an S3 reader): nothing
// leaves the machine. Differences from AWS are listed in localstack/README.md.
import type { AslDefinition } from '../../src/aws/state-machine.ts';
import { ACCOUNT, STATE_MACHINE_ARN } from './constants.ts';
import { Executions, nowSeconds } from './executions.ts';
import { installHooks, loadLib, type LibModule } from './hooks.ts';
import { serveApi } from './http.ts';
import { clone } from './json.ts';
import { collectTasks, indexStates, normalizeDefinitionForLocal } from './normalize.ts';
import { checkLambdaHandlers, type LocalTaskHandlers } from './tasks.ts';

export interface LocalStepFunctions {
  /** http://127.0.0.1:<port>: the `endpoint` of an SFNClient. */
  endpoint: string;
  stateMachineArn: string;
  stop(): Promise<void>;
}

export async function startLocalStepFunctions(opts: {
  definition: AslDefinition | string;
  roleArn?: string;
  handlers: LocalTaskHandlers;
  port?: number;
}): Promise<LocalStepFunctions> {
  const original: AslDefinition = typeof opts.definition === 'string' ? (JSON.parse(opts.definition) as AslDefinition) : clone(opts.definition);
  const { definition } = normalizeDefinitionForLocal(original);
  const tasks = collectTasks(definition);
  const states = indexStates(definition);
  checkLambdaHandlers(tasks, states, opts.handlers);

  const { StateMachine } = await loadLib();
  installHooks(StateMachine);
  const machine = new StateMachine(definition as unknown as ConstructorParameters<LibModule['StateMachine']>[0]);
  const roleArn = opts.roleArn ?? `arn:aws:iam::${ACCOUNT}:role/fanout-local-sfn`;
  const distributedMaps = new Map<string, string>();
  for (const [name, s] of indexStates(original)) {
    if (s.Type === 'Map' && s.ItemProcessor?.ProcessorConfig?.Mode === 'DISTRIBUTED') distributedMaps.set(name, s.Label ?? name);
  }
  const executions = new Executions({ machine, tasks, states, handlers: opts.handlers, roleArn, distributedMaps });
  const api = await serveApi({ executions, definitionText: JSON.stringify(original), roleArn, creationDate: nowSeconds(), port: opts.port });

  return {
    endpoint: api.endpoint,
    stateMachineArn: STATE_MACHINE_ARN,
    async stop() {
      await executions.stopAll({ error: 'HarnessStopped', cause: `the local Step Functions server at ${api.endpoint} was stopped` });
      await api.close();
    },
  };
}
