// Emulator mode (`-c fanout:emulator=true`): the same FanoutPipeline, deployable to a
// LocalStack-compatible emulator (MiniStack, LocalStack). Emulators lack a few resource types and
// the public SSM parameters; this module decides what the construct does instead, and says so in
// the synth output (Info annotations, which `cdk synth` / `cdk deploy` print):
// - left out: AWS::EC2::FlowLog, AWS::ECS::CapacityProvider, AWS::ECS::ClusterCapacityProviderAssociations
//   (and the RunTask states' CapacityProviderStrategy, which would name the left-out provider);
// - the GPU AMI: a literal image id (`-c fanout:amiId=ami-…`, default a placeholder) instead of the
//   ECS GPU-optimized AMI's SSM public parameter; no instance is ever launched there (the group's
//   minimum is 0 and, without a capacity provider, nothing scales it);
// - the GPU task image (`-c fanout:emulatorImage=`):
//   `standin` (default): no image is built or published (no Docker). The task definition names
//     EMULATOR_STANDIN_IMAGE, which exists nowhere: a Docker-backed emulator fails to pull it
//     (loudly), and on a Docker-less one (MiniStack) localstack/ecs-agent.ts runs each task's
//     command with the project's own entrypoint (lambdas/ecs-task.ts) as a local process.
//   `cpu`: the image of cdk/gpu-task/Dockerfile built CPU-only (no CUDA base, no onnxruntime GPU
//     download) by `cdk deploy` with your Docker, for an emulator that runs ECS tasks in containers.
import { Annotations, AspectPriority, Aspects, CfnResource, type IAspect, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct, IConstruct } from 'constructs';

/** The image a stand-in task definition names; never built, never pulled by the ECS stand-in. */
const EMULATOR_STANDIN_IMAGE = 'fanout-gpu-task-not-built:ecs-standin';
/** An AMI id of the right shape for the never-launched GPU instances. */
const PLACEHOLDER_AMI = 'ami-00000000000000000';
/** Build args of the default image for `fanout:emulatorImage=cpu`. */
const CPU_IMAGE_ARGS = { CUDA_IMAGE: 'node:22-bookworm-slim', ORT_INSTALL: 'skip' };

/** Resource types emulators lack, and why leaving them out changes nothing a run needs there. */
const OMITTED: Record<string, string> = {
  'AWS::EC2::FlowLog': 'VPC flow logs (rejected traffic of the GPU instances, which never launch in an emulator)',
  'AWS::ECS::CapacityProvider': 'the GPU capacity provider (managed scaling of the instance group from zero)',
  'AWS::ECS::ClusterCapacityProviderAssociations': "the cluster's default capacity provider strategy",
};

export interface EmulatorMode {
  /** How GPU tasks run there (see the top of this file). */
  readonly image: 'standin' | 'cpu';
  /** The literal AMI id of the launch template. */
  readonly amiId: string;
}

/** The emulator mode the app's context asks for (`fanout:emulator`, `fanout:emulatorImage`, `fanout:amiId`), or undefined. */
export function emulatorMode(scope: Construct): EmulatorMode | undefined {
  const ctx = (k: string): string | undefined => {
    const v: unknown = scope.node.tryGetContext(k);
    return v === undefined || v === null ? undefined : String(v);
  };
  const on = ctx('fanout:emulator');
  if (on === undefined || on === 'false') return undefined;
  if (on !== 'true') throw new Error(`context fanout:emulator must be true or false, got ${JSON.stringify(on)}`);
  const image = ctx('fanout:emulatorImage') ?? 'standin';
  if (image !== 'standin' && image !== 'cpu') throw new Error(`context fanout:emulatorImage must be standin or cpu, got ${JSON.stringify(image)}`);
  const amiId = ctx('fanout:amiId') ?? PLACEHOLDER_AMI;
  if (!/^ami-[0-9a-f]{8,17}$/.test(amiId)) throw new Error(`context fanout:amiId must be an AMI id (ami-…), got ${JSON.stringify(amiId)}`);
  return { image, amiId };
}

/** The GPU launch template's image in emulator mode: the literal id, no SSM parameter. */
export function emulatorMachineImage(scope: Construct, mode: EmulatorMode): ec2.IMachineImage {
  Annotations.of(scope).addInfo(
    `fanout emulator mode: GPU AMI ${mode.amiId} (${mode.amiId === PLACEHOLDER_AMI ? 'a placeholder; -c fanout:amiId=ami-… to change it' : '-c fanout:amiId'}) instead of the SSM public parameter of the ECS GPU-optimized AMI; no GPU instance is launched`,
  );
  return { getImage: () => ({ imageId: mode.amiId, osType: ec2.OperatingSystemType.LINUX, userData: ec2.UserData.forLinux() }) };
}

/** The GPU task image in emulator mode; `build(args)` makes the Dockerfile's image with extra build args. */
export function emulatorTaskImage(scope: Construct, mode: EmulatorMode, build: (extraArgs: Record<string, string>) => ecs.ContainerImage): ecs.ContainerImage {
  if (mode.image === 'cpu') {
    Annotations.of(scope).addInfo(
      'fanout emulator mode: the GPU task image is built CPU-only (CUDA_IMAGE=node:22-bookworm-slim, ORT_INSTALL=skip) by cdk deploy with Docker',
    );
    return build(CPU_IMAGE_ARGS);
  }
  Annotations.of(scope).addInfo(
    `fanout emulator mode: no GPU task image is built or published; the task definition names ${EMULATOR_STANDIN_IMAGE}, which exists nowhere. ` +
      'Run localstack/ecs-agent.ts next to a Docker-less emulator: it runs each task with lambdas/ecs-task.ts as a local process (-c fanout:emulatorImage=cpu builds a CPU image instead)',
  );
  return ecs.ContainerImage.fromRegistry(EMULATOR_STANDIN_IMAGE);
}

/**
 * Leaves the OMITTED resource types out of `scope`'s subtree. An aspect, because the cluster adds
 * its capacity provider associations in an aspect of its own (a mutating one, which runs first).
 */
export function omitForEmulator(scope: Construct): void {
  Aspects.of(scope).add(new OmitUnsupported(), { priority: AspectPriority.MUTATING + 100 });
  for (const c of scope.node.findAll()) {
    if (c instanceof ec2.Vpc) {
      Validations.of(c).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Emulator mode (-c fanout:emulator=true): emulators have no VPC flow logs.' });
    }
  }
}

class OmitUnsupported implements IAspect {
  visit(node: IConstruct): void {
    if (!CfnResource.isCfnResource(node)) return;
    const why = OMITTED[node.cfnResourceType];
    const parent = node.node.scope;
    if (why === undefined || !parent) return;
    parent.node.tryRemoveChild(node.node.id);
    Annotations.of(parent).addInfo(`fanout emulator mode: ${node.cfnResourceType} left out (${why}; emulators lack this resource type)`);
  }
}
