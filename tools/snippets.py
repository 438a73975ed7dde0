"""Intel-syntax assembly the benchmarks (tools/bench.py) and the tests (tests/programs.py) build programs from."""

CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000   # VM, FS, FILES, SIGHAND, THREAD
# clone(CLONE_THREAD_FLAGS, no new stack): a thread of this process, which must not touch the stack it shares;
# rax is 0 in the thread, its tid in the caller.
CLONE_THREAD = f"""
    mov eax, 56
    mov edi, {CLONE_THREAD_FLAGS}
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    syscall
"""
