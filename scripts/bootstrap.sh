#!/usr/bin/env bash
# Installs the pinned local-stack tools into .venv (idempotent): moto's server for SQS,
# DynamoDB, S3 and Lambda, and cargo-lambda (which brings zig) for Lambda builds and `watch`.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTO_VERSION=5.2.5
CARGO_LAMBDA_VERSION=1.9.2
stamp=".venv/.installed-moto-${MOTO_VERSION}-cargo-lambda-${CARGO_LAMBDA_VERSION}"
[ -f "$stamp" ] && exit 0
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  "moto[server]==${MOTO_VERSION}" "cargo-lambda==${CARGO_LAMBDA_VERSION}"
touch "$stamp"
