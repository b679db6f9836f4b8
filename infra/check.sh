#!/usr/bin/env bash
# The infrastructure checks `make infra-check` (and so CI) runs on every template of infra/
# (pool.yaml, batch.yaml and template.yaml, which nests the two): cfn-lint, checkov, and the
# project's own cfn-guard rules (infra/rules), which must pass on each template and must pass
# or fail as expected on their own cases (infra/rules/tests).
# Tools: scripts/bootstrap-infra.sh. Nothing here uses the network.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each template and the cfn-guard rules that have nothing to check in it; any other SKIP means
# a rule silently stopped matching what it guards. pool.yaml: the pool alone (no batch queue,
# runtime or queue that grants anything; its lease table and audit bucket are conditional, and
# checked here as if created); batch.yaml: the batch pipeline (no audit bucket, no conditional
# grant); template.yaml: the full system, only the two nested stacks (every rule on resources skips).
declare -A expected_skips=(
  [infra/pool.yaml]="dead_letters.guard/mapped_queues_have_a_dlq dead_letters.guard/sam_consumed_queues_have_a_dlq dead_letters.guard/sqs_events_name_a_queue_of_this_template iam.guard/any_resource_only_where_the_service_cannot_scope iam.guard/resource_policies_name_their_actions nested.guard/nested_applications_are_local_templates nested.guard/nested_stacks_are_local_templates pool_access.guard/queue_policies_allow_no_one_at_large runtime.guard/runtimes_pin_their_platform_version"
  [infra/batch.yaml]="audit_archive.guard/audit_buckets_lock_objects_in_compliance_mode dead_letters.guard/mapped_queues_have_a_dlq iam.guard/conditional_role_policies_name_their_actions nested.guard/nested_applications_are_local_templates nested.guard/nested_stacks_are_local_templates"
  [infra/template.yaml]="audit_archive.guard/audit_buckets_lock_objects_in_compliance_mode dead_letters.guard/mapped_queues_have_a_dlq dead_letters.guard/sam_consumed_queues_have_a_dlq dead_letters.guard/sqs_events_name_a_queue_of_this_template encryption.guard/buckets_are_encrypted encryption.guard/queues_are_encrypted encryption.guard/tables_are_encrypted functions.guard/functions_log_json functions.guard/functions_run_on_arm64 iam.guard/any_resource_only_where_the_service_cannot_scope iam.guard/conditional_role_policies_name_their_actions iam.guard/resource_policies_name_their_actions iam.guard/role_policies_name_their_actions nested.guard/nested_stacks_are_local_templates pool_access.guard/pool_queues_admit_only_the_project_roles pool_access.guard/queue_policies_allow_no_one_at_large pool_queue.guard/fifo_queues_retain_messages_for_a_session_lifetime pool_queue.guard/fifo_queues_use_high_throughput_mode runtime.guard/runtimes_pin_their_platform_version"
)
templates=(infra/pool.yaml infra/batch.yaml infra/template.yaml)
[ "$(ls infra/*.yaml | sort)" = "$(printf '%s\n' "${templates[@]}" | sort)" ] || {
  echo "infra/*.yaml is not [${templates[*]}]: add a new template here, with its expected skips" >&2
  exit 1
}

for template in "${templates[@]}"; do
  echo "==> $template: cfn-lint (SAM transform included; regions where AgentCore Runtime is available)"
  .tools/venv/bin/cfn-lint --regions us-east-1 us-west-2 eu-central-1 ap-southeast-2 -- "$template"

  echo "==> $template: checkov (each skip carries its reason in the resource's Metadata)"
  .tools/venv/bin/checkov --quiet --compact --skip-download --framework cloudformation -f "$template"

  echo "==> $template: cfn-guard, infra/rules against the template"
  report=$(.tools/bin/cfn-guard validate --rules infra/rules --data "$template" --show-summary all) || {
    echo "$report"
    exit 1
  }
  echo "$report" | grep -E '^[a-z_]+\.guard/' | sed 's/^/    /'
  skips=$(echo "$report" | awk '$2 == "SKIP" { print $1 }' | sort | tr '\n' ' ' | sed 's/ $//')
  if [ "$skips" != "${expected_skips[$template]}" ]; then
    echo "cfn-guard: $template skipped rules [$skips], expected [${expected_skips[$template]}]" >&2
    exit 1
  fi
done

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
