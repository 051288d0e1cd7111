#!/usr/bin/env bash
# Deploys the CDK app (cdk/app.ts) to a LocalStack-compatible endpoint (MiniStack, LocalStack) with
# the CDK CLI: every AWS SDK call of the CLI goes to AWS_ENDPOINT_URL. Start the emulator first
# (localstack/README.md: MiniStack from localstack/.venv, or docker-compose.yml).
#
# No DNS tricks: with an IP address as the endpoint (the default http://127.0.0.1:4566) the SDK
# addresses S3 buckets path-style, so asset publishing needs neither *.localhost.localstack.cloud
# nor cdklocal.
#
# The app is synthesized with -c fanout:emulator=true (cdk/emulator.ts): it leaves out what
# emulators lack and prints what it did. GPU tasks:
#   FANOUT_EMULATOR_IMAGE=standin (default): no image is built; run localstack/ecs-agent.ts next to
#     a Docker-less emulator (npm run local:run starts it).
#   FANOUT_EMULATOR_IMAGE=cpu: cdk deploy builds a CPU-only image with your Docker, for an emulator
#     that runs ECS tasks in containers (LocalStack Pro).
#
#   AWS_ENDPOINT_URL   emulator endpoint (default http://127.0.0.1:4566)
#   FANOUT_AMI_ID      an AMI id the emulator knows (-c fanout:amiId=…; default a placeholder)
set -euo pipefail
cd "$(dirname "$0")/../.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
unset AWS_ENDPOINT_URL_S3 AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
export CDK_DEFAULT_ACCOUNT="${CDK_DEFAULT_ACCOUNT:-000000000000}"
export CDK_DEFAULT_REGION="$AWS_REGION"

echo "waiting for an emulator at $AWS_ENDPOINT_URL ..."
for i in $(seq 1 60); do
  if curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/_localstack/health" 2>/dev/null \
    || curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/_ministack/ready" 2>/dev/null; then
    break
  fi
  if [ "$i" = 60 ]; then
    echo "nothing answers at $AWS_ENDPOINT_URL; start MiniStack (localstack/README.md) or an emulator container" >&2
    exit 1
  fi
  sleep 2
done

CONTEXT=(-c fanout:emulator=true -c "fanout:emulatorImage=${FANOUT_EMULATOR_IMAGE:-standin}")
if [ -n "${FANOUT_AMI_ID:-}" ]; then CONTEXT+=(-c "fanout:amiId=$FANOUT_AMI_ID"); fi

ASSEMBLY=cdk.out/emulator
npx cdk synth FanoutExample --quiet --output "$ASSEMBLY" "${CONTEXT[@]}"
npx cdk bootstrap --app "$ASSEMBLY" "aws://$CDK_DEFAULT_ACCOUNT/$AWS_REGION"
npx cdk deploy FanoutExample --app "$ASSEMBLY" --require-approval never --outputs-file cdk.out/emulator-outputs.json
echo "deployed: outputs in cdk.out/emulator-outputs.json; next: npm run local:run"
