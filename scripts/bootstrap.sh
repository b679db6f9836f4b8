#!/usr/bin/env bash
# Installs the pinned local-stack tools into .venv (idempotent): moto's server for SQS,
# DynamoDB, S3 and Lambda, cargo-lambda (which brings zig) for Lambda builds and `watch`, and
# AWS's bedrock-agentcore SDK for the reference agent the emulator runs per session
# (tests/agents/warmup_agent.py).
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION=5.2.5
CARGO_LAMBDA_VERSION=1.9.2
BEDROCK_AGENTCORE_VERSION=1.25.0
stamp=".venv/.installed-moto-${MOTO_VERSION}-cargo-lambda-${CARGO_LAMBDA_VERSION}-bedrock-agentcore-${BEDROCK_AGENTCORE_VERSION}"
[ -f "$stamp" ] && exit 0
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  "moto[server]==${MOTO_VERSION}" "cargo-lambda==${CARGO_LAMBDA_VERSION}" \
  "bedrock-agentcore==${BEDROCK_AGENTCORE_VERSION}"
touch "$stamp"
