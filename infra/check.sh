#!/usr/bin/env bash
# The infrastructure checks `make infra-check` (and so CI) runs on infra/template.yaml:
# cfn-lint, checkov, and the project's own cfn-guard rules (infra/rules), which must pass on
# the template and must pass or fail as expected on their own cases (infra/rules/tests).
# Tools: scripts/bootstrap-infra.sh. Nothing here uses the network.
set -euo pipefail
cd "$(dirname "$0")/.."
template=infra/template.yaml
# Rules that have nothing to check in this template; any other SKIP means a rule silently
# stopped matching what it guards.
expected_skips="dead_letters.guard/mapped_queues_have_a_dlq"

echo "==> cfn-lint (SAM transform included; regions where AgentCore Runtime is available)"
.tools/venv/bin/cfn-lint --regions us-east-1 us-west-2 eu-central-1 ap-southeast-2 -- "$template"

echo "==> checkov (each skip carries its reason in the resource's Metadata)"
.tools/venv/bin/checkov --quiet --compact --skip-download --framework cloudformation -f "$template"

echo "==> cfn-guard: infra/rules against the template"
report=$(.tools/bin/cfn-guard validate --rules infra/rules --data "$template" --show-summary all) || {
  echo "$report"
  exit 1
}
echo "$report" | grep -E '^[a-z_]+\.guard/' | sed 's/^/    /'
skips=$(echo "$report" | awk '$2 == "SKIP" { print $1 }' | sort | tr '\n' ' ' | sed 's/ $//')
if [ "$skips" != "$expected_skips" ]; then
  echo "cfn-guard: skipped rules are [$skips], expected [$expected_skips]" >&2
  exit 1
fi

echo "==> cfn-guard: each rule against its passing and failing cases (infra/rules/tests)"
for rules in infra/rules/*.guard; do
  name=$(basename "$rules" .guard)
  [ -f "infra/rules/tests/${name}_tests.yaml" ] || { echo "no tests for $rules" >&2; exit 1; }
done
tests=$(.tools/bin/cfn-guard test --dir infra/rules) || {
  echo "$tests"
  exit 1
}
# Every rule must be shown failing at least once, or it could be one that never fails.
for rule in $(sed -nE 's/^rule ([a-z_0-9]+).*/\1/p' infra/rules/*.guard); do
  grep -q "^    ${rule}: Expected = FAIL" <<<"$tests" || { echo "no failing case for rule $rule" >&2; exit 1; }
done
echo "    $(grep -c '^Test Case' <<<"$tests") cases, every rule seen passing and failing as expected"
