#!/usr/bin/env bash
# The local demo: the whole stack on 127.0.0.1, a filled pool, then the same agent calls
# without the pool and through it, side by side; then one document batch end to end.
#
#   moto (SQS)  <-  get-session, replenish (under `cargo lambda watch`)  ->  AgentCore emulator
#                         ^  Event invokes go through `warmpool local relay`
#
#   batches: moto (S3, SQS, DynamoDB)  <-  invoker, stale-batch-detector, replenish (a second
#   `cargo lambda watch`, fed by `warmpool local pump` and `warmpool local schedule`)  ->  a
#   second AgentCore emulator (the document agent's runtime)  ->  document-agent
#
# Everything this script starts runs in its own process group and is stopped on exit, failure
# or Ctrl-C. Every wait is bounded. Tunables: DEMO_N (20), DEMO_CONCURRENCY (4),
# DEMO_FIRST_CALL_TIMEOUT (900 s: the first invoke of a function compiles it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

N=${DEMO_N:-20}
CONCURRENCY=${DEMO_CONCURRENCY:-4}
FIRST_CALL_TIMEOUT=${DEMO_FIRST_CALL_TIMEOUT:-900}
RUNTIME_ARN=arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-agent
HOST=127.0.0.1
# replenish accepts at most MAX_COUNT_PER_TRIGGER (100) sessions per {"count": n}.
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1 || N > 100)); then
  echo "DEMO_N must be 1..100, got $N" >&2
  exit 2
fi

mkdir -p .local
run_dir=$(mktemp -d "$root/.local/demo.XXXXXX")
pgids=()

log() { printf '\n==> %s\n' "$*" >&2; }

# The children of PID, recursively. `cargo lambda watch` starts each function instance in a
# session of its own, so killing watch's process group alone would not reach them if watch
# died without stopping them.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  if ((${#pgids[@]})); then
    log "stopping what the demo started"
    local pids=() pgid pid i alive
    for pgid in "${pgids[@]}"; do pids+=($(descendants "$pgid")); done
    # Newest first: the relay stops before the functions it forwards to.
    for ((i = ${#pgids[@]} - 1; i >= 0; i--)); do kill -TERM -- "-${pgids[i]}" 2>/dev/null || true; done
    for i in $(seq 1 60); do
      alive=0
      for pgid in "${pgids[@]}"; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    for pgid in "${pgids[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  if ((status != 0)); then
    echo "demo failed (exit $status); logs in $run_dir" >&2
    local f
    for f in "$run_dir"/*.log; do
      [ -f "$f" ] || continue
      echo "--- last lines of $f" >&2
      tail -n 15 "$f" >&2 || true
    done
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in a new session (so its own process group, with all its children), logging to
# $run_dir/<name>.log, and remembers the group for cleanup.
start() {
  local name=$1
  shift
  setsid "$@" >"$run_dir/$name.log" 2>&1 </dev/null &
  pgids+=("$!")
}

# A free loopback port, chosen by the kernel.
free_port() {
  .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http NAME URL SECONDS: until URL answers anything over HTTP.
wait_http() {
  local name=$1 url=$2 seconds=$3 i
  for i in $(seq 1 $((seconds * 5))); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.2
  done
  echo "$name did not answer at $url within ${seconds}s" >&2
  return 1
}

# wait_tcp NAME PORT SECONDS: until something accepts connections on 127.0.0.1:PORT (for
# servers that log an error for a probing HTTP request).
wait_tcp() {
  local name=$1 port=$2 seconds=$3 i
  for i in $(seq 1 $((seconds * 5))); do
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$name did not accept connections on $HOST:$port within ${seconds}s" >&2
  return 1
}

# Fails if anything listens on PORT on a non-loopback address.
assert_loopback_only() {
  local name=$1 port=$2
  command -v ss >/dev/null || return 0
  if ss -ltnH "( sport = :$port )" | awk '{print $4}' | grep -v -E '^(127\.0\.0\.1|\[::1\]):' | grep -q .; then
    echo "$name listens on a non-loopback address on port $port:" >&2
    ss -ltn "( sport = :$port )" >&2
    return 1
  fi
}

# serve NAME PORT PROBE SECONDS CMD...: starts CMD as NAME (see start), waits up to SECONDS
# until it answers (PROBE: a URL for wait_http, or "tcp" for wait_tcp), then checks that it
# listens on loopback only.
serve() {
  local name=$1 port=$2 probe=$3 seconds=$4
  shift 4
  start "$name" "$@"
  if [ "$probe" = tcp ]; then
    wait_tcp "$name" "$port" "$seconds"
  else
    wait_http "$name" "$probe" "$seconds"
  fi
  assert_loopback_only "$name" "$port"
}

# function_env POOL_QUEUE_URL AGENT_RUNTIME_ARN EMULATOR_URL RELAY_URL: the env-file lines
# every function under `cargo lambda watch` shares.
function_env() {
  cat <<EOF
POOL_QUEUE_URL=$1
REPLENISH_FUNCTION_NAME=replenish
AGENT_RUNTIME_ARN=$2
AWS_ENDPOINT_URL_SQS=$moto_url
AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=$3
AWS_ENDPOINT_URL_LAMBDA=$4
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_EC2_METADATA_DISABLED=true
EOF
}

export PATH="$root/.venv/bin:$PATH"
[ -x .venv/bin/moto_server ] && [ -x .venv/bin/cargo-lambda ] || {
  echo "run scripts/bootstrap.sh first (make demo does)" >&2
  exit 1
}

log "building (debug; reuses target/)"
# Built as `cargo lambda watch` builds them (one binary at a time), so that watch finds them
# up to date instead of rebuilding with another feature set on its first invoke.
cargo build --quiet --bin get-session
cargo build --quiet --bin replenish
cargo build --quiet --bin invoker
cargo build --quiet --bin stale-batch-detector
cargo build --quiet -p agentcore-emulator -p cli -p document-agent
warmpool=$root/target/debug/warmpool

moto_port=$(free_port)
emulator_port=$(free_port)
watch_port=$(free_port)
relay_port=$(free_port)
moto_url=http://$HOST:$moto_port
emulator_url=http://$HOST:$emulator_port
watch_url=http://$HOST:$watch_port
relay_url=http://$HOST:$relay_port

# The CLI and the functions share these: the official SDK clients, pointed at the local stack.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
unset AWS_SESSION_TOKEN AWS_PROFILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_SQS=$moto_url
export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=$emulator_url
export AWS_ENDPOINT_URL_LAMBDA=$relay_url

log "starting moto on $moto_url"
serve moto "$moto_port" "$moto_url/moto-api/" 60 .venv/bin/python scripts/moto_server.py -H "$HOST" -p "$moto_port"
curl -sf --max-time 10 -X POST -H 'Content-Type: application/json' \
  -d '{"lambda":{"use_docker":false}}' "$moto_url/moto-api/config" >/dev/null

log "starting the AgentCore emulator on $emulator_url (published latencies, built-in agent)"
serve emulator "$emulator_port" "$emulator_url/admin/stats" 30 \
  target/debug/agentcore-emulator --listen "$HOST:$emulator_port" --latency-scale 1.0

log "creating the pool queue"
queue_url=$("$warmpool" local setup pool --name "demo-pool-$(date +%s)")
echo "$queue_url"

log "starting cargo lambda watch on $watch_url"
function_env "$queue_url" "$RUNTIME_ARN" "$emulator_url" "$relay_url" >"$run_dir/functions.env"
# --ignore-changes: edits to the workspace during the demo must not restart the functions.
serve watch "$watch_port" tcp 120 cargo lambda watch --invoke-address "$HOST" --invoke-port "$watch_port" \
  --ignore-changes --concurrency "$CONCURRENCY" --env-file "$run_dir/functions.env"

log "starting the Lambda relay on $relay_url (asynchronous Event path)"
serve relay "$relay_port" "$relay_url/" 30 "$warmpool" local relay --listen "$HOST:$relay_port" --forward "$watch_url"

# invoke_sync FUNCTION PAYLOAD SECONDS [RELAY_URL]: a RequestResponse invoke through a relay;
# prints the answer and fails on a function error.
invoke_sync() {
  local function=$1 payload=$2 seconds=$3 via=${4:-$relay_url} headers=$run_dir/invoke-headers
  local answer
  answer=$(curl -sS --max-time "$seconds" -D "$headers" -X POST \
    -H 'X-Amz-Invocation-Type: RequestResponse' -d "$payload" \
    "$via/2015-03-31/functions/$function/invocations")
  if grep -qi '^x-amz-function-error' "$headers" || ! head -n 1 "$headers" | grep -q ' 200'; then
    echo "$function failed: $answer" >&2
    return 1
  fi
  echo "$answer"
}

log "first get-session call (compiles it under watch; up to ${FIRST_CALL_TIMEOUT}s); the pool is empty, so it answers fresh"
invoke_sync get-session '{}' "$FIRST_CALL_TIMEOUT"
echo

log "filling the pool: replenish {\"count\": $N} (the first call compiles it)"
invoke_sync replenish "{\"count\": $N}" "$FIRST_CALL_TIMEOUT"
echo

log "pool status"
"$warmpool" pool status --queue-url "$queue_url" --sample "$N"

log "comparing $N invocations without the pool and $N through it, $CONCURRENCY at a time"
"$warmpool" demo compare --invocations "$N" --concurrency "$CONCURRENCY" --runtime-arn "$RUNTIME_ARN" \
  --emulator-url "$emulator_url" --json-out "$run_dir/compare.json"

# Each claim asked replenish (an Event invoke through the relay) for a replacement: watch the
# pool refill itself, within a bound.
log "waiting for the pool to refill through get-session's asynchronous replenish triggers (up to 120s)"
"$warmpool" pool status --queue-url "$queue_url" --sample 0 --wait-depth "$N" --wait-secs 120

log "one call through the invoke wrapper (claim, invoke, report)"
"$warmpool" invoke --runtime-arn "$RUNTIME_ARN" --emulator-url "$emulator_url" \
  --payload '{"prompt":"summarise the warm pool demo"}'

# ---------------------------------------------------------------------------------------------
# Document batches: one batch end to end, on its own runtime (a second emulator forwarding to
# the reference document agent) with its own warm pool.
DOC_RUNTIME_ARN=arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/document-agent
export AWS_ENDPOINT_URL_S3=$moto_url AWS_ENDPOINT_URL_DYNAMODB=$moto_url S3_FORCE_PATH_STYLE=true

log "creating the batch resources (bucket + notification, queues + DLQ, tracking table)"
"$warmpool" local setup batches --name "demo-$(date +%s)" >"$run_dir/batches.env"
cat "$run_dir/batches.env"
set -a
. "$run_dir/batches.env"
set +a
batch_pool_url=$("$warmpool" local setup pool --name "demo-batch-pool-$(date +%s)")

agent_port=$(free_port)
emulator2_port=$(free_port)
watch2_port=$(free_port)
relay2_port=$(free_port)
agent_url=http://$HOST:$agent_port
emulator2_url=http://$HOST:$emulator2_port
watch2_url=http://$HOST:$watch2_port
relay2_url=http://$HOST:$relay2_port

log "starting the document agent on $agent_url and its AgentCore emulator on $emulator2_url"
serve agent "$agent_port" "$agent_url/ping" 30 \
  env AGENT_LISTEN="$HOST:$agent_port" AGENT_EMULATOR_HOOKS=true target/debug/document-agent
serve emulator2 "$emulator2_port" "$emulator2_url/admin/stats" 30 \
  target/debug/agentcore-emulator --listen "$HOST:$emulator2_port" --latency-scale 1.0 --agent-url "$agent_url"

log "starting invoker, stale-batch-detector and replenish under a second cargo lambda watch on $watch2_url"
{
  cat "$run_dir/batches.env"
  function_env "$batch_pool_url" "$DOC_RUNTIME_ARN" "$emulator2_url" "$relay2_url"
  cat <<ENV
BATCH_DEADLINE_SECS=120
INVOKE_TIMEOUT_SECS=60
MAX_RECEIVE_COUNT=5
S3_FORCE_PATH_STYLE=true
AWS_ENDPOINT_URL_S3=$moto_url
AWS_ENDPOINT_URL_DYNAMODB=$moto_url
ENV
} >"$run_dir/batch-functions.env"
serve watch2 "$watch2_port" tcp 120 cargo lambda watch --invoke-address "$HOST" --invoke-port "$watch2_port" \
  --ignore-changes --concurrency 4 --env-file "$run_dir/batch-functions.env"
serve relay2 "$relay2_port" "$relay2_url/" 30 \
  "$warmpool" local relay --listen "$HOST:$relay2_port" --forward "$watch2_url"

log "warming 2 sessions of the document agent into the batch pool"
invoke_sync replenish '{"count": 2}' "$FIRST_CALL_TIMEOUT" "$relay2_url"
echo

log "feeding the batch queue to the invoker, and the stale-batch detector every 10 s"
start pump "$warmpool" local pump --queue-url "$BATCH_QUEUE_URL" --function invoker --forward "$watch2_url"
start schedule "$warmpool" local schedule --function stale-batch-detector --forward "$watch2_url" --every-secs 10

log "submitting a folder of documents as one batch"
docs=$run_dir/claim-4711
mkdir -p "$docs/photos"
printf 'Dear insurer,\nOn 3 March my parked car was hit by a delivery van.\nPlease find the photos attached.\n' >"$docs/letter.txt"
printf '# Adjuster notes\n\n- damage to the rear bumper\n- no injuries\n' >"$docs/notes.md"
printf '{"policy":"P-2026-0042","holder":"A. Example"}\n' >"$docs/policy.json"
head -c 4096 /dev/urandom >"$docs/photos/rear.jpg"
submitted=$(date +%s%N)
batch_id=$("$warmpool" --quiet batch submit "$docs" --bucket "$DOCUMENTS_BUCKET")
echo "batch $batch_id submitted"

log "waiting for batch $batch_id (the first invoker call compiles it; up to ${FIRST_CALL_TIMEOUT}s)"
"$warmpool" batch status "$batch_id" --table "$TRACKING_TABLE" --wait-secs "$FIRST_CALL_TIMEOUT" \
  --emulator-url "$emulator2_url" --result | tee "$run_dir/batch-status.txt"
finished=$(date +%s%N)
grep -q '^status *SUCCEEDED' "$run_dir/batch-status.txt" || {
  echo "batch $batch_id did not succeed" >&2
  exit 1
}
echo "submit to SUCCEEDED as the client saw it: $(((finished - submitted) / 1000000)) ms (upload, notification, the pump's poll, the invoker's first start under watch, the run)"
echo "details: $run_dir (compare.json, service logs); demo took ${SECONDS}s"
