# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs, makes a phantom CT, contours it, writes the outputs
#   make test   creates .venv, installs (with the test tools), runs the whole test suite
#   make station  creates .venv-station (trame-slicer), opens the browser station on a demo phantom
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# pip says only what goes wrong; each step says what it installs
PIP = $(1)/bin/python -m pip --quiet --quiet --disable-pip-version-check
STAMP := $(VENV)/.dkoar-installed
# torch 2.13.0 from PyPI (a CUDA build on Linux x86-64), or from another index, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: demo test validators bench lock clean station station-env

# Exact versions, installed without dependency resolution (requirements/dev-lock.txt says why);
# torch first, and the package itself last, also --no-deps: nothing is installed that is not pinned.
$(STAMP): pyproject.toml requirements/dev-lock.txt Makefile
	@echo "setting up $(VENV): torch 2.13.0, the packages pinned in requirements/dev-lock.txt, dkoar"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(call PIP,$(VENV)) install --no-deps torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(call PIP,$(VENV)) install --no-deps -r requirements/dev-lock.txt
	@$(call PIP,$(VENV)) install --no-deps -e .
	@touch $(STAMP)
	@echo "$(VENV) is ready: $$($(VENV)/bin/dkoar --version)"

demo: $(STAMP)
	$(VENV)/bin/dkoar demo --out demo_output

# Real tools that check what we write: dciodvfy/dcentvfy (Debian's dicom3tools) validate the DICOM,
# plastimatch (Debian) reads it back, chromium renders pages; dicompyler-core reads it back in its
# own venv (it needs pydicom < 3). The DICOM node's tests talk to real peers: dcmtk (storescu,
# storescp, echoscu) and Orthanc, each started by the tests on loopback (never the package's service).
DEBIAN_TOOLS := dicom3tools plastimatch chromium dcmtk orthanc
validators:
	@command -v dciodvfy >/dev/null && command -v plastimatch >/dev/null && command -v chromium >/dev/null \
	  && command -v storescu >/dev/null && command -v Orthanc >/dev/null || { \
	  echo "installing Debian's $(DEBIAN_TOOLS) (apt-get; its output goes to .apt.log)"; \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEBIAN_TOOLS); } > .apt.log 2>&1 \
	  || { tail -20 .apt.log; echo "apt-get failed: install $(DEBIAN_TOOLS) as root"; exit 1; }; }

.venv-dicompyler/.installed: requirements/dicompyler-lock.txt
	@echo "setting up .venv-dicompyler: dicompyler-core 0.5.6 to read our RTSTRUCTs back"
	@test -x .venv-dicompyler/bin/python || $(PYTHON) -m venv .venv-dicompyler
	@$(call PIP,.venv-dicompyler) install --no-deps -r requirements/dicompyler-lock.txt
	@touch $@

# The browser station's own environment: trame-slicer needs slicer-core 5.11 (requirements/station-lock.txt
# says why), so it cannot share .venv; installed the same way, pinned and --no-deps.
STATION_VENV := .venv-station
STATION_STAMP := $(STATION_VENV)/.dkoar-installed
$(STATION_STAMP): pyproject.toml requirements/station-lock.txt Makefile
	@echo "setting up $(STATION_VENV): torch 2.13.0, trame-slicer 2.0.0 and the packages pinned in requirements/station-lock.txt, dkoar"
	@test -x $(STATION_VENV)/bin/python || $(PYTHON) -m venv $(STATION_VENV)
	@$(call PIP,$(STATION_VENV)) install --no-deps torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(call PIP,$(STATION_VENV)) install --no-deps -r requirements/station-lock.txt
	@$(call PIP,$(STATION_VENV)) install --no-deps -e .
	@touch $@
	@echo "$(STATION_VENV) is ready: $$($(STATION_VENV)/bin/dkoar --version)"

station-env: $(STATION_STAMP)

# the station on a synthetic head and neck (made once), at http://127.0.0.1:8080
station: $(STATION_STAMP)
	@test -d station_demo/phantom/ct || $(STATION_VENV)/bin/dkoar phantom --out station_demo/phantom
	$(STATION_VENV)/bin/dkoar station --data station_demo/phantom/ct --out station_demo/output \
	    --log station_demo/corrections.sqlite --port 8080

test: $(STAMP) validators .venv-dicompyler/.installed $(STATION_STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m Testing.benchmarks.bench_segment
	$(PY) -m Testing.benchmarks.bench_nnunet
	$(PY) -m Testing.benchmarks.bench_node

# Re-resolve the development environment from pyproject.toml and write requirements/dev-lock.txt
lock:
	$(PYTHON) tools/lock_requirements.py

clean:
	rm -rf $(VENV) .venv-dicompyler .venv-lock $(STATION_VENV) station_demo demo_output .pytest_cache .apt.log
