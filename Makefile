.PHONY: test lint bench soak demo bootstrap bootstrap-infra infra-check arm64-target build build-check arm64-elf-check sam deploy deploy-pool deploy-batch enable-warmup-hook

# Pinned local-stack tools (moto, cargo-lambda) in .venv; idempotent.
bootstrap:
	scripts/bootstrap.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs: formatting, lints, unit, handler and wire-level tests, the template's
# checks and the arm64 cross-build check.
test: bootstrap lint infra-check build-check
	cargo test --workspace

# Figures side by side in one run; written to target/bench/summary.json. First part: claim
# throughput against local SQS; second part: the pool policies in a discrete-event simulation
# (crates/simulation, run by tests/src/bin/simulate.rs; docs/testing.md, Simulation), under
# `simulation`.
bench: bootstrap
	cargo run -q -p warmpool-tests --bin bench
	cargo run -q -p warmpool-tests --bin simulate

# Invariants under injected faults, counted; written to target/bench/soak.json (docs/testing.md).
soak: bootstrap
	cargo build -q -p document-agent
	cargo run -q -p warmpool-tests --bin soak

# The whole local stack on 127.0.0.1, a filled pool, the pool-versus-no-pool comparison, and
# one document batch end to end; everything it starts stops at the end (`warmpool demo`;
# DEMO_N, DEMO_CONCURRENCY and DEMO_FIRST_CALL_TIMEOUT tune it).
demo: bootstrap
	cargo run -q -p cli --bin warmpool -- demo

# --- deployment (infra/*.yaml; docs/operations.md) -----------------------------------------------
# Which functions `build` builds: all four by default; deploy-pool and deploy-batch ask for theirs.
LAMBDAS ?= get-session replenish invoker stale-batch-detector
CARGO_LAMBDA := PATH="$(CURDIR)/.venv/bin:$$PATH" cargo lambda
SAM_VERSION := 1.170.0
SAM := .tools/sam/bin/sam
SAM_PYTHON := .tools/sam/bin/python

# Pinned template checkers (cfn-lint, checkov, cfn-guard) in .tools; idempotent.
bootstrap-infra:
	scripts/bootstrap-infra.sh

# cfn-lint, checkov, and the project's cfn-guard rules with their own pass/fail cases.
infra-check: bootstrap-infra
	infra/check.sh

arm64-target:
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

# Release (LTO) arm64 builds of the four functions, zipped where the template's CodeUri points.
build: bootstrap arm64-target
	@# One cargo run per function: features unify across the packages of one run, and each
	@# function links only the SDKs it calls (docs/architecture.md, Inside warmpool-core).
	@for f in $(LAMBDAS); do $(CARGO_LAMBDA) build --release --arm64 --output-format zip --bin $$f || exit 1; done
	@for f in $(LAMBDAS); do \
	  printf '%-22s bootstrap.zip %6d KiB   binary %6d KiB\n' $$f \
	    $$(( $$(stat -c %s target/lambda/$$f/bootstrap.zip) / 1024 )) \
	    $$(( $$(stat -c %s target/aarch64-unknown-linux-gnu/release/$$f) / 1024 )); \
	done

# CI's arm64 check: the release build itself (what `deploy` ships; 13 min cold on the 2-core
# dev machine, see docs/testing.md), then each function must be an aarch64 ELF. rustup fetches
# the aarch64 standard library from the Rust distribution server; on a machine that cannot reach
# it the check is skipped with a notice (`make build` itself stays strict).
build-check:
	@$(MAKE) --no-print-directory arm64-target || { \
	  echo "arm64 check SKIPPED: rustup could not install aarch64-unknown-linux-gnu (no access to the Rust distribution server?)" >&2; \
	  exit 0; }; \
	$(MAKE) --no-print-directory arm64-elf-check

arm64-elf-check: build
	@for f in $(LAMBDAS); do \
	  machine=$$(od -An -tx1 -j18 -N2 target/aarch64-unknown-linux-gnu/release/$$f | tr -d ' '); \
	  [ "$$machine" = b700 ] || { echo "$$f: not an aarch64 ELF (e_machine $$machine)" >&2; exit 1; }; \
	done
	@echo "arm64 check: $(LAMBDAS) are aarch64 ELF executables, zipped in target/lambda/"

$(SAM):
	python3 -m venv .tools/sam && .tools/sam/bin/pip install --quiet --disable-pip-version-check "aws-sam-cli==$(SAM_VERSION)"

sam: $(SAM)

# sam deploy of one template ($(1)) with its own samconfig file ($(2)); guided on first use,
# whose answers are kept in that file (git-ignored). DEPLOY_ARGS passes more options, e.g.
# DEPLOY_ARGS='--parameter-overrides PoolTarget=20'. Prerequisites: docs/operations.md.
# Every stack is tagged warmpool:pool=$(POOL), which `warmpool pools` finds it by.
define sam_deploy
	@if [ -f $(2) ]; then \
	  $(SAM) deploy --template-file $(1) --config-file "$(CURDIR)/$(2)" --tags warmpool:pool=$(POOL) $(DEPLOY_ARGS); \
	else \
	  $(SAM) deploy --guided --template-file $(1) --config-file "$(CURDIR)/$(2)" \
	    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --tags warmpool:pool=$(POOL) $(DEPLOY_ARGS); \
	fi
endef

# The account's pools share one creation quota (docs/operations.md, "Many pools in one
# account"): before a deploy, `warmpool pools check` refuses a share (POOL_SHARE: what this
# stack's CreationBudgetPerSec and BatchCreationBudgetPerSec add up to) that would take the
# account's pools past ACCOUNT_QUOTA. POOL names the stack's pool (its tag).
POOL ?= warmpool
ACCOUNT_QUOTA ?= 25
# The templates' defaults: the pool 20/s, the batch pool 2/s, the full system both.
deploy-pool: POOL_SHARE ?= 20
deploy-batch: POOL_SHARE ?= 2
deploy: POOL_SHARE ?= 22
POOLS_CHECK = cargo run -q -p cli --bin warmpool -- pools check --pool $(POOL) --share $(POOL_SHARE) --quota $(ACCOUNT_QUOTA)

# ---- NOT CLOUDFORMATION: the V2 warmup build hook ----------------------------------------------
# AWS::BedrockAgentCore::Runtime cannot set the hook yet: after each deploy that owns the
# reference agent's runtime, one UpdateAgentRuntime call enables it (scripts/enable-warmup-hook.py,
# docs/operations.md "Platform V2 and the warmup hook"). It sends nothing when the hook is already
# set, and skips a stack deployed with PlatformVersion=V1. For a runtime of your own:
#   make enable-warmup-hook AGENT_RUNTIME_ARN=arn:aws:bedrock-agentcore:...:runtime/...
WARMUP_HOOK := $(SAM_PYTHON) scripts/enable-warmup-hook.py
enable-warmup-hook: sam
	@[ -n "$(AGENT_RUNTIME_ARN)" ] || { echo "AGENT_RUNTIME_ARN=<runtime ARN> is required" >&2; exit 1; }
	$(WARMUP_HOOK) --runtime-arn "$(AGENT_RUNTIME_ARN)"

# The full system (infra/template.yaml: the batch stack with the reference runtime, and the user
# pool in front of it, as two nested stacks), then the warmup hook on its runtime.
deploy: build sam
	$(POOLS_CHECK)
	$(call sam_deploy,infra/template.yaml,infra/samconfig.toml)
	$(WARMUP_HOOK) --samconfig infra/samconfig.toml

# The pool alone (infra/pool.yaml) in front of a runtime you already run: builds get-session and
# replenish only. The runtime is yours, so its hooks are left alone unless you ask:
# `make deploy-pool WARMUP_HOOK_RUNTIME=1` also runs enable-warmup-hook on the AgentRuntimeArn
# the stack was deployed with (your container must then answer POST /warmup on port 8080).
deploy-pool: sam
	$(POOLS_CHECK)
	@$(MAKE) --no-print-directory build LAMBDAS="get-session replenish"
	$(call sam_deploy,infra/pool.yaml,infra/samconfig-pool.toml)
	@if [ "$(WARMUP_HOOK_RUNTIME)" = 1 ]; then $(WARMUP_HOOK) --samconfig infra/samconfig-pool.toml; fi

# The batch pipeline alone (infra/batch.yaml): replenish, invoker and stale-batch-detector; then
# the warmup hook when the stack created the reference runtime on V2.
deploy-batch: sam
	$(POOLS_CHECK)
	@$(MAKE) --no-print-directory build LAMBDAS="replenish invoker stale-batch-detector"
	$(call sam_deploy,infra/batch.yaml,infra/samconfig-batch.toml)
	$(WARMUP_HOOK) --samconfig infra/samconfig-batch.toml
