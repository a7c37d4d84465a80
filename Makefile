# The README's two commands are `make run` and `make test`; each sets up what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
BIN := .venv/bin
export PLOOMBER_STATS_ENABLED := false

.PHONY: help setup run test test-fast test-busy dashboards lab export format sync docs wheel extras-check serve monitoring bench bench-data bench-features bench-models bench-gpu bench-backtest bench-service bench-monitor bench-scale bench-dashboards bench-ops bench-universe bench-cross-section bench-all
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## create .venv from env/requirements.lock, register the mlfin kernel (idempotent)
	@bash env/setup.sh

run: setup ## run the whole pipeline on the embedded default data (ARGS="--symbols SPX --models xgboost")
	@$(BIN)/mlfin run $(ARGS)

# The suite on both cores: pytest-xdist workers that take any test, and a last one that runs only the tests marked `waits`
# (their time is the wall clock's: an alert's rounds, a minute to turn, a cut cable's timeout), so those minutes pass beside the tests that compute
# (tests/conftest.py); the files in a random order (its seed in the header: PYTEST_ARGS="--file-order random:SEED" runs that order
# again), a module whose tests share module fixtures kept on one worker, the slowest 30 listed. OpenMP threads (LightGBM,
# XGBoost, BLAS) sleep while they wait instead of spinning on a core the other worker needs. Measured on this 2-core machine
# (clean clone): two workers ran 2,805 to 3,438 s of tests in 1,419 to 1,739 s, the CPUs 80 to 88% busy over the whole run; with
# the lane and issue 53's tests, three ran 4,578 s of tests in 1,939 to 1,991 s, the CPUs 97 to 99% busy: the cores, not the waits, bound it.
# With each worker's mlfin commands forked from a process that imported their libraries once (tests/zygote.py), three ran 3,011 to
# 3,596 s of tests in 1,217 to 1,451 s (make test 1,380 to 1,657 s). As the suite grew, a fourth (three that take any test, the
# lane the fourth) ran it faster, the same day on the same clean clone: three workers 2,066 s of pytest (make test about 41 min),
# four 1,766 s (make test 34 min 50 s), the CPUs 90% busy on average (issue 69)
WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest tests -n $(WORKERS) --durations=30
test test-fast test-busy: export OMP_WAIT_POLICY := PASSIVE
# every test home keeps its own trial ledger (the default, the user's data folder, is shared by every home): a count never depends on another test
test test-fast test-busy bench bench-%: export MLFIN_LEDGER := home
# the inner loop: the library notebooks changed against main (committed or not; NBS="nbs/A.ipynb nbs/B.ipynb" names them) and the
# tests not marked e2e; `make test` still runs everything
test-fast: setup ## the notebooks you changed (against main, or NBS="...") and the unit-level tests, in minutes: the inner loop
	@bash env/setup-test.sh
	@nbs="$${NBS-$$( { git diff --name-only main -- 'nbs/*.ipynb'; git ls-files --others --exclude-standard -- 'nbs/*.ipynb'; } | sort -u)}"; \
	 for nb in $$nbs; do [ -f "$$nb" ] || continue; echo "nbdev_test $$nb"; $(BIN)/nbdev_test --path "$$nb" || exit 1; done
	@$(PYTEST) -m 'not e2e' --file-order random $(PYTEST_ARGS)
test: setup ## every test: library notebooks (the 15 slowest listed), then the suite on both cores, its files in a random order
	@bash env/setup-test.sh
	@set -o pipefail; $(BIN)/nbdev_test --n_workers 2 --timing | awk 'NR <= 16 || !/: [0-9]+ secs$$/'
	@$(PYTEST) --file-order random $(PYTEST_ARGS)

dashboards: setup ## serve dashboards/ with Voila on http://127.0.0.1:8866 to people logged in (ARGS="--no-login": you alone)
	@bash env/setup-chromium.sh
	@$(BIN)/mlfin dashboards $(ARGS)

serve: setup ## the service on http://127.0.0.1:8000 (ARGS="--workers 2 --store postgresql://..."); keys: .venv/bin/mlfin keys create --role analyst
	@$(BIN)/mlfin serve $(ARGS)

monitoring: setup ## the service, Prometheus (:9090, env/monitoring/alerts.yml and figures.yml) and Alertmanager (:9093) on loopback (ARGS="--webhook URL --smtp host:port --email-to ADDR")
	@bash env/setup-test.sh
	@$(BIN)/mlfin monitoring $(ARGS)

# env/lab.sh holds the command line (tests/test_lab.py starts Lab with it too); PORT is that port or an error
lab: setup ## JupyterLab on 127.0.0.1 (kernel: mlfin), every extension on; task notebooks open with their real upstream and parameters (PORT=8890 ARGS="--ServerApp.token=...")
	@PORT=$(PORT) bash env/lab.sh $(ARGS)

# the generators, each written once, run by the targets below: the formatter (notebooks), nbdev's export (mlfin/), the
# alert rules made from mlfin.monitor.figures (env/monitoring/figures.yml), nbdev's clean (execution counts, metadata)
# and settings.ini's requirements (from env/requirements.in)
FORMAT := $(BIN)/python tools/format.py
EXPORT := $(BIN)/nbdev_export
RULES := $(BIN)/python -c "from mlfin.monitor.figures import write_rules; write_rules()"
CLEAN := $(BIN)/nbdev_clean && $(BIN)/nbdev_clean --fname dashboards
EXTRAS := $(BIN)/python tools/extras.py

export: setup ## regenerate mlfin/ from nbs/ (and env/monitoring/figures.yml from mlfin.monitor.figures) and strip notebook outputs
	@$(EXPORT) && $(RULES) && $(CLEAN)

# only the lines over pyproject.toml's [tool.ruff] line-length, in the notebooks (nbs/ and its folders, dashboards/); mlfin/
# follows by the export; what no step can shorten is listed (tools/format.py says how each kind is handled). Idempotent
format: setup ## bring notebook code (and so mlfin/) within the line length: ruff on the long statements only, long comments and strings wrapped
	@$(FORMAT) && $(EXPORT)

# every generator, each after what it reads: the rules and the requirements import the exported mlfin/. No export after
# the clean: nbdev_clean changes counts, metadata and output ids, never a cell's source, which is all the export reads.
# Idempotent: a second sync changes nothing
sync: setup ## every generator in order: format, export, alert rules, clean, settings.ini's requirements
	@$(FORMAT) && $(EXPORT) && $(RULES) && $(CLEAN) && $(EXTRAS)

# nbdev's processors, then HTML without Quarto (not installable offline: tools/site.py says why); tests/test_docs.py builds it too
docs: setup ## the notebooks as a site in _docs/ (open _docs/index.html): every notebook a page, every link inside it checked
	@$(BIN)/python tools/site.py

# from a copy of the package's files: setuptools writes build/ and *.egg-info beside its sources, and a build/ left over from an
# earlier build puts modules since removed into the wheel. LICENSE and NOTICE go into its .dist-info/licenses (setup.py's
# license_files). DIST=folder puts it elsewhere (tests/test_wheel.py builds it so)
DIST ?= dist
wheel: setup ## the wheel a service installs, dist/mlfin-VERSION-py3-none-any.whl (README: Environment); DIST=folder builds it there
	@src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && tar -c --exclude=__pycache__ mlfin setup.py settings.ini pyproject.toml LICENSE NOTICE | tar -x -C "$$src" && \
	 $(BIN)/uv build -q --wheel --out-dir "$(DIST)" "$$src" && ls "$(DIST)"/mlfin-*.whl

# each extra alone on the core, in a fresh venv outside the checkout: its areas' modules import, its smallest real action runs, another
# area's modules and first steps end in MissingExtra's one line (tools/check_extras.py; 15 installs, ~9 min: too long for make test, so
# run by hand and before a release). ARGS="service tuning" checks only those; ARGS=--unlocked the newest versions settings.ini admits
extras-check: setup ## the wheel with each extra alone, fresh venvs outside the checkout: its areas import and act, others refuse in one line
	@$(BIN)/python tools/check_extras.py $(ARGS)

test-busy: setup ## make test with two busy CPU hogs beside it for the whole run (a laptop compiling something): it must pass all the same
	@bash tests/busy.sh 2

bench-gpu: setup ## on a GPU host: the Keras LSTM on the GPU beside the CPU (device chosen, held-out AUC, speed)
	@$(BIN)/python tests/bench/bench_gpu.py

bench: setup ## time the pipeline per task: own work against overhead (kernel start, imports, JIT)
	@$(BIN)/python tests/bench/bench_pipeline.py

bench-data: setup ## data layer beside plain pandas: 10M-bar ingest, a 50-file minute universe in one command beside one command per file, range query on a 100 x 1M store (synthetic; ARGS="--part universe")
	@$(BIN)/python tests/bench/bench_data.py $(ARGS)

bench-features: setup ## a 12-indicator spec over 50M bars: ours beside a bare TA-Lib loop and pandas-ta-classic; store hit vs build (synthetic)
	@$(BIN)/python tests/bench/bench_features.py

bench-models: setup ## models beside bare fits, Optuna with and without pruning, LSTM beside plain Keras, serving latency (synthetic)
	@$(BIN)/python tests/bench/bench_models.py

bench-backtest: setup ## a 1,000-combination threshold x cost sweep over 20 symbols x 100k bars: ours beside backtesting.py and naive vectorbt (synthetic)
	@$(BIN)/python tests/bench/bench_backtest.py

bench-service: setup ## /predict asked 1,000 rps for 60 s (hey) beside a bare FastAPI floor; in-process predict; one-bar ingest into 10k vs 10M bars; ingest throughput; the same on two workers with Redis limits (ARGS="--profile": py-spy)
	@bash env/setup-test.sh
	@$(BIN)/python tests/bench/bench_service.py $(ARGS)

bench-monitor: setup ## what the monitor catches on the embedded SPX, AAPL, EURUSD (planted volatility regimes, false alarms; ARGS="--part power"), then its drift statistics over 10 models x 24 inputs x 1M minute bars beside plain scipy (synthetic)
	@$(BIN)/python tests/bench/bench_monitor.py $(ARGS)

bench-scale: setup ## past one machine, synthetic: parallel efficiency of 50M-bar features and a 20-symbol x 5-model training on 2 Dask workers against two plain processes (target >= 0.95), memory per worker, scheduler overhead per unit, a 500-symbol run projected on 16 and 64 workers
	@$(BIN)/python tests/bench/bench_scale.py

bench-dashboards: setup ## one visitor opening every page: processes and memory (PSS) under the pages' server before and after (target); every page in Chromium after login: time until its content shows, warm (kernels kept ready) and cold (a kernel per visit) (ARGS="--part footprint")
	@bash env/setup-test.sh
	@$(BIN)/python tests/bench/bench_dashboards.py $(ARGS)

bench-ops: setup ## backup of a 10M-bar store + registry, incremental after a day of bars for 10 symbols, restore: ours beside tar + sqlite3 .backup (synthetic)
	@bash env/setup-test.sh
	@$(BIN)/python tests/bench/bench_ops.py

# issue 67: mlfin on a universe of minute bars beside the script a researcher would write; ARGS="--scale quick" is make bench-all's part (about 8 min)
bench-universe: setup ## a synthetic minute universe (GARCH, NYSE sessions): mlfin's run beside a plain pandas + TA-Lib + LightGBM script on 5 symbols of 5m (CPU, peak memory; targets <= 2x), adding 2 symbols to 6 (<= half the first run), CPU per task and a py-spy profile; 50 symbols x 1 year ingest to report at 1m (<= 20 min) and 5m (<= 5 min), up to an hour (ARGS="--scale quick")
	@$(BIN)/python tests/bench/bench_universe.py $(ARGS)

bench-cross-section: setup ## a universe's cross-sectional research at 500 stocks x 10 years of daily bars (synthetic, an effect planted): Alpha158's features, pooled ridge and LightGBM by date, naive factors, Qlib's table with every configuration counted; time per step and peak memory
	@$(BIN)/python tests/bench/bench_cross_section.py

bench-all: setup ## every benchmark above at its stated quick scale, one after another (about 22 min): one table of targets, figures and met/MISSED/not measured, kept as reports/bench-quick.json (ARGS="--only bench-data,bench-ops")
	@bash env/setup-test.sh
	@$(BIN)/python tests/bench/run_all.py $(ARGS)
