.PHONY: demo build-dev

# Debug builds of every binary the local stack runs.
build-dev:
	cargo build --bin get-session
	cargo build --bin replenish
	cargo build -p agentcore-emulator -p cli

# The whole local stack on 127.0.0.1, a filled pool, and the pool-versus-no-pool comparison.
demo:
	scripts/bootstrap.sh && scripts/demo.sh
