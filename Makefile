# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs, makes a phantom CT, contours it, writes the outputs
#   make test   creates .venv, installs (with the test tools), runs the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dkoar-installed

.PHONY: demo test validators bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: the CPU build pinned for tests; the package itself accepts any torch >= 2.1
	$(PY) -m pip install --quiet torch==2.13.0
	# nnU-Net's network classes without their timm/torchvision requirements (they would pull a CUDA torch)
	$(PY) -m pip install --quiet --no-deps dynamic-network-architectures==0.4.4
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dkoar demo --out demo_output

# Real tools that check what we write: dciodvfy/dcentvfy (Debian's dicom3tools) validate the DICOM,
# plastimatch (Debian) and dicompyler-core (its own venv: it needs pydicom < 3) read it back.
validators:
	@command -v dciodvfy >/dev/null && command -v plastimatch >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools plastimatch; }

.venv-dicompyler/.installed:
	test -x .venv-dicompyler/bin/python || $(PYTHON) -m venv .venv-dicompyler
	.venv-dicompyler/bin/python -m pip install --quiet "pydicom<3" "dicompyler-core==0.5.6" "numpy<2.3" shapely matplotlib six
	touch $@

test: $(STAMP) validators .venv-dicompyler/.installed
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) Testing/benchmarks/bench_segment.py

clean:
	rm -rf $(VENV) .venv-dicompyler demo_output .pytest_cache
