"""The kernel's invariants, checked from outside (the design notes' quality bars).

- every present user PTE maps the page the map entry's object chain yields for
  that address, with no more rights than the entry and the chain allow;
- pv entries and present PTEs are the same set;
- each object's reference count is the number of map entries, shadows and
  caches holding it, and its shadow count the number of shadows;
- an address space's user count is the number of live tasks using it; the threads
  of a process share one, and a vfork child its parent's, who sleeps in vfork
  until the child execs or exits; a task asleep on a futex is queued on it;
- a shared mapping is never copy-on-write, and its object shadows nothing;
- every allocated frame belongs to an object, is a page-table page, or is an
  orphan a sink still holds;
- a page in flight in a copy-on-write send is mapped read-only everywhere;
- a page of a file's object is never mapped writable, and (check_files) holds
  exactly the file's bytes;
- the TLB holds no translation the page tables no longer give;
- (check_queues) every page in use is on exactly one queue, and a page on the
  inactive or cache queue is mapped nowhere, a cache page is clean;
- (check_swap) every swap block in use belongs to exactly one page of a live
  object, and an object never has a page on swap it cannot be asked for.
"""

from __future__ import annotations

from collections import Counter
from itertools import compress

from vmgames.emulator import pte as E
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import RUNNABLE, SLEEPING, ZOMBIE, Process
from vmgames.kernel.vm.object import VNODE
from vmgames.kernel.vm.pagequeue import ACTIVE, CACHE, INACTIVE, WIRED
from vmgames.kernel.vm.pmap import PROT_EXEC, PROT_WRITE, Pmap


def present_ptes(pmap: Pmap):
    """(va, pte) for every present leaf entry."""
    q = pmap.qwords

    def walk(frame: int, level: int, base: int):
        table = frame * 512
        for index in compress(range(512), q[table:table + 512]):    # the non-zero entries, found in C
            entry = q[table + index]
            if not entry & E.P:
                continue
            va = base | (index << (39 - 9 * level))
            if level == 3:
                yield va, entry
            else:
                yield from walk(E.frame_of(entry), level + 1, va)

    yield from walk(pmap.root.frame, 0, 0)


def check(kernel: Kernel) -> None:
    # The TLB sanitizer's question, at a kernel entry: no translation the TLB may still hold is one the page
    # tables no longer give (a PTE changed without its invalidation).
    check_cpus(kernel)
    # Every CPU's: one that idles keeps its last address space loaded (lazy TLB), and gets its shootdowns.  One
    # whose address space is gone loads another before it runs (its tables may hold anything by then).
    machine = kernel.machine
    for pcpu in kernel.cpus:
        processor = pcpu.processor
        if pcpu.active_vmspace is None or pcpu.active_vmspace.users == 0 or processor.tlb.pending:
            continue
        stale = machine.stale_translations(processor)
        assert not stale, f"stale TLB entries of cpu {pcpu.index} (page, frame held, rights, PTE now): {stale}"
    # One task per address space: threads and a vfork child share their process's, which holds its objects once.
    tasks = [p for p in kernel.processes.values() if p.state != ZOMBIE]
    live = list({id(p.vmspace): p for p in tasks}.values())
    for proc in live:
        users = sum(t.vmspace is proc.vmspace for t in tasks)
        assert proc.vmspace.users == users, f"an address space used by {users} tasks counts {proc.vmspace.users}"
    check_tasks(kernel, tasks)
    objects = {}
    holders: Counter = Counter()
    table_frames = set()
    for proc in live:
        vm = proc.vmspace
        table_frames.update(vm.pmap.tables)
        for entry in vm.map.entries:
            if entry.shared:
                assert not entry.cow and not entry.needs_copy and entry.object.backing is None, \
                    f"pid {proc.pid}: the shared mapping at {entry.start:#x} is copy-on-write or shadowed"
            holders[id(entry.object)] += 1
            obj = entry.object
            while obj is not None:
                objects[id(obj)] = obj
                obj = obj.backing
        mapped = 0
        for va, pte in present_ptes(vm.pmap):
            mapped += 1
            entry = vm.map.lookup(va)
            assert entry is not None, f"pid {proc.pid}: PTE at {va:#x} outside every map entry"
            obj, index = entry.object, entry.pindex(va)
            while index not in obj.pages and index not in obj.swap_blocks and obj.backing is not None:
                index += obj.backing_offset
                obj = obj.backing
            page = obj.pages.get(index)
            assert page is not None and page.frame == E.frame_of(pte), \
                f"pid {proc.pid}: PTE at {va:#x} maps frame {E.frame_of(pte)}, the chain says {page and page.frame}"
            if pte & E.RW:
                assert not page.cow, f"pid {proc.pid}: {va:#x} writable while a copy-on-write send holds it"
                assert entry.protection & PROT_WRITE, f"pid {proc.pid}: {va:#x} writable against its protection"
                assert obj is entry.object and not entry.needs_copy, f"pid {proc.pid}: {va:#x} writes a shared page"
                assert obj.kind != VNODE, f"pid {proc.pid}: {va:#x} writes the file's page"
            if not pte & E.NX:
                assert entry.protection & PROT_EXEC, f"pid {proc.pid}: {va:#x} executable against its protection"
            assert (vm.pmap, va) in page.pv, f"pid {proc.pid}: no pv entry for {va:#x}"
        assert mapped == vm.pmap.resident
    for file in kernel.fs._files.values():
        if file.object is not None:
            holders[id(file.object)] += 1
            objects[id(file.object)] = file.object
    shadows: Counter = Counter()
    for obj in objects.values():
        if obj.backing is not None:
            holders[id(obj.backing)] += 1
            shadows[id(obj.backing)] += 1
    for key, obj in objects.items():
        assert obj.ref_count == holders[key], f"{obj}: {holders[key]} holders"
        assert obj.shadow_count == shadows[key], f"{obj}: {shadows[key]} shadows"
        for pindex, page in obj.pages.items():
            assert page.object is obj and page.pindex == pindex
            for pmap, va in page.pv:
                assert E.frame_of(pmap.lookup(va)) == page.frame, f"stale pv entry {va:#x} for frame {page.frame}"
    for page in kernel.allocator.orphans:
        assert page.hold_count > 0 and page.object is None and not page.pv, f"orphan frame {page.frame}"
    owned = sum(len(obj.pages) for obj in objects.values()) + len(table_frames) + len(kernel.allocator.orphans)
    assert kernel.allocator.total - kernel.allocator.free_count == owned, "a frame is allocated but owned by nobody"
    check_queues(kernel, objects.values(), table_frames)
    check_swap(kernel, objects.values())


def check_swap(kernel: Kernel, objects) -> None:
    """Swap blocks in use are exactly those the live objects hold, one page each, within their size; nothing
    is on swap without swap."""
    swap = kernel.vm.swap_pager
    blocks = [block for obj in objects for block in obj.swap_blocks.values()]
    if swap is None:
        assert not blocks, "pages on swap without swap"
        return
    assert len(blocks) == len(set(blocks)), "a swap block holds two pages"
    assert len(blocks) == swap.used, f"{swap.used} swap blocks in use, the objects hold {len(blocks)}"
    for obj in objects:
        for pindex, block in obj.swap_blocks.items():
            assert 0 <= pindex < obj.size and obj.kind != VNODE, f"{obj} has page {pindex} on swap"
            assert not swap.blist.is_free(block), f"{obj}'s page {pindex} is on free swap block {block}"


def check_cpus(kernel: Kernel) -> None:
    """Each CPU's state agrees with the board and with the others: its CR3 is its address space's, it is in that
    pmap's CPUs unless an IPI made it leave (then it has one to take), no task is loaded on two CPUs or runs on
    two, and no task waiting for a CPU is another's current."""
    loaded = [pcpu.loaded for pcpu in kernel.cpus if pcpu.loaded is not None]
    assert len(loaded) == len(set(map(id, loaded))), "a task's registers are in two CPUs"
    running = [pcpu.current for pcpu in kernel.cpus if pcpu.current is not None]
    assert len(running) == len(set(map(id, running))), "a task runs on two CPUs"
    waiting = [*kernel.run_queue, *(proc for pcpu in kernel.cpus for proc in pcpu.woken)]
    assert not any(proc is current for proc in waiting for current in running if proc.state == RUNNABLE), \
        "a task waits for a CPU while it runs on one"
    for pcpu in kernel.cpus:
        space = pcpu.active_vmspace
        if pcpu.current is not None and pcpu.current.state != ZOMBIE:
            assert space is pcpu.current.vmspace, f"cpu {pcpu.index} runs a task whose address space it has not loaded"
        if space is None or space.users == 0:
            continue
        assert pcpu.processor.cr3 == space.pmap.cr3, f"cpu {pcpu.index}'s CR3 is not its address space's"
        assert pcpu.index in space.pmap.active_cpus or pcpu.ipis, \
            f"cpu {pcpu.index} has an address space loaded but is not among its CPUs"
    for proc in kernel.processes.values():
        if proc.state != ZOMBIE:
            members = {pcpu.index for pcpu in kernel.cpus if pcpu.active_vmspace is proc.vmspace}
            assert proc.vmspace.pmap.active_cpus <= members, f"pid {proc.pid}: a CPU in pm_active has it not loaded"


def check_queues(kernel: Kernel, objects, table_frames: set[int]) -> None:
    """Every page in use is in exactly one page queue: an object's in active, inactive or cache, a page table
    and an orphan held by a sink in wired (kernel/vm/pagequeue.py); the free frames in none."""
    queues = kernel.allocator.queues
    queued = {page: queue.name for queue in queues.values() for page in queue.pages}
    assert sum(len(queue) for queue in queues.values()) == len(queued), "a page is on two queues"
    assert len(queued) + kernel.allocator.free_count == kernel.allocator.total, "a frame is on no queue, or free too"
    for page, name in queued.items():
        assert page.queue is queues[name], f"frame {page.frame} is on the {name} queue but says otherwise"
    for obj in objects:
        for page in obj.pages.values():
            assert queued.get(page) in (ACTIVE, INACTIVE, CACHE), f"frame {page.frame} of {obj} is {queued.get(page)}"
    for page, name in queued.items():
        if name in (INACTIVE, CACHE):
            assert not page.pv, f"frame {page.frame} on the {name} queue is still mapped"
        if name == CACHE:
            assert not page.dirty, f"frame {page.frame} on the cache queue is dirty"
    for frame in table_frames:
        assert queued.get(kernel.allocator.page_of(frame)) == WIRED, f"page-table frame {frame} is not wired"
    for page in kernel.allocator.orphans:
        assert queued.get(page) == WIRED, f"orphan frame {page.frame} is not wired"


def check_tasks(kernel: Kernel, tasks: list[Process]) -> None:
    """The threads of a process share its address space and signal actions; a vfork parent sleeps,
    in its child's address space, until the child execs or exits; a task asleep on a futex is queued on one."""
    leaders = {}
    for task in tasks:
        leader = leaders.setdefault(task.tgid, task)
        assert task.vmspace is leader.vmspace and task.sigactions is leader.sigactions, \
            f"thread {task.pid} of process {task.tgid} has an address space or signal actions of its own"
        parent = task.vfork_parent
        if parent is not None and parent.state != ZOMBIE:
            assert parent.state == SLEEPING and parent.channel == ("vfork", task.pid), \
                f"pid {parent.pid} is {parent.state} ({parent.channel}) while its vfork child {task.pid} runs"
            assert parent.vmspace is task.vmspace, f"vfork child {task.pid} left its parent's address space"
    queued = Counter(waiter.proc.pid for queue in kernel.futexes.values() for waiter in queue
                     if waiter.proc.state == SLEEPING and waiter.sleep == waiter.proc.sleeps)
    for task in tasks:
        if task.state == SLEEPING and task.channel == ("futex", id(task)):
            assert queued[task.pid] == 1, f"pid {task.pid} sleeps on a futex, queued {queued[task.pid]} times"


def check_files(kernel: Kernel) -> None:
    """Every resident page of every file's VM object (the page cache) holds the file's bytes, zeros past its end."""
    for file in kernel.fs._files.values():
        if file.object is None:
            continue
        for pindex, page in file.object.pages.items():
            expected = file.read(pindex * 4096, 4096).ljust(4096, b"\0")
            held = bytes(kernel.machine.ram.frame_view(page.frame))
            assert held == expected, f"{file.path}: page {pindex} of its object differs from the file"
