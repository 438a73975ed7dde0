/*
 * The trace writer's hot path: one JSON line per recorder event.
 *
 * A traced run records hundreds of thousands of events.  Merging each
 * event's parts into a dict in Python and serializing it with orjson costs
 * about 8,000 instructions an event, a third of the run's time again; this
 * writer takes the parts as the recorder has them (virtual time, CPU, pid, type,
 * kind, and the dict of the event's fields), appends the line to a buffer,
 * and hands the buffer to the stream's write() a megabyte at a time.
 *
 * Its lines are byte for byte what orjson.dumps(event, option=
 * OPT_APPEND_NEWLINE) makes of the merged dict {"t", "cpu", "pid", "type", "kind",
 * fields...} (tests/test_trace.py holds it to that).  It knows exactly the
 * types events carry: None, bool, int within 64 bits, str, list, tuple and
 * dict with str keys.  An event holding anything else (a float, a bigger
 * int, a subclass, a str that is not valid UTF-8) is passed whole to the
 * fallback, which is orjson itself, so what cannot be said here is said the
 * way it always was.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FLUSH_AT (1 << 20)

/*
 * Events repeat the same short strings (field names, kinds, reasons), and
 * escaping one costs more than the rest of its field.  Each is encoded once
 * into a small table indexed by the str object's address; the table keeps the
 * object alive, so no other string can come to have that address.
 */
#define MEMO_SLOTS 256
#define MEMO_LONGEST 32   /* bytes of an encoded string, quotes included */

struct memo {
    PyObject *text;
    Py_ssize_t length;
    char encoded[MEMO_LONGEST];
};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *write;     /* the stream's write(bytes) */
    PyObject *fallback;  /* fallback(t, cpu, pid, type, kind, fields) -> bytes */
    PyObject *types;     /* a set of the event types to keep, or NULL for all */
    char *buffer;
    Py_ssize_t length, capacity;
    PyObject *failure;   /* what a write raised: the events after it are dropped, and flush() raises it */
    struct memo memo[MEMO_SLOTS];
} LineWriter;

/* Returned by the encoders for a value this writer does not know (no Python error is set). */
#define UNKNOWN 1

static int reserve(LineWriter *self, Py_ssize_t more)
{
    Py_ssize_t needed = self->length + more, capacity = self->capacity;
    char *grown;
    if (needed <= capacity)
        return 0;
    while (capacity < needed)
        capacity *= 2;
    grown = PyMem_Realloc(self->buffer, capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buffer = grown;
    self->capacity = capacity;
    return 0;
}

static int put(LineWriter *self, const char *bytes, Py_ssize_t n)
{
    if (reserve(self, n) < 0)
        return -1;
    memcpy(self->buffer + self->length, bytes, n);
    self->length += n;
    return 0;
}

/* Bytes that a JSON string must escape: '"', '\\' and the control characters. */
static int needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

static int escape_str(LineWriter *self, PyObject *text)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t n, plain = 0;
    const char *utf8;
    char *out;
    if (PyUnicode_IS_ASCII(text)) {
        utf8 = (const char *)PyUnicode_DATA(text);
        n = PyUnicode_GET_LENGTH(text);
    } else {
        utf8 = PyUnicode_AsUTF8AndSize(text, &n);
        if (utf8 == NULL) {   /* a lone surrogate: orjson refuses it too, in its own words */
            PyErr_Clear();
            return UNKNOWN;
        }
    }
    while (plain < n && !needs_escape((unsigned char)utf8[plain]))
        plain++;
    if (reserve(self, plain + 6 * (n - plain) + 2) < 0)   /* the longest escape, \u00XX, is 6 bytes */
        return -1;
    out = self->buffer + self->length;
    *out++ = '"';
    memcpy(out, utf8, plain);
    out += plain;
    for (Py_ssize_t i = plain; i < n; i++) {
        unsigned char c = (unsigned char)utf8[i];
        if (!needs_escape(c)) {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out++ = '"';
    self->length = out - self->buffer;
    return 0;
}

static int put_str(LineWriter *self, PyObject *text)
{
    struct memo *slot = &self->memo[((uintptr_t)text >> 4) % MEMO_SLOTS];
    Py_ssize_t start = self->length, length;
    int status;
    if (slot->text == text)
        return put(self, slot->encoded, slot->length);
    status = escape_str(self, text);
    length = self->length - start;
    if (status == 0 && length <= MEMO_LONGEST) {
        Py_INCREF(text);
        Py_XSETREF(slot->text, text);
        memcpy(slot->encoded, self->buffer + start, length);
        slot->length = length;
    }
    return status;
}

/* Decimal digits by hand, two at a time: snprintf costs ten times as much, and an event has several ints. */
static int put_decimal(LineWriter *self, unsigned long long value, int negative)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char digits[21];
    int n = (int)sizeof digits;
    while (value >= 100) {
        unsigned pair = (unsigned)(value % 100) * 2;
        value /= 100;
        digits[--n] = pairs[pair + 1];
        digits[--n] = pairs[pair];
    }
    if (value >= 10) {
        digits[--n] = pairs[value * 2 + 1];
        digits[--n] = pairs[value * 2];
    } else {
        digits[--n] = (char)('0' + value);
    }
    if (negative)
        digits[--n] = '-';
    return put(self, digits + n, (Py_ssize_t)sizeof digits - n);
}

static int put_int(LineWriter *self, PyObject *number)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (overflow == 0) {
        if (value == -1 && PyErr_Occurred())
            return -1;
        /* the magnitude of LLONG_MIN, computed without overflowing */
        return value < 0 ? put_decimal(self, 0ULL - (unsigned long long)value, 1) : put_decimal(self, value, 0);
    }
    if (overflow > 0) {
        unsigned long long big = PyLong_AsUnsignedLongLong(number);
        if (big == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return UNKNOWN;
        }
        return put_decimal(self, big, 0);
    }
    return UNKNOWN;
}

static int put_value(LineWriter *self, PyObject *value);

static int put_items(LineWriter *self, PyObject *sequence, char open, char close)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    int status;
    if (put(self, &open, 1) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i > 0 && put(self, ",", 1) < 0)
            return -1;
        if ((status = put_value(self, items[i])) != 0)
            return status;
    }
    return put(self, &close, 1);
}

/* A field named as one of the five every event starts with: orjson's merged dict would hold it once. */
static int reserved(PyObject *key)
{
    return PyUnicode_GET_LENGTH(key) <= 4
        && (PyUnicode_CompareWithASCIIString(key, "t") == 0 || PyUnicode_CompareWithASCIIString(key, "pid") == 0
            || PyUnicode_CompareWithASCIIString(key, "cpu") == 0
            || PyUnicode_CompareWithASCIIString(key, "type") == 0
            || PyUnicode_CompareWithASCIIString(key, "kind") == 0);
}

/* The members of a dict, each `,"key":value` (the caller writes the braces); `first` is false for an
 * event's own fields, which follow its kind. */
static int put_members(LineWriter *self, PyObject *dict, int first)
{
    const int fields = !first;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    int status;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || (fields && reserved(key)))
            return UNKNOWN;
        if (!first && put(self, ",", 1) < 0)
            return -1;
        first = 0;
        if ((status = put_str(self, key)) != 0)
            return status;
        if (put(self, ":", 1) < 0)
            return -1;
        if ((status = put_value(self, value)) != 0)
            return status;
    }
    return 0;
}

static int put_value(LineWriter *self, PyObject *value)
{
    int status;
    if (value == Py_None)
        return put(self, "null", 4);
    if (value == Py_True)
        return put(self, "true", 4);
    if (value == Py_False)
        return put(self, "false", 5);
    if (PyLong_CheckExact(value))
        return put_int(self, value);
    if (PyUnicode_CheckExact(value))
        return put_str(self, value);
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        if (Py_EnterRecursiveCall(" in a trace event"))
            return -1;
        status = put_items(self, value, '[', ']');
        Py_LeaveRecursiveCall();
        return status;
    }
    if (PyDict_CheckExact(value)) {
        if (Py_EnterRecursiveCall(" in a trace event"))
            return -1;
        status = put(self, "{", 1);
        if (status == 0)
            status = put_members(self, value, 1);
        if (status == 0)
            status = put(self, "}", 1);
        Py_LeaveRecursiveCall();
        return status;
    }
    return UNKNOWN;
}

static int put_event(LineWriter *self, PyObject *const *parts)
{
    static const char *names[] = {"{\"t\":", ",\"cpu\":", ",\"pid\":", ",\"type\":", ",\"kind\":"};
    int status;
    for (int i = 0; i < 5; i++) {
        if (put(self, names[i], (Py_ssize_t)strlen(names[i])) < 0)
            return -1;
        if ((status = put_value(self, parts[i])) != 0)
            return status;
    }
    if ((status = put_members(self, parts[5], 0)) != 0)
        return status;
    return put(self, "}\n", 2);
}

static int write_out(LineWriter *self)
{
    PyObject *chunk, *result;
    if (self->length == 0)
        return 0;
    chunk = PyBytes_FromStringAndSize(self->buffer, self->length);
    if (chunk == NULL)
        return -1;
    self->length = 0;
    result = PyObject_CallOneArg(self->write, chunk);
    Py_DECREF(chunk);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* A write failed (a full disk, say): keep its exception for flush(), so that the run it traces goes on. */
static void remember_failure(LineWriter *self)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    Py_XSETREF(self->failure, value);
}

static PyObject *line_writer_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    LineWriter *self = (LineWriter *)callable;
    Py_ssize_t start = self->length;
    int status;
    if (PyVectorcall_NARGS(nargsf) != 6 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "LineWriter(t, cpu, pid, type, kind, fields) takes 6 positional arguments");
        return NULL;
    }
    if (!PyDict_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "an event's fields must be a dict");
        return NULL;
    }
    if (self->write == NULL || self->fallback == NULL) {
        PyErr_SetString(PyExc_ValueError, "the LineWriter was cleared");
        return NULL;
    }
    if (self->failure != NULL)
        Py_RETURN_NONE;
    if (self->types != NULL) {
        int keep = PySet_Contains(self->types, args[3]);
        if (keep < 0)
            return NULL;
        if (!keep)
            Py_RETURN_NONE;
    }
    status = put_event(self, args);
    if (status == UNKNOWN) {
        PyObject *line;
        self->length = start;   /* before the call: the fallback may itself write through this writer */
        line = PyObject_Vectorcall(self->fallback, args, 6, NULL);
        if (line == NULL)
            return NULL;
        if (!PyBytes_Check(line)) {
            Py_DECREF(line);
            PyErr_SetString(PyExc_TypeError, "the fallback must return bytes");
            return NULL;
        }
        start = self->length;
        status = put(self, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line));
        Py_DECREF(line);
    }
    if (status < 0) {
        self->length = start;
        return NULL;
    }
    if (self->length >= FLUSH_AT && write_out(self) < 0)
        remember_failure(self);
    Py_RETURN_NONE;
}

static int line_writer_init(LineWriter *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"write", "fallback", "types", NULL};
    PyObject *write, *fallback, *types = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O", keywords, &write, &fallback, &types))
        return -1;
    if (!PyCallable_Check(write) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "write and fallback must be callable");
        return -1;
    }
    if (types != Py_None && !PyAnySet_Check(types)) {
        PyErr_SetString(PyExc_TypeError, "types must be a set or None");
        return -1;
    }
    Py_INCREF(write);
    Py_XSETREF(self->write, write);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_XINCREF(types == Py_None ? NULL : types);
    Py_XSETREF(self->types, types == Py_None ? NULL : types);
    if (self->buffer == NULL) {
        self->buffer = PyMem_Malloc(FLUSH_AT);
        if (self->buffer == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->capacity = FLUSH_AT;
    }
    self->length = 0;
    self->vectorcall = line_writer_call;
    return 0;
}

static PyObject *line_writer_flush(PyObject *self, PyObject *unused)
{
    LineWriter *writer = (LineWriter *)self;
    (void)unused;
    if (writer->failure != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(writer->failure), writer->failure);
        return NULL;
    }
    if (writer->write == NULL) {
        PyErr_SetString(PyExc_ValueError, "the LineWriter was cleared");
        return NULL;
    }
    if (write_out(writer) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int line_writer_traverse(LineWriter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->write);
    Py_VISIT(self->fallback);
    Py_VISIT(self->types);
    Py_VISIT(self->failure);
    return 0;
}

static int line_writer_clear(LineWriter *self)
{
    Py_CLEAR(self->write);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->types);
    Py_CLEAR(self->failure);
    for (int i = 0; i < MEMO_SLOTS; i++)
        Py_CLEAR(self->memo[i].text);
    return 0;
}

static void line_writer_dealloc(LineWriter *self)
{
    PyObject_GC_UnTrack(self);
    line_writer_clear(self);
    PyMem_Free(self->buffer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef line_writer_methods[] = {
    {"flush", line_writer_flush, METH_NOARGS, "Write out the lines still in the buffer."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LineWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tools._tracewriter.LineWriter",
    .tp_doc = PyDoc_STR("LineWriter(write, fallback, types=None): a recorder sink writing each event as a JSON line.\n"
                        "Call flush() when the run is over: it raises what a write raised, if one failed."),
    .tp_basicsize = sizeof(LineWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)line_writer_init,
    .tp_dealloc = (destructor)line_writer_dealloc,
    .tp_traverse = (traverseproc)line_writer_traverse,
    .tp_clear = (inquiry)line_writer_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(LineWriter, vectorcall),
    .tp_methods = line_writer_methods,
};

static struct PyModuleDef tracewriter_module = {
    PyModuleDef_HEAD_INIT, "_tracewriter", "The trace writer's hot path: recorder events as JSON lines, in C.",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tracewriter(void)
{
    PyObject *module;
    if (PyType_Ready(&LineWriterType) < 0)
        return NULL;
    module = PyModule_Create(&tracewriter_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&LineWriterType);
    if (PyModule_AddObject(module, "LineWriter", (PyObject *)&LineWriterType) < 0) {
        Py_DECREF(&LineWriterType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
