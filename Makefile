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

# The fast loop on a prepared checkout (after one `make test`): no sockets, no root, no network
# (tests/unit/conftest.py fails a test that opens one). Two processes, one test file each at a
# time; a tenth of the property tests' examples (tests/unit/fuzzing.py; `make test` draws all).
unit:
	AI_MODELS_FUZZ=quick .venv/bin/python -m pytest tests/unit -q -n 2 --dist loadfile

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

# The whole product on this machine, no cluster needed (docs/playground.md; needs root). Real
# Hugging Face and Ollama by default; `make playground PLAYGROUND_ARGS=--offline` for the local
# emulators (add `--throttle 5` to watch progress move).
.PHONY: playground playground-down
PLAYGROUND_ARGS ?=
playground:
	hack/playground.sh up $(PLAYGROUND_ARGS)

playground-down:
	hack/playground.sh down

# Side by side with the Go peers (oras CLI, modctl) on the same files and registry, min of 3
# (docs/performance.md); after one `make test`, which builds the peers. BENCH_PEERS_ARGS=--quick
# leaves out the 4 GiB model.
.PHONY: bench-peers
BENCH_PEERS_ARGS ?=
bench-peers:
	.venv/bin/python bench/bench_peers.py $(BENCH_PEERS_ARGS)
