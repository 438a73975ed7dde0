"""A picture of the VM at one moment: each process's map entries and the
shadow chains behind them, as Graphviz DOT, in the manner of the figures of
Dillon's paper (A, B, C1, C2), but drawn from a real run.

Each process is a box of map entries (start-end, protection, C for
copy-on-write, N for needs-copy); each VM object is drawn once, with its
type, reference and shadow counts and resident pages, and an arrow to its
backing object; shared objects show up as nodes with several arrows in.
"""

from __future__ import annotations

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE, Process
from vmgames.kernel.vm.map import prot_letters


def _object_label(obj) -> str:
    what = obj.vnode.path.rsplit("/", 1)[-1] if obj.vnode else obj.kind
    return (f"object {obj.id}\\n{what}\\nref {obj.ref_count}  shd {obj.shadow_count}\\n"
            f"{len(obj.pages)} of {obj.size} pages")


def live_processes(kernel: Kernel) -> list[Process]:
    """The processes that still have an address space, by pid."""
    return [proc for proc in sorted(kernel.processes.values(), key=lambda p: p.pid) if proc.state != ZOMBIE]


def to_dot(kernel: Kernel, title: str) -> str:
    lines = ["digraph vm {", "  rankdir=LR;", '  node [fontname="monospace", fontsize=10];',
             f'  label="{title}"; labelloc=t;']
    objects = {}
    for proc in live_processes(kernel):
        lines.append(f'  subgraph cluster_{proc.pid} {{ label="{proc.name} [{proc.pid}]"; style=rounded;')
        for n, entry in enumerate(proc.vmspace.map.entries):
            node = f"p{proc.pid}e{n}"
            label = (f"{entry.start:#x}-{entry.end:#x}\\n{entry.name} {prot_letters(entry.protection)} "
                     f"{entry.flags()}  {proc.vmspace.pmap.resident_in(entry.start, entry.end)} resident")
            lines.append(f'    {node} [shape=box, label="{label}"];')
            objects[entry.object.id] = entry.object
            lines.append(f"    {node} -> o{entry.object.id};")
        lines.append("  }")
    pending = list(objects.values())
    while pending:
        obj = pending.pop()
        if obj.backing is not None:
            lines.append(f'  o{obj.id} -> o{obj.backing.id} [label="backing"];')
            if obj.backing.id not in objects:
                objects[obj.backing.id] = obj.backing
                pending.append(obj.backing)
    for obj in objects.values():
        shape = "folder" if obj.vnode else "ellipse"
        lines.append(f'  o{obj.id} [shape={shape}, label="{_object_label(obj)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
