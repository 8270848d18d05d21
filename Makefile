# infermesh: the two commands a user needs are `make run` and `make test`.
# Everything else is a building block of those two.
SHELL := /bin/bash
PRESET ?= release
BUILD := build/$(PRESET)
JOBS ?= $(shell nproc)
BIN := $(BUILD)/apps/infermesh/infermesh

.PHONY: all deps deps-run configure build build-run test run conformance bench bench-runtime bench-worker bench-gateway bench-jobs bench-ring-sim format format-check sanitize-build clean

all: build

deps:
	@scripts/install-deps.sh

# What `make run` needs, and no more (no test tools: PyTorch, ONNX test data, Slurm,
# browsers, the npm reference tools).
deps-run:
	@scripts/install-deps.sh --run

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build --preset $(PRESET) -j $(JOBS)

# Every test: format check; unit, parity, conformance (the passing set) and
# integration tests on the release build; the unit tests again under clang's
# ASan+UBSan; and each libFuzzer target briefly.
test: build format-check sanitize-build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) --timeout 900
	@scripts/run-sanitized-tests.sh
	@scripts/run-fuzzers.sh 20

# The release preset's binary only: the tests and benchmarks are `make test`'s.
build-run: deps-run
	@cmake --preset $(PRESET) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS) --target infermesh

# The whole mesh on this machine (`infermesh up`): docs/operations.md.
run: build-run
	@scripts/run.sh $(BIN)

conformance: build
	@$(BIN) conformance --threads 2 --known tests/conformance/known_issues.txt --json bench/results/conformance.json

RUNTIME_BENCH := bench/runtime_bench.py --runner $(BUILD)/bench/runtime_runner \
	--fixtures $(BUILD)/fixtures --work $(BUILD)/bench-runtime
WORKER_BENCH := bench/worker_bench.py $(BIN)
GATEWAY_BENCH := bench/gateway_bench.py $(BIN)
JOBS_BENCH := bench/jobs_bench.py $(BIN)

# Every benchmark, one after the other in one recipe (each wants the cores to itself,
# so even `make -j` must not run them side by side).
bench: build
	@$(RUNTIME_BENCH)
	@$(WORKER_BENCH)
	@$(GATEWAY_BENCH)
	@$(JOBS_BENCH)

# Our runtime against ONNX Runtime on the same fixtures, inputs and thread counts
# (issue 4): about 7 minutes; prints a table and writes bench/results/runtime.json.
# Pass options through ARGS, e.g. make bench-runtime ARGS="--quick --cases b_latency".
bench-runtime: build
	@$(RUNTIME_BENCH) $(ARGS)

# The worker's throughput, cache-hit rate and half-load latency (issue 3): about
# 2 minutes; prints a table and writes bench/results/worker.json.
bench-worker: build
	@$(WORKER_BENCH)

# The gateway against HAProxy in front of the same three workers (issue 9): about 3
# minutes; prints a table and writes bench/results/gateway.json.
bench-gateway: build
	@$(GATEWAY_BENCH)

# The job service (issue 10): submission latency through HTTP and the spool, an embed
# job's throughput against the mesh's, memory over a large input; about 6 minutes; prints
# a table and writes bench/results/jobs.json. ARGS="--lines 10000000" for the full size.
bench-jobs: build
	@$(JOBS_BENCH) $(ARGS)

# The gateway's ring for 3 to 1,000 workers, simulated (issue 9 (e); bench-gateway runs it
# too): about 25 s; prints a table and writes bench/results/ring_sim.json.
bench-ring-sim: build
	@$(BUILD)/bench/ring_sim --json bench/results/ring_sim.json

format:
	@git ls-files '*.cc' '*.h' '*.cpp' | xargs clang-format -i

format-check:
	@scripts/check-format.sh

# The `fuzz` preset (clang, ASan+UBSan, no recovery) builds the libFuzzer targets
# and the unit tests, which share its sanitized libraries.
SANITIZED_TARGETS := fuzzers unit_core unit_runtime unit_http unit_front unit_worker unit_gateway unit_jobs unit_cli
sanitize-build: deps
	@cmake --preset fuzz >/dev/null && cmake --build --preset fuzz -j $(JOBS) --target $(SANITIZED_TARGETS)

clean:
	@rm -rf build
