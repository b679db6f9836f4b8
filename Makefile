.PHONY: test lint bench demo bootstrap build-dev

# Pinned local-stack tools (moto, cargo-lambda) in .venv; idempotent.
bootstrap:
	scripts/bootstrap.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs: formatting, lints, unit, handler and wire-level tests.
test: bootstrap lint
	cargo test --workspace

# Figures side by side in one run; written to target/bench/summary.json.
bench: bootstrap
	cargo run -q -p warmpool-tests --bin bench

# Debug builds of every binary the local stack runs.
build-dev:
	cargo build --bin get-session
	cargo build --bin replenish
	cargo build -p agentcore-emulator -p cli

# The whole local stack on 127.0.0.1, a filled pool, and the pool-versus-no-pool comparison.
demo: bootstrap
	scripts/demo.sh
