# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_CUSTOMERS ?= 10000
DEMO_SEED ?= 7
PORT ?= 8501
PYTEST_ARGS ?= --durations=25

.PHONY: run test test-spark venv dev lint bench bench-spark clean-data

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cxdash needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

## Start the app on http://localhost:8501 (builds the demo company and trains its first churn
## model on first run, 17-30 s at 10,000 customers; a failed training still starts the app).
run: venv
	$(BIN)/python -m cxdash demo --if-empty --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED)
	$(BIN)/python -m cxdash train --if-missing || echo "no churn model yet: At-risk customers and the customer card say how to train one"
	$(BIN)/python -m cxdash users bootstrap --demo-users
	$(BIN)/python -m streamlit run app.py --server.port $(PORT)

## Run the whole test suite in two worker processes: starts and stops a throwaway PostgreSQL when one
## is installed, and a throwaway Spark SQL server when Java is (in the background: the Spark tests wait
## for it, on one worker, while the other worker runs the rest).
test: dev
	CXDASH_SPARK_BACKGROUND=1 bash scripts/with_postgres.sh bash scripts/with_spark.sh \
		$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

## The Spark SQL parity suite (issue 18): starts a throwaway Spark Thrift server (local-cluster mode;
## Java 17 and a 490 MB pyspark download into ~/.cache/cxdash on first use) and runs the tests marked
## spark against it; skips them when Java or pyspark cannot be had.
test-spark: dev
	bash scripts/with_spark.sh $(BIN)/python -m pytest -m spark $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check cxdash pages app.py tests bench
	$(BIN)/ruff format --check cxdash pages app.py tests bench

clean-data:
	rm -rf data/demo data/cxdash.duckdb data/cxdash.duckdb.wal

## Speed and memory benchmark (not part of `make test`): 200,000 customers by default (issue 17); BENCH_SIZES=200000,1000000 for the full run.
BENCH_SIZES ?= 200000
bench: venv
	$(BIN)/python -m bench.run --sizes $(BENCH_SIZES)

## The same with a Spark column (issue 18): under a throwaway Spark Thrift server, the journey graph of
## the 10M-event log and a live Shared KPIs view also run on Spark, timed against DuckDB in the same
## run (plus the copy into Spark). BENCH_SPARK_ARGS=--spark-only keeps to those measures only.
BENCH_SPARK_ARGS ?=
bench-spark: venv
	bash scripts/with_spark.sh $(BIN)/python -m bench.run --sizes $(BENCH_SIZES) $(BENCH_SPARK_ARGS)
