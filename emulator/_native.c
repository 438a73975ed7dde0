/*
 * The machine's two hot paths that Python is too slow for:
 *
 * - the instruction clock's hook, which Unicorn calls before every
 *   instruction (a Python hook there would cost a microsecond each).  When
 *   the budget is spent it asks the engine to stop; the instruction it was
 *   called for does not execute, so it is not counted.  The clock's struct
 *   lives in memory the Python side owns (ctypes), so reading it is free;
 *
 * - register access: a ctypes call to uc_reg_read/uc_reg_write costs about a
 *   microsecond in argument conversion alone, several times the call itself,
 *   and the syscall path makes two of them per syscall.
 *
 * Unicorn's functions are passed in by address from Python (bind()), so this
 * module needs no link-time dependency on libunicorn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

struct instruction_clock {
    uint64_t retired;   /* instructions executed so far */
    uint64_t limit;     /* stop before executing instruction number limit+1 */
    int (*stop)(void *engine);  /* uc_emu_stop */
    uint64_t expired;   /* set to 1 when the clock stopped the engine */
};

static void count_instruction(void *engine, uint64_t address, uint32_t size, void *user_data)
{
    struct instruction_clock *clock = user_data;
    (void)address;
    (void)size;
    if (clock->retired >= clock->limit) {
        clock->expired = 1;
        clock->stop(engine);
        return;
    }
    clock->retired++;
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
    if (PyModule_AddObject(module, "CLOCK_HOOK_ADDRESS", PyLong_FromVoidPtr((void *)count_instruction)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
