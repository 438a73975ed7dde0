/*
 * The machine's hot paths that Python is too slow for:
 *
 * - the instruction clock (emulator/clock.py).  Counting every instruction
 *   with a hook Unicorn calls before each one costs about 18x raw speed, so
 *   the clock counts translated blocks instead: Unicorn reports each block's
 *   instruction count when it translates it (UC_HOOK_EDGE_GENERATED,
 *   `block_translated`), a table keeps it, and a block hook adds it each
 *   time the block runs (`count_block`).  A block that would overrun the
 *   budget, or whose count is not in the table, stops the engine before it
 *   runs; the Python side then has that one block counted instruction by
 *   instruction (`count_instruction`, a code hook bounded to the block, the
 *   "slow range"), which is exact.  The clock's struct lives in memory the
 *   Python side owns (ctypes), so reading it is free;
 *
 * - register access: a ctypes call to uc_reg_read/uc_reg_write costs about a
 *   microsecond in argument conversion alone, several times the call itself,
 *   and the syscall path makes two of them per syscall;
 *
 * - the page-table walk of every TLB miss (`walk`): emulator/mmu.py's walk,
 *   line for line, which stays the reference tests/test_native_walk.py holds
 *   this one to (and tests/test_mmu_reference.py holds against QEMU's).
 *
 * Unicorn's functions are passed in by address from Python (bind()), so this
 * module needs no link-time dependency on libunicorn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define BLOCK_TABLE_BITS 14
#define BLOCK_TABLE_SIZE (1u << BLOCK_TABLE_BITS)
#define BLOCK_PROBES 8

/* Why the engine stopped at the entry of a block it did not count (instruction_clock.entry_stop). */
enum { ENTRY_NONE = 0, ENTRY_BUDGET = 1, ENTRY_UNKNOWN = 2, ENTRY_LEFT_SLOW = 3 };

/* Unicorn's uc_tb, as UC_HOOK_EDGE_GENERATED passes it. */
struct translated_block {
    uint64_t pc;
    uint16_t icount;
    uint16_t size;
};

/* A translated block's instruction count, by the address space it ran in, its address and its length. */
struct block_count {
    uint64_t pc;
    uint64_t space;
    uint32_t size;
    uint32_t count;
};

struct instruction_clock {
    uint64_t retired;       /* instructions executed so far (virtual time) */
    uint64_t limit;         /* stop before executing instruction number limit+1 */
    int (*stop)(void *engine);  /* uc_emu_stop */
    uint64_t expired;       /* set to 1 when the clock stopped the engine at the limit */
    uint64_t space;         /* the address space running (its CR3) */
    struct block_count *counted;    /* the block counted last, whole (NULL: an instruction, or nothing) */
    uint64_t entry_stop;    /* ENTRY_*: why the engine stopped at a block's entry */
    uint64_t pending_pc;    /* that block */
    uint64_t pending_size;
    uint64_t slow_lo;       /* [slow_lo, slow_hi): counted instruction by instruction (slow_hi 0: none) */
    uint64_t slow_hi;
    uint64_t entry_stops;   /* how many stops at a block's entry (the bench shows them) */
    uint64_t at_boundary;   /* 1: the budget may end at the first block boundary at or past it, not exactly */
    struct block_count table[BLOCK_TABLE_SIZE];
};

static inline struct block_count *block_slot(struct instruction_clock *clock, uint64_t pc, int probe)
{
    uint64_t h = pc ^ (pc >> BLOCK_TABLE_BITS) ^ (clock->space >> 12);
    return &clock->table[(h + (uint64_t)probe) & (BLOCK_TABLE_SIZE - 1)];
}

static void learn_block(struct instruction_clock *clock, uint64_t pc, uint32_t size, uint32_t count)
{
    struct block_count *victim = block_slot(clock, pc, 0);
    for (int probe = 0; probe < BLOCK_PROBES; probe++) {
        struct block_count *entry = block_slot(clock, pc, probe);
        if (entry->count == 0 || (entry->pc == pc && entry->space == clock->space && entry->size == size)) {
            victim = entry;
            break;
        }
    }
    /* With every probe taken, the first is overwritten: the block it held is counted anew if it runs again. */
    if (victim == clock->counted)
        clock->counted = NULL;
    victim->pc = pc;
    victim->space = clock->space;
    victim->size = size;
    victim->count = count;
}

static void block_translated(void *engine, struct translated_block *block, struct translated_block *previous,
                             void *user_data)
{
    (void)engine;
    (void)previous;
    learn_block(user_data, block->pc, block->size, block->icount);
}

/* From Python: where the block counted last ends (0: none counted), for a hook to see it needs no settling. */
static PyObject *counted_block_end(PyObject *self, PyObject *clock_address)
{
    struct instruction_clock *clock = PyLong_AsVoidPtr(clock_address);
    (void)self;
    if (clock == NULL)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    if (clock->counted == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromUnsignedLongLong(clock->counted->pc + clock->counted->size);
}

/* From Python: a block's count that Unicorn did not report (see emulator/clock.py). */
static PyObject *record_block(PyObject *self, PyObject *args)
{
    unsigned long long clock, pc;
    unsigned int size, count;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKII", &clock, &pc, &size, &count))
        return NULL;
    if (count == 0) {
        PyErr_SetString(PyExc_ValueError, "a block has at least one instruction");
        return NULL;
    }
    learn_block((struct instruction_clock *)(uintptr_t)clock, pc, size, count);
    Py_RETURN_NONE;
}

static void stop_at_entry(struct instruction_clock *clock, void *engine, uint64_t reason, uint64_t pc,
                          uint64_t size)
{
    clock->entry_stop = reason;
    clock->pending_pc = pc;
    clock->pending_size = size;
    clock->counted = NULL;
    clock->entry_stops++;
    clock->stop(engine);
}

/* Everything but a block found at its first slot that fits the budget: kept out of the hot path. */
static __attribute__((noinline)) void count_block_slowly(struct instruction_clock *clock, void *engine, uint64_t pc,
                                                         uint32_t size)
{
    if (clock->slow_hi) {
        if (pc >= clock->slow_lo && pc < clock->slow_hi) {
            if (clock->at_boundary && clock->retired >= clock->limit) {
                clock->expired = 1;     /* the code hook ran on to the end of the block that crossed the budget */
                clock->stop(engine);
            }
            return;         /* the code hook counts these instructions one by one */
        }
        stop_at_entry(clock, engine, ENTRY_LEFT_SLOW, pc, size);
        return;
    }
    for (int probe = 0; probe < BLOCK_PROBES; probe++) {
        struct block_count *entry = block_slot(clock, pc, probe);
        if (entry->count == 0)
            break;
        if (entry->pc != pc || entry->size != size || entry->space != clock->space)
            continue;
        if (clock->retired + entry->count > clock->limit && !(clock->at_boundary && clock->retired < clock->limit)) {
            if (clock->retired >= clock->limit) {
                clock->expired = 1;
                clock->counted = NULL;
                clock->stop(engine);
            } else {
                stop_at_entry(clock, engine, ENTRY_BUDGET, pc, size);
            }
            return;
        }
        clock->retired += entry->count;
        clock->counted = entry;
        return;
    }
    stop_at_entry(clock, engine, ENTRY_UNKNOWN, pc, size);
}

static void count_block(void *engine, uint64_t pc, uint32_t size, void *user_data)
{
    struct instruction_clock *clock = user_data;
    struct block_count *entry = block_slot(clock, pc, 0);
    uint64_t after = clock->retired + entry->count;
    if (__builtin_expect(entry->pc != pc || entry->size != size || entry->space != clock->space
                         || after > clock->limit || clock->slow_hi, 0)) {
        count_block_slowly(clock, engine, pc, size);
        return;
    }
    clock->retired = after;
    clock->counted = entry;
}

static void count_instruction(void *engine, uint64_t address, uint32_t size, void *user_data)
{
    struct instruction_clock *clock = user_data;
    (void)address;
    (void)size;
    if (clock->retired >= clock->limit && !clock->at_boundary) {
        clock->expired = 1;
        clock->stop(engine);
        return;
    }
    clock->retired++;
    clock->counted = NULL;
}

/* The walk: emulator/pte.py's bits, emulator/mmu.py's error codes and permissions. */
#define PTE_P (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_A (1ull << 5)
#define PTE_D (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)
#define PTE_ADDR_MASK 0x000FFFFFFFFFF000ull
#define PTE_RESERVED_MASK (PTE_ADDR_MASK & ~((1ull << 40) - 1))
#define PF_P 1
#define PF_W 2
#define PF_U 4
#define PF_RSVD 8
#define PF_I 16
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
enum { ACCESS_READ = 0, ACCESS_WRITE = 1, ACCESS_FETCH = 2 };

struct walk_result {
    int64_t paddr;      /* -1: the access faults */
    uint64_t detail;    /* the TLB's permissions, or the error code */
};

/* The entry at `slot` of RAM, or -1 in `ok` when the slot is past its end (the reference raises IndexError). */
static inline uint64_t *entry_at(uint64_t *qwords, uint64_t count, uint64_t slot, int *ok)
{
    if (slot >= count) {
        *ok = 0;
        return NULL;
    }
    return &qwords[slot];
}

static struct walk_result leaf(uint64_t *slot, uint64_t entry, uint64_t allowed, uint64_t va, uint64_t page_size,
                               int access, int user, uint64_t base_error)
{
    struct walk_result r = {-1, 0};
    uint64_t prot, needed;
    int dirty;
    if (entry & ((page_size - 1) & PTE_ADDR_MASK & ~(1ull << 12))) {
        r.detail = base_error | PF_P | PF_RSVD;
        return r;
    }
    allowed ^= PTE_NX;
    if (user && !(allowed & PTE_US)) {
        r.detail = base_error | PF_P;
        return r;
    }
    prot = PROT_READ | ((allowed & PTE_RW) ? PROT_WRITE : 0);
    if (!(allowed & PTE_NX))
        prot |= PROT_EXEC;
    needed = access == ACCESS_READ ? PROT_READ : access == ACCESS_WRITE ? PROT_WRITE : PROT_EXEC;
    if (!(prot & needed)) {
        r.detail = base_error | PF_P;
        return r;
    }
    dirty = access == ACCESS_WRITE && !(entry & PTE_D);
    if (!(entry & PTE_A) || dirty) {
        entry |= PTE_A | (dirty ? PTE_D : 0);
        *slot = entry;
    }
    if (!(entry & PTE_D))
        prot &= ~(uint64_t)PROT_WRITE;
    r.paddr = (int64_t)((entry & PTE_ADDR_MASK & ~(page_size - 1)) | (va & (page_size - 1) & ~0xFFFull));
    r.detail = prot;
    return r;
}

static struct walk_result walk_tables(uint64_t *qwords, uint64_t count, uint64_t cr3, uint64_t va, int access,
                                      int user, int *ok)
{
    struct walk_result r = {-1, 0};
    uint64_t base_error = (access == ACCESS_WRITE ? PF_W : 0) | (user ? PF_U : 0) | (access == ACCESS_FETCH ? PF_I : 0);
    uint64_t top = va >> 47, allowed, entry, *slot;
    static const int shifts[4] = {39, 30, 21, 12};
    uint64_t table = cr3 & PTE_ADDR_MASK;
    r.detail = base_error;
    if (top != 0 && top != 0x1FFFF)
        return r;
    allowed = ~0ull;
    for (int level = 0; level < 4; level++) {
        slot = entry_at(qwords, count, (table >> 3) + ((va >> shifts[level]) & 0x1FF), ok);
        if (!*ok)
            return r;
        entry = *slot;
        if (!(entry & PTE_P))
            return r;
        if ((entry & PTE_RESERVED_MASK) || (level == 0 && (entry & PTE_PS))) {
            r.detail = base_error | PF_P | PF_RSVD;
            return r;
        }
        if (level == 0) {
            if (!(entry & PTE_A))
                *slot = entry |= PTE_A;
            allowed = entry ^ PTE_NX;
        } else if (level == 1) {
            allowed &= entry ^ PTE_NX;
            if (!(entry & PTE_A))
                *slot = entry |= PTE_A;     /* a PDPT entry's A comes before its PS is seen (as QEMU) */
            if (entry & PTE_PS)
                return leaf(slot, entry, allowed, va, 1ull << 30, access, user, base_error);
        } else if (level == 2) {
            allowed &= entry ^ PTE_NX;
            if (entry & PTE_PS)
                return leaf(slot, entry, allowed, va, 1ull << 21, access, user, base_error);
            if (!(entry & PTE_A))
                *slot = entry |= PTE_A;
        } else {
            allowed &= entry ^ PTE_NX;
            return leaf(slot, entry, allowed, va, 1ull << 12, access, user, base_error);
        }
        table = entry & PTE_ADDR_MASK;
    }
    return r;
}

static PyObject *walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *qwords;
    uint64_t count, cr3, va;
    int access, user = 1, ok = 1;
    struct walk_result r;
    (void)self;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk(ram_address, qword_count, cr3, va, access[, user])");
        return NULL;
    }
    qwords = PyLong_AsVoidPtr(args[0]);
    count = PyLong_AsUnsignedLongLong(args[1]);
    cr3 = PyLong_AsUnsignedLongLongMask(args[2]);
    va = PyLong_AsUnsignedLongLongMask(args[3]);
    access = (int)PyLong_AsLong(args[4]);
    if (nargs == 6)
        user = PyObject_IsTrue(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (access < ACCESS_READ || access > ACCESS_FETCH) {
        PyErr_SetString(PyExc_ValueError, "access is 0 (read), 1 (write) or 2 (fetch)");
        return NULL;
    }
    r = walk_tables(qwords, count, cr3, va, access, user, &ok);
    if (!ok) {
        PyErr_SetString(PyExc_IndexError, "a page-table entry points past the end of RAM");
        return NULL;
    }
    return Py_BuildValue("(LK)", (long long)r.paddr, (unsigned long long)r.detail);
}

typedef int (*reg_read_batch_fn)(void *engine, int *regs, void **values, int count);
typedef int (*reg_read_fn)(void *engine, int reg, void *value);
typedef int (*reg_write_fn)(void *engine, int reg, const void *value);

static reg_read_batch_fn reg_read_batch;
static reg_read_fn reg_read;
static reg_write_fn reg_write;

/* The Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8, r9
 * (Unicorn's register ids, passed in by bind()). */
static int syscall_ids[7];

static PyObject *bind(PyObject *self, PyObject *args)
{
    unsigned long long read_batch, read, write;
    PyObject *ids;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKO", &read_batch, &read, &write, &ids))
        return NULL;
    if (!PyTuple_Check(ids) || PyTuple_GET_SIZE(ids) != 7) {
        PyErr_SetString(PyExc_ValueError, "bind() needs the 7 syscall register ids");
        return NULL;
    }
    for (int i = 0; i < 7; i++)
        syscall_ids[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(ids, i));
    reg_read_batch = (reg_read_batch_fn)(uintptr_t)read_batch;
    reg_read = (reg_read_fn)(uintptr_t)read;
    reg_write = (reg_write_fn)(uintptr_t)write;
    Py_RETURN_NONE;
}

static PyObject *syscall_registers(PyObject *self, PyObject *engine_address)
{
    void *engine = PyLong_AsVoidPtr(engine_address);
    uint64_t values[7];
    void *pointers[7];
    (void)self;
    if (engine == NULL && PyErr_Occurred())
        return NULL;
    for (int i = 0; i < 7; i++)
        pointers[i] = &values[i];
    if (reg_read_batch(engine, syscall_ids, pointers, 7) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "uc_reg_read_batch failed");
        return NULL;
    }
    return Py_BuildValue("(KKKKKKK)", values[0], values[1], values[2], values[3], values[4], values[5], values[6]);
}

static PyObject *read_register(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *engine;
    int reg;
    uint64_t value = 0;
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_register(engine, register)");
        return NULL;
    }
    engine = PyLong_AsVoidPtr(args[0]);
    reg = (int)PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (reg_read(engine, reg, &value) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "uc_reg_read failed");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(value);
}

static PyObject *write_register(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *engine;
    int reg;
    uint64_t value;
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write_register(engine, register, value)");
        return NULL;
    }
    engine = PyLong_AsVoidPtr(args[0]);
    reg = (int)PyLong_AsLong(args[1]);
    value = PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (reg_write(engine, reg, &value) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "uc_reg_write failed");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"bind", bind, METH_VARARGS, "bind(uc_reg_read_batch, uc_reg_read, uc_reg_write, syscall_register_ids)"},
    {"read_register", (PyCFunction)(void (*)(void))read_register, METH_FASTCALL, "read_register(engine, register)"},
    {"record_block", record_block, METH_VARARGS, "record_block(clock_address, pc, size, count)"},
    {"counted_block_end", counted_block_end, METH_O, "counted_block_end(clock_address) -> end of the block counted last, or 0"},
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL,
     "walk(ram_address, qword_count, cr3, va, access[, user]) -> (paddr or -1, permissions or error code)"},
    {"syscall_registers", syscall_registers, METH_O, "syscall_registers(engine) -> (rax, rdi, rsi, rdx, r10, r8, r9)"},
    {"write_register", (PyCFunction)(void (*)(void))write_register, METH_FASTCALL, "write_register(engine, register, value)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native", "The machine's hot paths in C: the instruction clock and register access.",
    -1, native_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObject(module, "INSTRUCTION_HOOK_ADDRESS", PyLong_FromVoidPtr((void *)count_instruction)) < 0
        || PyModule_AddObject(module, "BLOCK_HOOK_ADDRESS", PyLong_FromVoidPtr((void *)count_block)) < 0
        || PyModule_AddObject(module, "TRANSLATION_HOOK_ADDRESS", PyLong_FromVoidPtr((void *)block_translated)) < 0
        || PyModule_AddIntConstant(module, "BLOCK_TABLE_SIZE", BLOCK_TABLE_SIZE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
