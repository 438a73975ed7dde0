"""The board's debug port on its own: page tables built by hand, no kernel, no gdb."""

from vmgames.emulator import pte as E
from vmgames.emulator import traps
from vmgames.emulator.debug import REGISTER_IDS, DebugPort
from vmgames.tools.gdb.registers import REGISTERS

from tests.test_machine import CODE_VA, DATA_VA, Board


def test_every_register_gdb_sees_is_one_the_port_reads():
    assert [r.name for r in REGISTERS if r.name not in REGISTER_IDS] == []


def test_the_instruction_hook_sees_each_instruction_before_it_runs_and_hold_ends_the_run_there():
    board = Board("mov eax, 1\nmov ebx, 2\nmov edx, 3\nhlt")
    port = DebugPort(board.machine)
    seen = []

    def hook(address: int, at_breakpoint: bool) -> None:
        seen.append((address, at_breakpoint))
        if at_breakpoint:
            port.hold()

    port.on_instruction(hook)
    port.set_breakpoint(CODE_VA + 10)
    trap = board.machine.run()
    assert (trap.kind, trap.rip) == (traps.STOPPED, CODE_VA + 10)
    assert seen == [(CODE_VA, False), (CODE_VA + 5, False), (CODE_VA + 10, True)]
    assert board.machine.retired == 2                  # the held instruction did not run, nor was it counted
    assert [board.machine.cpu.get(r) for r in ("rax", "rbx", "rdx")] == [1, 2, 0]
    port.release()
    assert port.breakpoints == set()
    assert board.machine.run(budget=1).kind == traps.QUANTUM
    assert board.machine.cpu.get("rdx") == 3 and len(seen) == 3


def test_a_write_watchpoint_sees_every_store_into_the_bytes_its_range_maps_to():
    board = Board("mov byte ptr [0x600010], 1\nmov qword ptr [0x60001c], 2\nmov byte ptr [0x600020], 3\n"
                  "mov byte ptr [0x700018], 4\nhlt")
    data = board.frame()
    board.map(DATA_VA, data, E.US | E.RW | E.NX)
    board.map(0x700000, data, E.US | E.RW | E.NX)      # a second mapping of the same frame
    board.machine.page_fault_handler = lambda va, access, error: "no fault expected"
    port = DebugPort(board.machine)
    hits = []
    port.watch_writes(DATA_VA + 0x18, 8, hits.append)
    port.watch_writes(DATA_VA + 0x18, 8, hits.append)   # watched already: still one hook
    board.machine.run(budget=5)
    # The 8-byte store at 0x1c overlaps [0x18, 0x20); the byte at 0x20 does not; the alias writes byte 0x18.
    assert hits == [DATA_VA + 0x18, DATA_VA + 0x18]
    port.unwatch_writes(DATA_VA + 0x18, 8)
    board.machine.cpu.rip = CODE_VA
    board.machine.run(budget=4)
    assert len(hits) == 2


def test_registers_by_gdb_name_on_the_live_cpu_and_in_a_saved_context():
    board = Board("hlt")
    port, cpu = DebugPort(board.machine), board.machine.cpu
    port.write_register("rax", 5)
    port.write_register("xmm0", 1 << 127 | 0x1234)
    assert (port.read_register("rax"), port.read_register("xmm0")) == (5, 1 << 127 | 0x1234)
    saved = cpu.copy_context(0x1000, 9)
    port.write_register("rbx", 7, saved)
    assert (port.read_register("rax", saved), port.read_register("rip", saved)) == (9, 0x1000)
    assert (port.read_register("rbx"), port.read_register("rbx", saved)) == (0, 7)
    cpu.restore(saved)
    assert port.read_register("rbx") == 7


def test_memory_is_read_through_the_page_tables_up_to_the_first_hole_without_setting_a_bit():
    board = Board("hlt")
    data = board.frame()
    board.machine.ram.write((data << 12) + 4090, b"abcdef")
    board.map(DATA_VA, data, E.US | E.RW | E.NX)
    port = DebugPort(board.machine)
    root = board.root << 12
    pte_before = port.leaf_entry(root, DATA_VA)
    assert pte_before == (data << 12) | E.US | E.RW | E.NX | E.P
    assert port.read_virtual(root, DATA_VA + 4090, 12) == b"abcdef"   # the next page is not mapped
    assert port.read_virtual(root, DATA_VA + 4096, 1) == b""
    assert port.leaf_entry(root, DATA_VA) == pte_before                # no A bit
