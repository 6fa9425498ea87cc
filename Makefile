# The two quick-start commands of the README:
#   make run    installs mediagw in .venv and runs it on the embedded default profile
#   make test   installs every test dependency (Python and Debian packages) and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: the build toolchain, and the real peers the integration tests talk to.
BUILD_PACKAGES := python3-venv python3-dev gcc
TEST_PACKAGES := sip-tester espeak-ng baresip-core sox
PYTEST_ARGS ?=

.PHONY: run test install install-test system-deps system-test-deps clean

run: install
	$(VENV)/bin/mediagw run

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

install: system-deps $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .

install-test: system-deps system-test-deps $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs only what is missing, so that a machine that has everything needs no root.
system-deps:
	@command -v gcc >/dev/null && $(PYTHON) -c 'import ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null \
	  || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(BUILD_PACKAGES); }

system-test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf build $(VENV) mediagw/_native/*.so mediagw/_native/*.c native/*.c
