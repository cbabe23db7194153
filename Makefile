# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test bench fashion-mnist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's dataset-fashion-mnist: the embedded offline data set.
fashion-mnist:
	@test -d $(FMNIST) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q dataset-fashion-mnist || \
	     (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; \
	  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
	    sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; \
	  else \
	    echo "Fashion-MNIST not found in $(FMNIST): run 'sudo apt-get install dataset-fashion-mnist' or pass --data_dir to experiments/femnist.py"; exit 2; \
	  fi; }

demo: $(STAMP) fashion-mnist
	$(VENV)/bin/python experiments/femnist.py --out_dir=$(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/round_throughput.py

clean:
	rm -rf $(VENV) runs
