/*
 * The instruction clock's hook, in C because it runs before every
 * instruction: a Python hook there would cost a microsecond each.
 *
 * Unicorn calls count_instruction() before each instruction.  When the
 * budget is spent it asks the engine to stop; the instruction it was called
 * for does not execute, so it is not counted.  The struct lives in memory
 * that the Python side owns (ctypes), so reading the count costs nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

struct instruction_clock {
    uint64_t retired;   /* instructions executed so far */
    uint64_t limit;     /* stop before executing instruction number limit+1 */
    int (*stop)(void *engine);  /* uc_emu_stop, passed in from Python */
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

static struct PyModuleDef icount_module = {
    PyModuleDef_HEAD_INIT, "_icount",
    "Address of the C instruction-counting hook for Unicorn.", -1, NULL,
};

PyMODINIT_FUNC PyInit__icount(void)
{
    PyObject *module = PyModule_Create(&icount_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObject(module, "HOOK_ADDRESS", PyLong_FromVoidPtr((void *)count_instruction)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
