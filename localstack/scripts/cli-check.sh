#!/usr/bin/env bash
# Drives the local stack (`npm run local`: S3, EventBridge stand-in, Step Functions, Lambdas) with
# clients nobody here wrote, with their default settings, and checks it answers as AWS does:
#   - the AWS CLI: `aws s3 cp` of a Parquet file (single and multipart), `s3api get-object --range
#     bytes=-8`, conditional puts (--if-none-match '*', --if-match), an identical re-upload (a second
#     run), `stepfunctions get-execution-history` of a failed run;
#   - pyarrow's S3 filesystem writing and reading a Parquet file.
# The stack is started with foreign AWS keys exported (it must accept any). The Python tools come from
# localstack/.venv (created by scripts/python-venv.sh when missing). Not part of `npm test`: it needs
# Python and pip. Exit code 0 when every check passes.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash localstack/scripts/python-venv.sh
VENV="$PWD/localstack/.venv"
AWS="$VENV/bin/aws"
PY="$VENV/bin/python"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fanout-cli-check-XXXXXX")"
LOG="$WORK/stack.log"
STACK_PID=""
cleanup() {
  if [ -n "$STACK_PID" ] && kill -0 "$STACK_PID" 2>/dev/null; then
    kill -TERM "$STACK_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$STACK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$STACK_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- stack log (last 40 lines) ---" >&2
  tail -n 40 "$LOG" >&2 || true
  exit 1
}
ok() { echo "ok: $*"; }

# A shell with someone's real-looking keys and no AWS config: "default settings" for every client.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE="$WORK/no-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/no-credentials"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_SFN || true
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

# --- the stack ---------------------------------------------------------------------------------
node --conditions=development --import tsx localstack/run-local.ts >"$LOG" 2>&1 &
STACK_PID=$!
for _ in $(seq 1 600); do
  grep -q 'Watching for uploads' "$LOG" && break
  kill -0 "$STACK_PID" 2>/dev/null || fail "npm run local exited at start-up (with foreign AWS keys exported)"
  sleep 0.2
done
grep -q 'Watching for uploads' "$LOG" || fail "npm run local did not start within 120 s"
S3=$(sed -n 's/^  S3 endpoint *\(http:[^ ]*\).*/\1/p' "$LOG" | head -n1)
SFN=$(sed -n 's/^  Step Functions *\(http:[^ ]*\) .*/\1/p' "$LOG" | head -n1)
SM=$(sed -n 's/^  Step Functions *http:[^ ]* *\(arn:[^ ]*\).*/\1/p' "$LOG" | head -n1)
[ -n "$S3" ] && [ -n "$SFN" ] && [ -n "$SM" ] || fail "cannot read the endpoints from the banner"
ok "npm run local started with foreign AWS keys exported (S3 $S3, Step Functions $SFN)"

s3() { "$AWS" --endpoint-url "$S3" "$@"; }
sfn() { "$AWS" --endpoint-url "$SFN" stepfunctions "$@"; }

# Waits for the n-th execution (1-based, in start order) whose input names s3://$1 to start and
# end; prints its ARN and status. (The CLI's botocore, in one process: a CLI call per poll would
# take a second each.)
wait_run() {
  "$PY" - "s3://$1" "${2:-1}" "$SFN" "$SM" <<'EOF_PY' || fail "waiting for the run of s3://$1 (#${2:-1})"
import sys, time
try:
    import botocore.session as sessions
except ImportError:  # awscli 1.44+ vendors botocore as awscli.botocore
    import awscli.botocore.session as sessions
uri, nth, endpoint, machine = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sfn = sessions.get_session().create_client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1")
inputs, arn, deadline = {}, None, time.time() + 90
while arn is None:
    if time.time() > deadline:
        sys.exit(f"no run #{nth} for {uri} within 90 s")
    runs = sorted(sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"], key=lambda e: e["startDate"])
    for e in runs:
        if e["executionArn"] not in inputs:
            inputs[e["executionArn"]] = sfn.describe_execution(executionArn=e["executionArn"])["input"]
    mine = [e["executionArn"] for e in runs if uri in inputs[e["executionArn"]]]
    if len(mine) >= nth:
        arn = mine[nth - 1]
    else:
        time.sleep(0.5)
deadline = time.time() + 300
while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING" and time.time() < deadline:
    time.sleep(0.5)
print(arn, status)
EOF_PY
}

# --- files -------------------------------------------------------------------------------------
"$PY" - "$WORK" <<'EOF'
import os, sys
import pyarrow as pa, pyarrow.parquet as pq
work = sys.argv[1]
n = 20000
ids = pa.array(range(n), pa.int64())
x = pa.array([((k * 7919) % 10007) / 10007 for k in range(n)], pa.float64())
cats = ["books", "games", "garden", "music", "tools"]
pq.write_table(pa.table({"id": ids, "x": x, "category": pa.array([cats[k % 5] for k in range(n)])}), os.path.join(work, "orders.parquet"), row_group_size=5000)
# category as integers: the pipeline's label UDF calls category.toUpperCase(), so stage 0 fails.
pq.write_table(pa.table({"id": ids[:500], "x": x[:500], "category": pa.array(range(500), pa.int64())}), os.path.join(work, "bad-category.parquet"))
with open(os.path.join(work, "big.bin"), "wb") as f:
    f.write(os.urandom(20 * 1024 * 1024 + 123))
EOF

# --- 1. aws s3 cp of a Parquet file (default settings), and the run it starts ------------------
s3 s3 cp "$WORK/orders.parquet" s3://fanout-input/incoming/cli/orders.parquet >/dev/null || fail "aws s3 cp upload"
s3 s3 cp s3://fanout-input/incoming/cli/orders.parquet "$WORK/orders.back.parquet" >/dev/null || fail "aws s3 cp download"
cmp -s "$WORK/orders.parquet" "$WORK/orders.back.parquet" || fail "the object is not the uploaded file (aws-chunked framing stored?)"
ok "aws s3 cp: the Parquet file round-trips byte-exact"
read -r ARN STATUS < <(wait_run fanout-input/incoming/cli/orders.parquet 1)
[ "$STATUS" = SUCCEEDED ] || fail "the run for orders.parquet ended $STATUS ($ARN)"
ok "the upload started a run that SUCCEEDED"

# Multipart (the CLI splits files over 8 MiB).
s3 s3 cp "$WORK/big.bin" s3://fanout-work/cli/big.bin >/dev/null || fail "aws s3 cp multipart upload"
s3 s3 cp s3://fanout-work/cli/big.bin "$WORK/big.back.bin" >/dev/null || fail "aws s3 cp multipart download"
cmp -s "$WORK/big.bin" "$WORK/big.back.bin" || fail "multipart upload not byte-exact"
ETAG=$(s3 s3api head-object --bucket fanout-work --key cli/big.bin --query ETag --output text)
[[ "$ETAG" =~ -[0-9]+\"?$ ]] || fail "a multipart object's ETag is md5-<parts> on S3, got $ETAG"
ok "aws s3 cp multipart: byte-exact, ETag $ETAG"

# --- 2. s3api get-object --range bytes=-8 ------------------------------------------------------
OUT=$(s3 s3api get-object --bucket fanout-input --key incoming/cli/orders.parquet --range bytes=-8 "$WORK/tail.bin" --output json)
SIZE=$(stat -c %s "$WORK/orders.parquet")
RANGE=$(echo "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ContentRange"])')
[ "$RANGE" = "bytes $((SIZE - 8))-$((SIZE - 1))/$SIZE" ] || fail "Content-Range '$RANGE' for bytes=-8 of $SIZE bytes"
tail -c 8 "$WORK/orders.parquet" | cmp -s - "$WORK/tail.bin" || fail "bytes=-8 did not return the last 8 bytes"
[ "$(tail -c 4 "$WORK/tail.bin")" = PAR1 ] || fail "the last 4 bytes are not PAR1"
ok "get-object --range bytes=-8: the last 8 bytes, $RANGE"

# --- 3. conditional puts -----------------------------------------------------------------------
echo one >"$WORK/one.txt"
echo two >"$WORK/two.txt"
E1=$(s3 s3api put-object --bucket fanout-work --key cli/cond.txt --body "$WORK/one.txt" --if-none-match '*' --query ETag --output text) ||
  fail "put-object --if-none-match '*' on a new key"
if s3 s3api put-object --bucket fanout-work --key cli/cond.txt --body "$WORK/two.txt" --if-none-match '*' 2>"$WORK/err" >/dev/null; then
  fail "put-object --if-none-match '*' overwrote an existing key"
fi
grep -q PreconditionFailed "$WORK/err" || fail "expected PreconditionFailed, got: $(cat "$WORK/err")"
if s3 s3api put-object --bucket fanout-work --key cli/cond.txt --body "$WORK/two.txt" --if-match '"0123456789abcdef0123456789abcdef"' 2>"$WORK/err" >/dev/null; then
  fail "put-object --if-match with another ETag overwrote the key"
fi
grep -q PreconditionFailed "$WORK/err" || fail "expected PreconditionFailed, got: $(cat "$WORK/err")"
s3 s3api put-object --bucket fanout-work --key cli/cond.txt --body "$WORK/two.txt" --if-match "$E1" >/dev/null || fail "put-object --if-match with the current ETag"
s3 s3 cp s3://fanout-work/cli/cond.txt "$WORK/cond.back" >/dev/null
cmp -s "$WORK/two.txt" "$WORK/cond.back" || fail "the conditional put did not store its body"
ok "conditional puts: If-None-Match: * and If-Match answer 412 PreconditionFailed or store, as on S3"

# --- 4. an identical re-upload starts a second run ---------------------------------------------
s3 s3 cp "$WORK/orders.parquet" s3://fanout-input/incoming/cli/orders.parquet >/dev/null || fail "aws s3 cp re-upload"
read -r ARN2 STATUS2 < <(wait_run fanout-input/incoming/cli/orders.parquet 2)
[ "$ARN2" != "$ARN" ] || fail "the re-upload started no second run"
[ "$STATUS2" = SUCCEEDED ] || fail "the second run ended $STATUS2 ($ARN2)"
ok "an identical re-upload is an event too: a second run SUCCEEDED"

# --- 5. get-execution-history of a failed run --------------------------------------------------
s3 s3 cp "$WORK/bad-category.parquet" s3://fanout-input/incoming/cli/bad-category.parquet >/dev/null || fail "upload of the failing file"
read -r BAD BADSTATUS < <(wait_run fanout-input/incoming/cli/bad-category.parquet 1)
[ "$BADSTATUS" = FAILED ] || fail "the run for bad-category.parquet ended $BADSTATUS, expected FAILED"
sfn get-execution-history --execution-arn "$BAD" --output json >"$WORK/history.json" || fail "get-execution-history"
"$PY" - "$WORK/history.json" <<'EOF' || fail "the failed run's history is not what AWS writes"
import json, sys
events = json.load(open(sys.argv[1]))["events"]
types = [e["type"] for e in events]
assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionFailed", (types[0], types[-1])
assert [e["id"] for e in events] == list(range(1, len(events) + 1))
for a, b in zip(types, types[1:]):
    assert not (a == "TaskFailed" and b == "TaskSucceeded"), "TaskSucceeded right after TaskFailed"
    assert not (a == "MapStateFailed" and b == "MapStateSucceeded"), "MapStateSucceeded right after MapStateFailed"
assert "TaskFailed" in types and "MapIterationFailed" in types and "MapStateFailed" in types, types
# The Stages map ran stage 0 only: no iteration after the failed one.
stages = [e["mapIterationStartedEventDetails"]["index"] for e in events if e["type"] == "MapIterationStarted" and e["mapIterationStartedEventDetails"]["name"] == "Stages"]
assert stages == [0], stages
# Each map iteration ends once (never both aborted and succeeded).
ends = {}
for e in events:
    for k in ("mapIterationSucceededEventDetails", "mapIterationFailedEventDetails", "mapIterationAbortedEventDetails"):
        if k in e:
            ends.setdefault((e[k]["name"], e[k]["index"]), []).append(e["type"])
assert all(len(v) == 1 for v in ends.values()), ends
failed = next(e for e in events if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
assert "toUpperCase" in failed.get("cause", ""), failed
print("history:", len(events), "events; ends with", " -> ".join(types[-4:]))
EOF
RUNTAG=$(sfn describe-execution --execution-arn "$BAD" --query input --output text | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["runId"][:8])')
for _ in $(seq 1 20); do grep -q "\[run $RUNTAG\] FAILED" "$LOG" && break; sleep 0.5; done
grep -q "\[run $RUNTAG\] FAILED" "$LOG" || fail "npm run local did not report the failed run"
if grep "\[run $RUNTAG\]" "$LOG" | grep -q ' done$'; then fail "npm run local printed a stage of the failed run as done"; fi
grep -q "\[run $RUNTAG\] stage 0 (lambda) failed" "$LOG" || fail "npm run local did not say stage 0 failed"
ok "get-execution-history of the failed run: AWS's events; npm run local says 'stage 0 (lambda) failed'"

# --- 6. pyarrow's S3 filesystem ----------------------------------------------------------------
"$PY" - "$S3" "$WORK/orders.parquet" <<'EOF' || fail "pyarrow S3 filesystem"
import sys
import pyarrow.fs as fs, pyarrow.parquet as pq
endpoint, local = sys.argv[1], sys.argv[2]
s3 = fs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1], scheme="http", access_key="test", secret_key="test", region="us-east-1")
table = pq.read_table(local)
pq.write_table(table, "fanout-work/cli/pyarrow.parquet", filesystem=s3, row_group_size=4000)
back = pq.read_table("fanout-work/cli/pyarrow.parquet", filesystem=s3)
assert back.equals(table), "pyarrow read back another table"
info = s3.get_file_info("fanout-work/cli/pyarrow.parquet")
print("pyarrow wrote and read back", back.num_rows, "rows,", info.size, "bytes")
EOF
ok "pyarrow's S3 filesystem writes and reads a Parquet file"

echo "all CLI checks passed"
