# One-word entry points for the things CI runs. `make test` is the README's second command minus the
# system packages (run that command once on a fresh machine), `make lint` the lints of .ci/run.
.PHONY: test lint fmt bench ci

test:
	pip install -e '.[test]'
	cargo test
	pytest

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings
	ruff check
	ruff format --check

fmt:
	cargo fmt
	ruff format
	ruff check --fix

bench:
	maturin develop --release
	for bench in benchmarks/bench_*.py; do echo "+ $$bench"; python "$$bench" || exit 1; done

ci:
	CI=true bash .ci/run
