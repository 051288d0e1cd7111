#!/usr/bin/env bash
# Uploads a generated Parquet file under the input prefix of the stack deployed by deploy.sh and
# follows the run the upload starts (S3 -> EventBridge -> Step Functions -> Lambda / ECS) to its
# end. Extra arguments go to examples/upload.ts (e.g. --rows 200000).
#
# With FANOUT_EMULATOR_IMAGE=standin (deploy.sh's default) the GPU stage's ECS tasks run through
# localstack/ecs-agent.ts, started here for the run and stopped after it; set FANOUT_ECS_AGENT=0
# when the emulator runs ECS tasks itself (Docker, LocalStack Pro) or an agent already runs.
set -euo pipefail
cd "$(dirname "$0")/../.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
unset AWS_ENDPOINT_URL_S3 AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"

OUTPUTS=cdk.out/emulator-outputs.json
if [ ! -f "$OUTPUTS" ]; then
  echo "no $OUTPUTS: deploy first (npm run local:deploy)" >&2
  exit 1
fi
read -r INPUT_BUCKET STATE_MACHINE < <(node -e '
  const o = Object.values(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")))[0];
  console.log(o.InputBucketName, o.StateMachineArn);' "$OUTPUTS")

if [ "${FANOUT_ECS_AGENT:-1}" = 1 ]; then
  # One process (no npx / tsx CLI wrappers in between), so the trap's SIGTERM reaches the agent,
  # which then kills its task processes.
  node --conditions=development --import tsx localstack/ecs-agent.ts --endpoint "$AWS_ENDPOINT_URL" --pipeline examples/pipeline.ts &
  AGENT=$!
  trap 'kill -TERM "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null || true' EXIT
fi

npx tsx --conditions=development examples/upload.ts \
  --endpoint "$AWS_ENDPOINT_URL" --bucket "$INPUT_BUCKET" --prefix incoming/ --wait "$STATE_MACHINE" "$@"
