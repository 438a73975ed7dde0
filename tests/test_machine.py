"""The board on its own: page tables built by hand, no kernel."""

import keystone
import pytest
from vmgames.emulator import mmu, traps
from vmgames.emulator import pte as E
from vmgames.emulator.machine import Machine

CODE_VA, DATA_VA = 0x400000, 0x600000


class Board:
    """A machine with a hand-made address space: one code page and whatever the test maps."""

    def __init__(self, code: str) -> None:
        self.machine = Machine(4 << 20)
        self.q = self.machine.ram.qwords
        self._next = 16
        self.root = self.frame()
        ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
        encoding, _ = ks.asm(code, CODE_VA)
        code_frame = self.frame()
        self.machine.ram.write(code_frame << 12, bytes(encoding))
        self.map(CODE_VA, code_frame, E.US)
        self.machine.set_page_table_root(self.root << 12)
        cpu = self.machine.cpu
        cpu.restore(cpu.new_context(CODE_VA, 0))

    def frame(self) -> int:
        self._next += 1
        self.machine.fill_frame(self._next, b"")
        return self._next

    def slot(self, va: int) -> int:
        table = self.root
        for shift in (39, 30, 21):
            index = table * 512 + ((va >> shift) & 511)
            if not self.q[index] & E.P:
                self.q[index] = (self.frame() << 12) | E.P | E.RW | E.US
            table = E.frame_of(self.q[index])
        return table * 512 + ((va >> 12) & 511)

    def map(self, va: int, frame: int, flags: int) -> None:
        self.q[self.slot(va)] = (frame << 12) | flags | E.P


def test_a_pte_change_without_invalidation_is_not_seen():
    board = Board("mov rax, [0x600000]\nmov rax, [0x600000]\nhlt")
    first, second = board.frame(), board.frame()
    board.machine.ram.write(first << 12, b"\x01")
    board.machine.ram.write(second << 12, b"\x02")
    board.map(DATA_VA, first, E.US | E.RW | E.NX)
    board.machine.page_fault_handler = lambda va, access, error: "no fault expected"
    assert board.machine.run(budget=1).kind == traps.QUANTUM
    assert board.machine.cpu.rax == 1
    assert board.machine.stale_translations() == []
    # Repoint the PTE but "forget" the shootdown: the TLB still has the old frame, and says so.
    board.map(DATA_VA, second, E.US | E.RW | E.NX)
    [(page, held, rights, now)] = board.machine.stale_translations()
    assert (page, held, E.frame_of(now)) == (DATA_VA, first << 12, second)
    assert board.machine.run(budget=1).kind == traps.QUANTUM
    assert board.machine.cpu.rax == 1
    board.machine.cpu.write(__import__("unicorn").x86_const.UC_X86_REG_RIP, CODE_VA)
    assert board.machine.tlb.invalidate_page(DATA_VA)            # it was held
    board.machine.run(budget=1)
    assert board.machine.cpu.rax == 2
    assert board.machine.stale_translations() == []
    assert not board.machine.tlb.invalidate_page(0x7000_0000)     # never filled: nothing to hit
    assert (board.machine.tlb.full_invalidations, board.machine.tlb.page_invalidations) == (1, 2)
    assert board.machine.cr3_loads == 1


def test_faults_are_resolved_inside_the_fill_hook_and_the_clock_is_exact():
    board = Board("mov rbx, 0x600000\nmov ecx, 3\nl: mov [rbx], rcx\nadd rbx, 4096\ndec ecx\njnz l\n"
                  "mov rax, [0x700000]")
    seen = []

    def handler(va: int, access: int, error: int) -> str | None:
        seen.append((va, access, error, board.machine.cpu.rip))
        if va >= 0x700000:
            return "refused"
        board.map(va & ~0xFFF, board.frame(), E.US | E.RW | E.NX)
        return None

    board.machine.page_fault_handler = handler
    trap = board.machine.run()
    # Three demand faults handled in place, at the exact instruction, then one the handler refused.
    store_rip = CODE_VA + 12
    assert seen[:3] == [(0x600000 + i * 4096, mmu.WRITE, mmu.PF_W | mmu.PF_U, store_rip) for i in range(3)]
    assert trap.kind == traps.PAGE_FAULT and trap.address == 0x700000 and trap.access == mmu.READ
    assert trap.verdict == "refused"          # the handler's answer, carried by the trap
    assert trap.error_code == mmu.PF_U
    # 2 + 3 * 4 instructions retired; the faulting load did not retire.
    assert board.machine.now == 14


@pytest.mark.parametrize("code, kind, retired", [
    ("nop\nint3\nnop", traps.BREAKPOINT, 2),
    ("xor ecx, ecx\ndiv ecx", traps.DIVIDE_ERROR, 1),
    ("nop\nud2", traps.INVALID_OPCODE, 1),
    ("nop\nhlt", traps.GENERAL_PROTECTION, 1),
    ("nop\nmov rax, cr0", traps.GENERAL_PROTECTION, 1),
])
def test_traps_and_the_instructions_they_retire(code, kind, retired):
    board = Board(code)
    trap = board.machine.run()
    assert trap.kind == kind
    assert board.machine.now == retired


def test_the_engine_survives_a_trap_and_runs_again():
    board = Board("xor ecx, ecx\ndiv ecx\nmov eax, 7\nhlt")
    assert board.machine.run().kind == traps.DIVIDE_ERROR
    board.machine.cpu.write(__import__("unicorn").x86_const.UC_X86_REG_RIP, CODE_VA + 4)
    assert board.machine.run().kind == traps.GENERAL_PROTECTION
    assert board.machine.cpu.rax == 7
