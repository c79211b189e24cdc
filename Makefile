.PHONY: test demo crds lint unit check bench

# Installs what the suites need (apt, venv, pip, the Go-built control plane) and runs them all.
test:
	hack/test.sh

# Prepares the real MiniLM model into ./out/all-minilm-l6-v2 (an OCI layout) and prints it.
demo:
	hack/demo.sh

# Regenerates crds/ from the pydantic API models.
crds:
	.venv/bin/python -m api.crdgen

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports

# The fast loop on a prepared checkout (after one `make test`): no sockets, no root, no network.
unit:
	.venv/bin/python -m pytest tests/unit -q

check: lint unit

# Benchmarks (figures in docs/performance.md); run `make test` once first (venv, registry,
# the control plane). bench_prepare.py without --quick needs ~17 GiB of free disk.
bench:
	.venv/bin/python bench/bench_gguf_header.py
	.venv/bin/python bench/bench_inspect.py
	.venv/bin/python bench/bench_hostile_headers.py
	.venv/bin/python bench/bench_push.py
	.venv/bin/python bench/bench_prepare.py --quick
	.venv/bin/python bench/bench_controller.py
	.venv/bin/python bench/bench_delivery.py
