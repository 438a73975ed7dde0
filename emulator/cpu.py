"""The CPU: a Unicorn x86-64 engine, with fast register access and contexts.

The Python binding's reg_read/reg_write cost about 3 us each, most of it a
register-class lookup; calling the C library through ctypes with a reused
c_uint64 costs about 1 us (docs/architecture.md, Unicorn facts 3), most of it argument conversion.
Registers go through emulator/_native.c instead (about 0.2 us), and one call
there reads all seven syscall registers.
"""

from __future__ import annotations

import ctypes
import resource
import struct

import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib
from vmgames.emulator import _native, cpuid

# Registers in the order of GDB's x86-64 target description (amd64 core).
GENERAL_REGISTERS = (
    ("rax", X.UC_X86_REG_RAX), ("rbx", X.UC_X86_REG_RBX), ("rcx", X.UC_X86_REG_RCX),
    ("rdx", X.UC_X86_REG_RDX), ("rsi", X.UC_X86_REG_RSI), ("rdi", X.UC_X86_REG_RDI),
    ("rbp", X.UC_X86_REG_RBP), ("rsp", X.UC_X86_REG_RSP), ("r8", X.UC_X86_REG_R8),
    ("r9", X.UC_X86_REG_R9), ("r10", X.UC_X86_REG_R10), ("r11", X.UC_X86_REG_R11),
    ("r12", X.UC_X86_REG_R12), ("r13", X.UC_X86_REG_R13), ("r14", X.UC_X86_REG_R14),
    ("r15", X.UC_X86_REG_R15), ("rip", X.UC_X86_REG_RIP), ("eflags", X.UC_X86_REG_EFLAGS),
    ("fs_base", X.UC_X86_REG_FS_BASE), ("gs_base", X.UC_X86_REG_GS_BASE),
)
REGISTER_IDS = dict(GENERAL_REGISTERS)

# Unicorn's own default, 1 GiB of address space (only what code fills is touched): with 512 MiB or less the
# clock's block hook runs at half the speed (Unicorn facts 6).  Under an address-space limit (ulimit -v), a
# quarter of it, which still holds far more code than any program here translates.
TCG_BUFFER_SIZE = 1 << 30
LIMITED_TCG_BUFFER_SIZE = 256 << 20
FXSAVE_SIZE = 512
# Bytes of the syscall instruction: rip is on it inside the syscall hook (docs/architecture.md, Unicorn facts 2).
SYSCALL_LENGTH = 2
MSR_EFER, MSR_STAR = 0xC000_0080, 0xC000_0081
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1 << 0, 1 << 8, 1 << 10, 1 << 11
_SYSRETQ = bytes.fromhex("480f07")

# The Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8, r9.
_SYSCALL_REGISTERS = (X.UC_X86_REG_RAX, X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX,
                      X.UC_X86_REG_R10, X.UC_X86_REG_R8, X.UC_X86_REG_R9)


def translation_buffer_size() -> int:
    """The translated-code buffer an engine can have here: 1 GiB unless the address space is limited."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    return TCG_BUFFER_SIZE if limit == resource.RLIM_INFINITY else LIMITED_TCG_BUFFER_SIZE


class CPU:
    """One x86-64 core. All processes share it; each keeps its own Context."""

    def __init__(self) -> None:
        self.engine = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.engine.ctl_set_cpu_model(cpuid.UNICORN_MODEL)     # before anything else touches the engine
        # Unicorn maps its translated-code buffer when it starts, and exits the whole process if it cannot: the
        # first engine starts before RAM is mapped (docs/architecture.md, Unicorn facts 6).
        self.engine.ctl_set_tcg_buffer_size(translation_buffer_size())
        self.handle = self.engine._uch
        self._address = self.handle.value
        _native.bind(*(ctypes.cast(f, ctypes.c_void_p).value
                       for f in (uclib.uc_reg_read_batch, uclib.uc_reg_read, uclib.uc_reg_write)),
                     _SYSCALL_REGISTERS)
        self._reset_context = self.engine.context_save()

    def drop_to_user_mode(self, scratch: int) -> None:
        """Run one sysretq so that user code runs at CPL 3, where privileged
        instructions (hlt, cli, mov to CR0, wrmsr, ...) raise #GP as on real
        hardware.  Writing CS or SS does not change the CPL in Unicorn (QEMU
        keeps it in hflags), but sysret does, and contexts carry it along.
        `scratch` is a physical address whose bytes may be overwritten; paging
        must still be off (identity-mapped physical memory).
        """
        self.engine.mem_write(scratch, _SYSRETQ)
        self.engine.reg_write(X.UC_X86_REG_MSR, (MSR_EFER, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
        self.engine.reg_write(X.UC_X86_REG_MSR, (MSR_STAR, 0x10 << 48))
        self.write(X.UC_X86_REG_RCX, scratch + 16)
        self.write(X.UC_X86_REG_R11, 0x202)
        self.engine.emu_start(scratch, scratch + 16)
        if self.engine.reg_read(X.UC_X86_REG_CS) & 3 != 3:
            raise RuntimeError("sysretq did not reach CPL 3")
        self.engine.ctl_flush_tb()
        self._reset_context = self.engine.context_save()

    def read(self, register: int) -> int:
        return _native.read_register(self._address, register)

    def write(self, register: int, value: int) -> None:
        _native.write_register(self._address, register, value)

    def syscall_registers(self) -> tuple[int, int, int, int, int, int, int]:
        """(number, arg0..arg5) of the syscall being made, in one C call."""
        return _native.syscall_registers(self._address)

    def get(self, name: str) -> int:
        """A register by its gdb name (rax, ..., rip, eflags, fs_base, gs_base)."""
        return self.read(REGISTER_IDS[name])

    def set(self, name: str, value: int) -> None:
        self.write(REGISTER_IDS[name], value)

    @property
    def rip(self) -> int:
        return self.read(X.UC_X86_REG_RIP)

    @rip.setter
    def rip(self, value: int) -> None:
        self.write(X.UC_X86_REG_RIP, value)

    def return_to(self, rip: int) -> None:
        """Inside the syscall hook: make the syscall return to `rip` (Unicorn adds the syscall instruction's
        length to rip after the hook: docs/architecture.md, Unicorn facts 2)."""
        self.rip = rip - SYSCALL_LENGTH

    @property
    def rax(self) -> int:
        return self.read(X.UC_X86_REG_RAX)

    def set_result(self, value: int) -> None:
        """Put a syscall's result (or -errno) in rax."""
        self.write(X.UC_X86_REG_RAX, value)

    def fxsave(self) -> bytes:
        """The x87 and SSE state in FXSAVE's 512-byte layout (what Linux puts in a signal frame's fpstate)."""
        read = self.engine.reg_read
        tags = read(X.UC_X86_REG_FPTAG)
        abridged = sum(1 << i for i in range(8) if (tags >> (2 * i)) & 3 != 3)     # 1: the register is in use
        head = struct.pack("<HHBxHQQII", read(X.UC_X86_REG_FPCW), read(X.UC_X86_REG_FPSW), abridged, 0, 0, 0,
                           read(X.UC_X86_REG_MXCSR), 0xFFFF)
        stack = b"".join(struct.pack("<QH6x", *read(X.UC_X86_REG_FP0 + i)) for i in range(8))
        xmm = b"".join(read(X.UC_X86_REG_XMM0 + i).to_bytes(16, "little") for i in range(16))
        return (head + stack + xmm).ljust(FXSAVE_SIZE, b"\0")

    def fxrstor(self, state: bytes) -> None:
        """Load the x87 and SSE state from FXSAVE's layout (sigreturn)."""
        write = self.engine.reg_write
        fcw, fsw, abridged, _, _, _, mxcsr, _ = struct.unpack_from("<HHBxHQQII", state)
        write(X.UC_X86_REG_FPCW, fcw)
        write(X.UC_X86_REG_FPSW, fsw)
        write(X.UC_X86_REG_FPTAG, sum((0 if abridged >> i & 1 else 3) << (2 * i) for i in range(8)))
        write(X.UC_X86_REG_MXCSR, mxcsr & 0xFFFF)
        for i in range(8):
            write(X.UC_X86_REG_FP0 + i, struct.unpack_from("<QH", state, 32 + 16 * i))
        for i in range(16):
            write(X.UC_X86_REG_XMM0 + i, int.from_bytes(state[160 + 16 * i:176 + 16 * i], "little"))

    def new_context(self, rip: int, rsp: int) -> unicorn.UcContext:
        """A fresh user context: every register zero but rip and rsp."""
        self.engine.context_restore(self._reset_context)
        self.write(X.UC_X86_REG_RIP, rip)
        self.write(X.UC_X86_REG_RSP, rsp)
        self.write(X.UC_X86_REG_EFLAGS, 0x202)
        return self.engine.context_save()

    def copy_context(self, rip: int, rax: int, **changes: int) -> unicorn.UcContext:
        """A copy of the live registers that resumes at `rip` with `rax` (fork's child returning 0), and
        other registers changed by gdb name (a new thread's rsp and fs_base)."""
        context = self.engine.context_save()
        context.reg_write(X.UC_X86_REG_RIP, rip)
        context.reg_write(X.UC_X86_REG_RAX, rax)
        for name, value in changes.items():
            context.reg_write(REGISTER_IDS[name], value)
        return context

    def save(self, context: unicorn.UcContext) -> None:
        self.engine.context_update(context)

    def restore(self, context: unicorn.UcContext) -> None:
        self.engine.context_restore(context)
