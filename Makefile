# Quick start: `make demo` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q -n 2 --dist worksteal

.PHONY: demo test lint test-x32 test-x64 bench docs clean

# uv installs in a few seconds what pip takes half a minute for; pip if uv is unavailable.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	($(PY) -m pip install -q uv && $(PY) -m uv pip install -q --python $(PY) -e ".[test,bench,docs]") \
		|| $(PY) -m pip install -q -e ".[test,bench,docs]"
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py
	$(PY) -m qnjax bench --quick --out bench-results/quick

test: lint test-x32 test-x64

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks examples

# The xdist workers share compiled programs (tests/conftest.py); clean clones start empty.
# One OpenBLAS thread per worker: two workers on two cores stall multithreaded small solves.
# Bytecode caches are written even where PYTHONDONTWRITEBYTECODE is set: the tests start
# a dozen Python processes, and each would compile jax's sources again (3-6 s apiece).
XLA_CACHE := QNJAX_TEST_COMPILATION_CACHE=$(CURDIR)/.pytest_cache/xla OPENBLAS_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=

# XLA:CPU has two code generators for fused kernels: a direct call of minimize compiles
# with the classic one (qnjax/_compile.py), minimize inside a user's jax.jit with XLA's
# default. Both runs compile every program with the classic one (the Optax face's programs
# compile in 0.5-0.6x the time), but for the tests closest to rounding, which the x64-off
# run runs in a subprocess with the default emitters for every program (tests/conftest.py).
#
# XLA:CPU also splits each program's machine code into parts it compiles on several
# threads: the two workers already keep both cores busy, and one part costs less CPU
# (tests/test_minimize.py, test_lbfgsb.py, test_trace.py, 2 workers: 128-138 s -> 112-118 s
# wall, alternating). The kernels are the same code: minimize on Rosenbrock, one, vmapped
# and bounded, float32 and float64, gives the same results bit for bit.
CLASSIC := --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1

# Both runs are debug builds: LLVM does not optimise the programs' machine code (their
# HLO is optimised as ever), which compiles them in about 0.6x the time and runs the
# suite's small problems no slower. Such code rounds differently from users' (no fused
# multiply-adds), so the tests about the optimised build's rounding run in a subprocess
# compiled as users' programs are (tests/conftest.py: in_the_optimised_build).
DEBUG_BUILD := --xla_backend_optimization_level=0

test-x32: $(VENV)/.installed
	$(XLA_CACHE) XLA_FLAGS="$$XLA_FLAGS $(CLASSIC) $(DEBUG_BUILD)" JAX_ENABLE_X64=0 $(PY) -m pytest $(PYTEST_ARGS)

test-x64: $(VENV)/.installed
	$(XLA_CACHE) XLA_FLAGS="$$XLA_FLAGS $(CLASSIC) $(DEBUG_BUILD)" JAX_ENABLE_X64=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m qnjax bench --out bench-results/full
	$(PY) -m qnjax bench --bounded --out bench-results/bounded
	$(PY) benchmarks/inplace.py
	$(PY) benchmarks/scale.py --out bench-results/full
	$(PY) benchmarks/expensive.py --out bench-results/full
	$(PY) benchmarks/xla_options.py
	$(PY) benchmarks/floor.py --sizes 1e6,1e7 --peers all --out bench-results/full
	$(PY) benchmarks/observe.py
	$(PY) benchmarks/bounded.py --out bench-results/full
	$(PY) benchmarks/implicit.py --out bench-results/full
	$(PY) benchmarks/box_fits.py --out bench-results/full

docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) bench-results .pytest_cache site
