# Every target sets up its own virtual environment, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VMGAMES := $(VENV)/bin/vmgames
STAMP := $(VENV)/.installed-stamp

PROGRAMS := $(patsubst userland/%.s,build/%,$(wildcard userland/*.s))
# The zero-copy workloads and the vmsplice check: freestanding C, no libc (the flags tests/test_c_programs.py uses).
C_PROGRAMS := $(patsubst userland/c/%.c,build/%,$(wildcard userland/c/zc_*.c userland/c/vmsplice_alias.c))
C_HEADERS := $(filter-out userland/c/libc_probe.h,$(wildcard userland/c/*.h))
# The libc probes (userland/c/libc_*.c): static glibc programs, and static musl ones where musl-gcc is
# installed (musl-tools); tests/test_files_syscalls.py runs them on vmgames and on the host.
LIBC_SOURCES := $(wildcard userland/c/libc_*.c)
LIBC_PROGRAMS := $(patsubst userland/c/%.c,build/%,$(LIBC_SOURCES))
ifneq ($(shell command -v musl-gcc 2>/dev/null),)
LIBC_PROGRAMS += $(patsubst userland/c/%.c,build/%.musl,$(LIBC_SOURCES))
endif
CFLAGS_LIBC := -static -O2 -Wall
# Programs of userland/libc as people build them (gcc -static -pthread): make demo runs one.
REAL_PROGRAMS := build/threads build/stale_tlb build/pressure build/rerun build/sharers
CFLAGS_FREESTANDING := -static -nostdlib -O2 -ffreestanding -fno-builtin -fno-tree-loop-distribute-patterns \
	-fno-stack-protector -fno-pie -no-pie -masm=intel -Wall

.PHONY: demo test bench lint userland clean trace-digests

demo: userland
	@echo "== hello: a write and an exit"
	$(VMGAMES) run --stats build/hello
	@echo
	@echo "== touch: writes one byte to each of 1024 fresh pages of an anonymous mmap"
	@echo "   -> 1026 zero-fill faults (1024 + the stack + its bss page), 2 file faults (text, rodata)"
	$(VMGAMES) run --stats build/touch 1024
	@echo
	@echo "== touch again, 8192 pages in 8 MiB of RAM with 64 MiB of swap: the pageout daemon ages pages by their"
	@echo "   accessed bits and writes them to swap in clusters (swapout, swappgsout); nothing is left on swap at exit"
	$(VMGAMES) run --ram 8M --swap 64M --stats build/touch 8192
	@echo
	@echo "== threads: userland/libc/threads.c, built with gcc -static -pthread: glibc, 4 threads, a mutex,"
	@echo "   a condition variable and joins on 4 CPUs: clone3 and futex calls, one address space (a CR3 load per CPU)"
	$(VMGAMES) run --cpus 4 --stats build/threads
	@echo
	@echo "== zero-copy: every workload under write, copy-on-write and vmsplice sends (rerun a cell: see the CSV)"
	$(VMGAMES) experiment zerocopy --csv build/zerocopy.csv --plot build
	@echo
	@echo "vmgames is in $(VENV)/bin: '. $(VENV)/bin/activate' puts it on PATH for the commands above and in the README"

test: userland
	$(PY) -m pytest -q

bench: userland
	$(PY) -m vmgames.tools.bench

# After a change meant to change what the kernel does: record the traces anew (tests/trace_digests.py).
trace-digests: userland
	$(PY) -m tests.trace_digests --write

lint: $(STAMP)
	$(VENV)/bin/ruff check emulator kernel tools tests

userland: $(PROGRAMS) $(C_PROGRAMS) $(LIBC_PROGRAMS) $(REAL_PROGRAMS)

build/threads build/stale_tlb build/pressure build/rerun build/sharers: build/%: userland/libc/%.c
	@mkdir -p build
	gcc -static -O2 -pthread -Wall -o $@ $<

build/%: userland/%.s $(STAMP)
	@mkdir -p build
	$(VMGAMES) asm $< -o $@

build/%: userland/c/%.c $(C_HEADERS)
	@mkdir -p build
	gcc $(CFLAGS_FREESTANDING) -o $@ $<

build/libc_%: userland/c/libc_%.c userland/c/libc_probe.h
	@mkdir -p build
	gcc $(CFLAGS_LIBC) -o $@ $<

build/libc_%.musl: userland/c/libc_%.c userland/c/libc_probe.h
	@mkdir -p build
	musl-gcc $(CFLAGS_LIBC) -o $@ $<

$(STAMP): pyproject.toml setup.py emulator/_native.c tools/_tracewriter.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf build $(VENV) *.egg-info emulator/_native*.so tools/_tracewriter*.so
