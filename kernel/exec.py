"""exec: replace a process's image with an ELF executable, and its interpreter if it names one.

A static executable is mapped where its headers say.  A position-independent
one (ET_DYN: gcc's default PIE) is placed at Linux's ELF_ET_DYN_BASE as
Linux places it with address randomization off, and one that names an
interpreter (PT_INTERP, the dynamic linker ld.so) gets it mapped at a fixed
base too, and starts there, with the auxiliary vector telling ld.so where
the program is (AT_PHDR, AT_ENTRY) and where it is itself (AT_BASE): fixed
places keep runs reproducible.  ld.so then maps the shared libraries with
mmap of their files, so all processes share one VM object per library.

Text is mapped read-only from the file's VM object and data copy-on-write
from it (needs-copy: the shadow appears on the first write); the page where
the file's data ends and bss begins is copied into an anonymous page with
its tail zeroed, as FreeBSD's and Linux's loaders do; the rest of bss, the
heap and the stack are anonymous and demand-zero.  The initial stack is laid
out as Linux lays it out: argc, argv, envp, auxv, then the strings.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from vmgames.emulator import cpuid
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import elf, errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.fs import HostFile
from vmgames.kernel.vm.map import USER_TOP, MapEntry, VMMap, VMSpace
from vmgames.kernel.vm.object import ANONYMOUS, VMObject
from vmgames.kernel.vm.page import OutOfMemory
from vmgames.kernel.vm.pmap import PROT_EXEC, PROT_READ, PROT_WRITE, Pmap
from vmgames.kernel.vm.prefault import MAP, vm_map_pmap_enter

if TYPE_CHECKING:
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.proc import Process

STACK_TOP = USER_TOP
STACK_SIZE = 8 << 20
# What argv and envp may take: their strings and pointers, a quarter of the stack, as Linux's
# bprm_stack_limits allows with an 8 MiB stack limit.
ARG_MAX = STACK_SIZE // 4
MAX_IMAGE = 256 << 20

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_EXECFN = 23, 25, 31

# AT_HWCAP: the features of CPUID leaf 1's EDX, as Linux's ELF_HWCAP gives them.
HWCAP = cpuid.cpuid(0x1, 0)[3]
ET_DYN_BASE = 0x5555_5555_4000     # Linux's ELF_ET_DYN_BASE (2/3 of the user address space), not randomized
INTERP_BASE = 0x7FFF_F7FC_3000     # where ld.so sits on Linux with randomization off: below the stack's region


def _page_down(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _prot(flags: int) -> int:
    return ((PROT_READ if flags & elf.PF_R else 0) | (PROT_WRITE if flags & elf.PF_W else 0)
            | (PROT_EXEC if flags & elf.PF_X else 0))


def exec_image(kernel: Kernel, proc: Process, file: HostFile, argv: list[str], envp: list[str]) -> None:
    """Load `file` into a new address space for `proc` and point its CPU context at the entry.

    On failure (SyscallError: ENOEXEC, E2BIG, ENOMEM) the old image is untouched.
    """
    kernel.exec_error = ""
    if file.size > MAX_IMAGE:
        raise SyscallError(errno.ENOEXEC)
    strings_size = sum(len(s.encode("utf-8", "surrogateescape")) + 1 for s in argv + envp)
    if strings_size + 8 * (len(argv) + len(envp)) > ARG_MAX:
        raise SyscallError(errno.E2BIG)
    image = _read_image(kernel, file, ET_DYN_BASE, "")
    interpreter = None
    if image.interpreter is not None:
        interpreter_file = _find_interpreter(kernel, image.interpreter)
        interpreter = _read_image(kernel, interpreter_file, INTERP_BASE, f"its interpreter {interpreter_file.path}: ")
        if interpreter.interpreter is not None:
            kernel.exec_error = f"its interpreter {image.interpreter} names an interpreter itself"
            raise SyscallError(errno.ENOEXEC)

    old = proc.vmspace
    vmspace = VMSpace(VMMap(), Pmap(kernel.allocator, kernel.shootdown), exe=file)
    proc.vmspace = vmspace
    try:
        heap_start = _map_segments(kernel, vmspace, file, image)
        if interpreter is not None:
            _map_segments(kernel, vmspace, interpreter_file, interpreter)
        stack = VMObject(kernel.vm, ANONYMOUS, STACK_SIZE // PAGE_SIZE)
        vmspace.map.insert(MapEntry(STACK_TOP - STACK_SIZE, STACK_TOP, stack, 0, PROT_READ | PROT_WRITE,
                                    name="stack"))
        vmspace.heap_start = vmspace.heap_end = heap_start
        if kernel.prefault == MAP:
            for entry in vmspace.map.entries:
                vm_map_pmap_enter(vmspace, entry)
        sp = _build_stack(proc, image, INTERP_BASE if interpreter else 0, argv, envp)
    except (OutOfMemory, SyscallError) as error:
        proc.vmspace = old
        vmspace.destroy()
        raise SyscallError(error.errno if isinstance(error, SyscallError) else errno.ENOMEM) from None
    if old is not None:
        old.release()
    proc.name = file.path.rsplit("/", 1)[-1]
    proc.context = kernel.new_context(interpreter.entry if interpreter else image.entry, sp)
    kernel.recorder.event("proc", "exec", path=file.path, argv=argv)


def _read_image(kernel: Kernel, file: HostFile, bias: int, which: str) -> elf.Image:
    """The file's ELF image, at `bias` if it is position-independent; ENOEXEC (and why, after `which`) if it
    is no executable."""
    data = file.read(0, file.size)
    try:
        return elf.parse(data, STACK_TOP - STACK_SIZE, bias)
    except elf.ExecFormatError as error:
        kernel.exec_error = f"{which}{error}"
        raise SyscallError(errno.ENOEXEC) from None


def _find_interpreter(kernel: Kernel, path: str) -> HostFile:
    """PT_INTERP's file, under the guest root; ENOENT (as Linux answers) with a message naming it if absent."""
    try:
        return kernel.fs.lookup(path)
    except SyscallError as error:
        kernel.exec_error = (f"its interpreter {path} is not under the guest root {kernel.fs.root} "
                             f"({os.strerror(error.errno)}); a dynamically linked program of the host runs "
                             "with --root /")
        raise


def _map_segments(kernel: Kernel, vmspace: VMSpace, file: HostFile, image: elf.Image) -> int:
    """Map every PT_LOAD segment; returns where the heap starts."""
    allocator = kernel.allocator
    for seg in image.segments:
        prot = _prot(seg.flags)
        start = _page_down(seg.vaddr)
        file_end = seg.vaddr + seg.filesz
        mem_end = _page_up(seg.end)
        # Read-only segments map the file up to the end of its last page, as mmap would;
        # writable ones stop at the last whole page, and the partial page is copied.
        shared_end = _page_down(file_end) if prot & PROT_WRITE else _page_up(file_end)
        if seg.filesz and shared_end > start:
            obj = kernel.fs.object_for(file)
            vmspace.map.insert(MapEntry(start, shared_end, obj, _page_down(seg.offset), prot,
                                        cow=True, needs_copy=True, name=_segment_name(prot)))
        at = max(start, shared_end)
        if seg.filesz and at < file_end:
            # A private copy of the file's page, in a shadow of the file's object, as a first write would make:
            # madvise(MADV_DONTNEED) then gives the file's page back, as on Linux.
            partial = kernel.fs.object_for(file).shadow((seg.offset - (seg.vaddr - at)) // PAGE_SIZE, 1)
            page = allocator.alloc(zero=True)
            data = file.read(seg.offset - (seg.vaddr - at), file_end - at)
            kernel.machine.fill_frame(page.frame, data)
            allocator.recorder.event("page", "pagein", frame=page.frame, object=partial.id, pindex=0)
            partial.insert(page, 0)
            vmspace.map.insert(MapEntry(at, at + PAGE_SIZE, partial, 0, prot, cow=True, name=_segment_name(prot)))
            at += PAGE_SIZE
        if at < mem_end:
            bss = VMObject(kernel.vm, ANONYMOUS, (mem_end - at) // PAGE_SIZE)
            vmspace.map.insert(MapEntry(at, mem_end, bss, 0, prot, name="bss"))
    return _page_up(max(seg.end for seg in image.segments))


def _segment_name(prot: int) -> str:
    if prot & PROT_EXEC:
        return "text"
    return "data" if prot & PROT_WRITE else "rodata"


def _build_stack(proc: Process, image: elf.Image, base: int, argv: list[str], envp: list[str]) -> int:
    """Write argc, argv, envp, auxv and the strings at the top of the stack; returns the new rsp."""
    from vmgames.kernel.uaccess import copyout

    uid, gid = proc.kernel.credentials
    execfn = argv[0] if argv else ""
    blobs = [s.encode("utf-8", "surrogateescape") + b"\0" for s in argv + envp]
    platform = b"x86_64\0"
    execfn_bytes = execfn.encode("utf-8", "surrogateescape") + b"\0"
    strings = b"".join(blobs) + platform + execfn_bytes
    strings_at = STACK_TOP - 8 - len(strings)
    random_at = (strings_at - 16) & ~0xF
    addresses = []
    at = strings_at
    for blob in blobs:
        addresses.append(at)
        at += len(blob)
    platform_at = at
    execfn_at = at + len(platform)

    auxv = [(AT_PHDR, image.phdr_vaddr), (AT_PHENT, image.phentsize), (AT_PHNUM, image.phnum),
            (AT_PAGESZ, PAGE_SIZE), (AT_BASE, base), (AT_FLAGS, 0), (AT_ENTRY, image.entry),
            (AT_UID, uid), (AT_EUID, uid), (AT_GID, gid), (AT_EGID, gid), (AT_PLATFORM, platform_at),
            (AT_HWCAP, HWCAP), (AT_CLKTCK, 100), (AT_SECURE, 0), (AT_RANDOM, random_at),
            (AT_EXECFN, execfn_at), (AT_NULL, 0)]
    words = [len(argv)] + addresses[:len(argv)] + [0] + addresses[len(argv):] + [0]
    for key, value in auxv:
        words += [key, value]
    table = struct.pack(f"<{len(words)}Q", *words)
    sp = (random_at - len(table)) & ~0xF
    copyout(proc, strings_at, strings)
    # AT_RANDOM: 16 bytes from the pool getrandom draws on, itself from --seed (glibc's stack guard and
    # pointer guard come from them): reproducible, and new for each exec as Linux's are.
    copyout(proc, random_at, struct.pack("<QQ", proc.kernel.entropy.next(), proc.kernel.entropy.next()))
    copyout(proc, sp, table)
    return sp
