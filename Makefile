# Two entry points (see README): `make run` sets up and runs the default benchmark sweep,
# `make test` sets up and runs the tests. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch; on a CUDA machine use e.g. `make TORCH_SPEC="torch>=2.11" run`.
TORCH_SPEC ?= torch==2.13.0
CORES ?= 1
GPUS ?= 1

.PHONY: setup run test clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so no other requirement drags in a CUDA build.
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/snakemake

run: setup
	$(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS)

test: setup
	TORCHAO_FORCE_SKIP_LOADING_SO_FILES=1 $(BIN)/python -m pytest -q -raP  # P: print what passing tests print (the SLURM test lists its sbatch jobs)

clean:
	rm -rf results logs .snakemake
