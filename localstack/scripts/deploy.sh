#!/usr/bin/env bash
# Deploys the CDK app (cdk/app.ts) to a LocalStack-compatible endpoint (LocalStack, MiniStack) the
# way cdklocal does it: every AWS SDK call of the CDK CLI goes to AWS_ENDPOINT_URL. Start the
# emulator first (localstack/docker-compose.yml). Needs Docker: `cdk deploy` builds the GPU task
# image (a CPU-only variant here, -c fanout:emulator=true) and the emulator runs Lambda and ECS in
# containers. The offline harness (`npm run local`) needs none of this.
#
#   AWS_ENDPOINT_URL   emulator endpoint (default http://localhost:4566)
#   FANOUT_AMI_ID      an AMI id the emulator knows, when it has no SSM public parameter for the
#                      ECS GPU-optimized AMI (-c fanout:amiId=…)
set -euo pipefail
cd "$(dirname "$0")/../.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
# Asset uploads address buckets virtual-host style; *.s3.localhost.localstack.cloud resolves to
# 127.0.0.1 (as cdklocal uses it). Override for an emulator elsewhere.
export AWS_ENDPOINT_URL_S3="${AWS_ENDPOINT_URL_S3:-http://s3.localhost.localstack.cloud:4566}"
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
    echo "nothing answers at $AWS_ENDPOINT_URL; start it: docker compose -f localstack/docker-compose.yml --profile localstack up -d" >&2
    exit 1
  fi
  sleep 2
done

CONTEXT=(-c fanout:emulator=true)
if [ -n "${FANOUT_AMI_ID:-}" ]; then CONTEXT+=(-c "fanout:amiId=$FANOUT_AMI_ID"); fi

npx cdk bootstrap "aws://$CDK_DEFAULT_ACCOUNT/$AWS_REGION" "${CONTEXT[@]}"
npx cdk deploy FanoutExample --require-approval never "${CONTEXT[@]}" --outputs-file cdk.out/emulator-outputs.json
echo "deployed: outputs in cdk.out/emulator-outputs.json; next: npm run local:run"
