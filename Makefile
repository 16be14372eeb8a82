# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs, makes a phantom CT, contours it, writes the outputs
#   make test   creates .venv, installs (with the test tools), runs the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dkoar-installed
# nnU-Net v2 for the tests only (the parity tests and Testing/benchmarks/bench_nnunet.py), and MONAI for
# the test of MONAI model bundles; the Slicer module installs neither, so they are kept out of its
# --no-deps list. MONAI needs only torch and numpy (--no-deps: it must not touch the pinned torch).
NNUNET_FOR_TESTS := nnunetv2==2.8.1 acvl-utils==0.2.6 batchgenerators==0.25.5 blosc2==4.14.1 httpx==0.28.1
MONAI_FOR_TESTS := monai==1.6.1

.PHONY: demo test validators bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: the CPU build pinned for tests; the package itself accepts any torch >= 2.1
	$(PY) -m pip install --quiet torch==2.13.0
	# nnU-Net's network classes without their timm/torchvision requirements (they would pull a CUDA torch)
	$(PY) -m pip install --quiet --no-deps dynamic-network-architectures==0.4.4
	# nnU-Net v2 itself, for the tests only (its predictor is the reference of the parity tests and the
	# benchmark; the extension never imports it): --no-deps, as nnunetv2, acvl-utils and batchgenerators
	# require torch (and through dynamic-network-architectures timm/torchvision); batchgenerators' and
	# blosc2's other requirements (scikit-learn, unittest2, future; pydantic, rich, httpx[http2]) are not
	# needed to import nnunetv2's predictor. The rest is in the test extra of pyproject.toml.
	$(PY) -m pip install --quiet --no-deps $(NNUNET_FOR_TESTS) $(MONAI_FOR_TESTS)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dkoar demo --out demo_output

# Real tools that check what we write: dciodvfy/dcentvfy (Debian's dicom3tools) validate the DICOM,
# plastimatch (Debian) and dicompyler-core (its own venv: it needs pydicom < 3) read it back.
validators:
	@command -v dciodvfy >/dev/null && command -v plastimatch >/dev/null && command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools plastimatch chromium; }

.venv-dicompyler/.installed:
	test -x .venv-dicompyler/bin/python || $(PYTHON) -m venv .venv-dicompyler
	.venv-dicompyler/bin/python -m pip install --quiet "pydicom<3" "dicompyler-core==0.5.6" "numpy<2.3" shapely matplotlib six
	touch $@

test: $(STAMP) validators .venv-dicompyler/.installed
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) Testing/benchmarks/bench_segment.py
	$(PY) Testing/benchmarks/bench_nnunet.py

clean:
	rm -rf $(VENV) .venv-dicompyler demo_output .pytest_cache
