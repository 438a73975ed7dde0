# Every target sets up its own virtual environment, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VMGAMES := $(VENV)/bin/vmgames
STAMP := $(VENV)/.installed-stamp

PROGRAMS := $(patsubst userland/%.s,build/%,$(wildcard userland/*.s))

.PHONY: demo test bench lint userland clean

demo: userland
	@echo "== hello: a write and an exit"
	$(VMGAMES) run build/hello --stats
	@echo
	@echo "== touch: writes one byte to each of 1024 fresh pages of an anonymous mmap"
	@echo "   -> 1026 zero-fill faults (1024 + the stack + its bss page), 2 file faults (text, rodata)"
	$(VMGAMES) run build/touch 1024 --stats

test: userland
	$(PY) -m pytest -q

bench: userland
	$(PY) -m tools.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check emulator kernel tools tests

userland: $(PROGRAMS)

build/%: userland/%.s $(STAMP)
	@mkdir -p build
	$(VMGAMES) asm $< -o $@

$(STAMP): pyproject.toml setup.py emulator/_native.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf build $(VENV) *.egg-info emulator/_native*.so
