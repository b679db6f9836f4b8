#!/usr/bin/env bash
# Installs the pinned infrastructure checkers into .tools (git-ignored; idempotent): cfn-lint
# and checkov from PyPI in .tools/venv, and cfn-guard from crates.io in .tools/bin. They live
# apart from .venv so that checkov's pins never move moto's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
CFN_GUARD_VERSION=3.2.1
stamp=".tools/.installed-cfn-lint-${CFN_LINT_VERSION}-checkov-${CHECKOV_VERSION}"
if [ ! -f "$stamp" ]; then
  rm -rf .tools/venv
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check \
    "cfn-lint==${CFN_LINT_VERSION}" "checkov==${CHECKOV_VERSION}"
  touch "$stamp"
fi
# A build of about 3.5 minutes on two cores, once per clean checkout.
if [ "$(.tools/bin/cfn-guard --version 2>/dev/null)" != "cfn-guard ${CFN_GUARD_VERSION}" ]; then
  cargo install --quiet --locked --root .tools cfn-guard --version "${CFN_GUARD_VERSION}"
fi
