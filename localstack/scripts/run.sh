#!/usr/bin/env bash
# Uploads a generated Parquet file under the input prefix of the stack deployed by deploy.sh and
# follows the run the upload starts (S3 -> EventBridge -> Step Functions -> Lambda / ECS) to its
# end. Extra arguments go to examples/upload.ts (e.g. --rows 200000).
set -euo pipefail
cd "$(dirname "$0")/../.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
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

npx tsx --conditions=development examples/upload.ts \
  --endpoint "$AWS_ENDPOINT_URL" --bucket "$INPUT_BUCKET" --prefix incoming/ --wait "$STATE_MACHINE" "$@"
