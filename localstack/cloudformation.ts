// The CloudFormation side of the offline harness: reads a stack's template from a cloud assembly
// (cdk.out) and resolves the intrinsic functions CDK emits (Ref, Fn::GetAtt, Fn::Join, Fn::Sub …)
// to local names and ARNs, the way the local cloud (localstack/index.ts, localstack/stepfunctions/)
// names its resources.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { JsonValue } from '../src/aws/state-machine.ts';
import { ACCOUNT, REGION, STATE_MACHINE_ARN as LOCAL_STATE_MACHINE_ARN, STATE_MACHINE_NAME as LOCAL_STATE_MACHINE_NAME } from './stepfunctions/constants.ts';
import { isObject as isObj } from './stepfunctions/json.ts';

// ---------------------------------------------------------------------------------------------
// Cloud assembly and template

interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}
interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Parameters?: Record<string, { Type?: string; Default?: unknown }>;
}

export interface SynthesizedStack {
  stackName: string;
  templateFile: string;
  template: CfnTemplate;
}

/** The stack of a cloud assembly that holds a state machine (or the one named). */
export function loadSynthesizedStack(cdkOut: string, stackName?: string): SynthesizedStack {
  const manifestFile = join(cdkOut, 'manifest.json');
  if (!existsSync(manifestFile)) throw new Error(`${cdkOut} is not a cloud assembly (no manifest.json): run \`npx cdk synth\` first`);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as {
    artifacts?: Record<string, { type: string; properties?: { templateFile?: string }; displayName?: string }>;
  };
  const stacks = Object.entries(manifest.artifacts ?? {})
    .filter(([, a]) => a.type === 'aws:cloudformation:stack' && a.properties?.templateFile)
    .map(([id, a]) => {
      const templateFile = join(cdkOut, a.properties!.templateFile!);
      return { stackName: id, templateFile, template: JSON.parse(readFileSync(templateFile, 'utf8')) as CfnTemplate };
    });
  const candidates = stackName
    ? stacks.filter((s) => s.stackName === stackName)
    : stacks.filter((s) => Object.values(s.template.Resources).some((r) => r.Type === 'AWS::StepFunctions::StateMachine'));
  if (candidates.length !== 1) {
    throw new Error(
      `${cdkOut}: ${stackName ? `no stack '${stackName}'` : `${candidates.length} stacks with a state machine; pass stackName`} (stacks: ${stacks.map((s) => s.stackName).join(', ') || 'none'})`,
    );
  }
  return candidates[0]!;
}

/** Local names for the template's resources: what Ref and Fn::GetAtt resolve to in the harness. */
export class LocalResolver {
  readonly names = new Map<string, string>();
  stateMachineArn = LOCAL_STATE_MACHINE_ARN;

  constructor(readonly stack: SynthesizedStack) {
    for (const [id, r] of Object.entries(stack.template.Resources)) {
      const base = id.toLowerCase().replace(/[^a-z0-9-]/g, '');
      if (r.Type === 'AWS::S3::Bucket') this.names.set(id, `fanout-local-${base}`.slice(0, 63).replace(/-+$/, ''));
      else this.names.set(id, `${stack.stackName}-${id}`.slice(0, 64));
    }
  }

  private resource(id: string): CfnResource {
    const r = this.stack.template.Resources[id];
    if (!r) throw new Error(`template: no resource '${id}'`);
    return r;
  }

  ref(id: string): string {
    switch (id) {
      case 'AWS::Region':
        return REGION;
      case 'AWS::AccountId':
        return ACCOUNT;
      case 'AWS::Partition':
        return 'aws';
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return this.stack.stackName;
      case 'AWS::StackId':
        return `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/${this.stack.stackName}/local`;
      case 'AWS::NoValue':
        return '';
    }
    const param = this.stack.template.Parameters?.[id];
    if (param) return typeof param.Default === 'string' ? param.Default : `local-parameter-${id}`;
    const r = this.resource(id);
    const name = this.names.get(id)!;
    switch (r.Type) {
      case 'AWS::StepFunctions::StateMachine':
        return this.stateMachineArn;
      case 'AWS::ECS::TaskDefinition':
        return `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${name}:1`;
      case 'AWS::SQS::Queue':
        return `http://127.0.0.1/${ACCOUNT}/${name}`;
      case 'AWS::EC2::Subnet':
        return `subnet-${id.toLowerCase()}`;
      case 'AWS::EC2::SecurityGroup':
        return `sg-${id.toLowerCase()}`;
      case 'AWS::EC2::VPC':
        return `vpc-${id.toLowerCase()}`;
      default:
        return name;
    }
  }

  getAtt(id: string, attr: string): string {
    const r = this.resource(id);
    const name = this.names.get(id)!;
    const key = `${r.Type}.${attr}`;
    switch (key) {
      case 'AWS::S3::Bucket.Arn':
        return `arn:aws:s3:::${name}`;
      case 'AWS::S3::Bucket.DomainName':
        return `${name}.s3.amazonaws.com`;
      case 'AWS::S3::Bucket.RegionalDomainName':
        return `${name}.s3.${REGION}.amazonaws.com`;
      case 'AWS::Lambda::Function.Arn':
        return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;
      case 'AWS::StepFunctions::StateMachine.Arn':
        return this.stateMachineArn;
      case 'AWS::StepFunctions::StateMachine.Name':
        return LOCAL_STATE_MACHINE_NAME;
      case 'AWS::ECS::Cluster.Arn':
        return `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${name}`;
      case 'AWS::ECS::TaskDefinition.TaskDefinitionArn':
        return this.ref(id);
      case 'AWS::IAM::Role.Arn':
        return `arn:aws:iam::${ACCOUNT}:role/${name}`;
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${name}:*`;
      case 'AWS::SQS::Queue.Arn':
        return `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`;
      case 'AWS::SQS::Queue.QueueName':
        return name;
      case 'AWS::Events::Rule.Arn':
        return `arn:aws:events:${REGION}:${ACCOUNT}:rule/${name}`;
      case 'AWS::EC2::SecurityGroup.GroupId':
        return this.ref(id);
      default:
        return `local-${id}-${attr}`;
    }
  }

  /** Resolves the intrinsic functions CDK emits; others fail loudly. */
  resolve(v: unknown): JsonValue {
    if (Array.isArray(v)) return v.map((x) => this.resolve(x));
    if (!isObj(v)) return v as JsonValue;
    const keys = Object.keys(v);
    if (keys.length === 1) {
      const [fn] = keys as [string];
      const arg = v[fn];
      switch (fn) {
        case 'Ref':
          return this.ref(String(arg));
        case 'Fn::GetAtt': {
          const [id, ...attr] = Array.isArray(arg) ? arg.map(String) : String(arg).split('.');
          return this.getAtt(id!, attr.join('.'));
        }
        case 'Fn::Join': {
          const [sep, parts] = arg as [string, unknown];
          const list = this.resolve(parts);
          if (!Array.isArray(list)) throw new Error('Fn::Join: the second argument is not a list');
          return list.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(sep);
        }
        case 'Fn::Select': {
          const [i, list] = arg as [unknown, unknown];
          const l = this.resolve(list);
          if (!Array.isArray(l)) throw new Error('Fn::Select: not a list');
          return l[Number(this.resolve(i))] ?? null;
        }
        case 'Fn::Split': {
          const [sep, s] = arg as [string, unknown];
          return String(this.resolve(s)).split(sep);
        }
        case 'Fn::GetAZs':
          return [`${REGION}a`, `${REGION}b`];
        case 'Fn::Sub': {
          const [text, vars] = (typeof arg === 'string' ? [arg, {}] : arg) as [string, Record<string, unknown>];
          return text.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
            if (name in vars) return String(this.resolve(vars[name]));
            const dot = name.indexOf('.');
            return dot > 0 && !name.startsWith('AWS::') ? this.getAtt(name.slice(0, dot), name.slice(dot + 1)) : this.ref(name);
          });
        }
        default:
          if (fn.startsWith('Fn::') || fn === 'Condition') throw new Error(`the harness does not resolve ${fn}`);
      }
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.resolve(x)]));
  }
}

/** A function's code directory in the cloud assembly: aws:asset:path metadata (CLI synth), else the asset manifest entry of its S3Key. */
export function functionAssetDir(cdkOut: string, stack: SynthesizedStack, r: CfnResource, resolver: LocalResolver): string | null {
  const meta = r.Metadata?.['aws:asset:path'];
  if (typeof meta === 'string') return isAbsolute(meta) ? meta : join(cdkOut, meta);
  const code = r.Properties?.['Code'];
  const key = isObj(code) ? resolver.resolve(code['S3Key']) : null;
  if (typeof key !== 'string') return null;
  const manifestFile = stack.templateFile.replace(/\.template\.json$/, '.assets.json');
  if (existsSync(manifestFile)) {
    const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as {
      files?: Record<string, { source?: { path?: string; packaging?: string }; destinations?: Record<string, { objectKey?: string }> }>;
    };
    for (const f of Object.values(m.files ?? {})) {
      if (f.source?.path && f.source.packaging === 'zip' && Object.values(f.destinations ?? {}).some((d) => d.objectKey === key))
        return join(cdkOut, f.source.path);
    }
  }
  const byHash = join(cdkOut, `asset.${key.replace(/\.zip$/, '')}`);
  return existsSync(byHash) ? byHash : null;
}
