/*
 * consensus._speedups: the canonical msgpack encoder of consensus/canonical.py, in C.
 *
 * Why: every state write, receipt, vote and hash goes through canonical.encode, and its
 * pure-Python half (sorting map keys, checking every value) cost ~5 of its ~7 us per value,
 * 10-15% of a node's CPU under load. This file does the same walk and writes msgpack
 * directly, with the same byte choices as msgpack-python's packb(use_bin_type=True).
 *
 * It handles only the common, unambiguous shape: exact dict (str keys), list, tuple, str,
 * bytes, int within 64 bits, bool, None, nested at most MAX_DEPTH deep. On anything else
 * (a subclass, a float, a huge int, a lone surrogate, too deep) it returns None and the
 * caller falls back to the pure-Python encoder, which either normalises the value or raises
 * the protocol's CanonicalError with its message. So this module never decides what is
 * valid: it only makes the valid, common case fast. tests/unit/test_canonical_speedups.py
 * checks it byte for byte against the pure encoder.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 32

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} buffer;

/* Returned by the walk: 0 ok, 1 not handled here (fall back), -1 Python error set. */
enum { DONE = 0, FALLBACK = 1, FAILED = -1 };

static int grow(buffer *buf, Py_ssize_t need) {
    Py_ssize_t cap = buf->cap;
    while (cap - buf->len < need) {
        cap *= 2;
    }
    char *data = PyMem_Realloc(buf->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    buf->data = data;
    buf->cap = cap;
    return DONE;
}

static inline int put(buffer *buf, const void *src, Py_ssize_t n) {
    if (buf->cap - buf->len < n && grow(buf, n) != DONE) {
        return FAILED;
    }
    memcpy(buf->data + buf->len, src, (size_t)n);
    buf->len += n;
    return DONE;
}

/* A one-byte marker followed by ``width`` big-endian bytes of ``value``. */
static inline int put_sized(buffer *buf, unsigned char marker, unsigned long long value,
                            int width) {
    unsigned char out[9];
    out[0] = marker;
    for (int i = 0; i < width; i++) {
        out[width - i] = (unsigned char)(value >> (8 * i));
    }
    return put(buf, out, width + 1);
}

static int put_signed(buffer *buf, long long v) {
    if (v >= 0) {
        unsigned long long u = (unsigned long long)v;
        if (u < 128) {
            unsigned char b = (unsigned char)u;
            return put(buf, &b, 1);
        }
        if (u < 0x100) return put_sized(buf, 0xcc, u, 1);
        if (u < 0x10000) return put_sized(buf, 0xcd, u, 2);
        if (u < 0x100000000ULL) return put_sized(buf, 0xce, u, 4);
        return put_sized(buf, 0xcf, u, 8);
    }
    if (v >= -32) {
        unsigned char b = (unsigned char)(v & 0xff);
        return put(buf, &b, 1);
    }
    if (v >= -128) return put_sized(buf, 0xd0, (unsigned long long)v, 1);
    if (v >= -32768) return put_sized(buf, 0xd1, (unsigned long long)v, 2);
    if (v >= -2147483648LL) return put_sized(buf, 0xd2, (unsigned long long)v, 4);
    return put_sized(buf, 0xd3, (unsigned long long)v, 8);
}

/* A length header: the fix form below ``fix_limit``, else 8 (if any), 16 or 32 bits. */
static int put_header(buffer *buf, Py_ssize_t n, unsigned char fix, Py_ssize_t fix_limit,
                      int has8, unsigned char m8, unsigned char m16, unsigned char m32) {
    if (n < fix_limit) {
        unsigned char b = (unsigned char)(fix | n);
        return put(buf, &b, 1);
    }
    if (has8 && n < 0x100) return put_sized(buf, m8, (unsigned long long)n, 1);
    if (n < 0x10000) return put_sized(buf, m16, (unsigned long long)n, 2);
    if ((unsigned long long)n <= 0xffffffffULL) return put_sized(buf, m32, (unsigned long long)n, 4);
    return FALLBACK;
}

/* The UTF-8 bytes of a str. An ASCII string's own buffer is used as it is; any other
 * string is converted into a new bytes object returned in *owner (released by the caller),
 * because PyUnicode_AsUTF8AndSize would attach a UTF-8 copy to the string for good. Neither
 * allocates a garbage-collected object, so no collection (and no finalizer) can run. */
static const char *utf8_of(PyObject *obj, Py_ssize_t *n, PyObject **owner) {
    *owner = NULL;
    if (PyUnicode_IS_COMPACT_ASCII(obj)) {
        *n = PyUnicode_GET_LENGTH(obj);
        return (const char *)PyUnicode_DATA(obj);
    }
    PyObject *bytes = PyUnicode_AsUTF8String(obj);
    if (bytes == NULL) {
        /* Lone surrogates: the pure encoder raises the protocol's error for them. */
        PyErr_Clear();
        return NULL;
    }
    *owner = bytes;
    *n = PyBytes_GET_SIZE(bytes);
    return PyBytes_AS_STRING(bytes);
}

static int put_utf8(buffer *buf, const char *utf8, Py_ssize_t n) {
    int rc = put_header(buf, n, 0xa0, 32, 1, 0xd9, 0xda, 0xdb);
    return rc != DONE ? rc : put(buf, utf8, n);
}

static int put_str(buffer *buf, PyObject *obj) {
    Py_ssize_t n;
    PyObject *owner;
    const char *utf8 = utf8_of(obj, &n, &owner);
    if (utf8 == NULL) {
        return FALLBACK;
    }
    int rc = put_utf8(buf, utf8, n);
    Py_XDECREF(owner);
    return rc;
}

static int walk(buffer *buf, PyObject *obj, int depth);

/* Why no Python object is created while walking: allocating a garbage-collected object
 * (a list of keys, say) can start a collection, whose finalizers may change the very
 * containers being walked. So keys are gathered into a C array and sorted with qsort, and
 * every item walked is held by a reference of our own. */
static int put_items(buffer *buf, PyObject *seq, int depth) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = put_header(buf, n, 0x90, 16, 0, 0, 0xdc, 0xdd);
    for (Py_ssize_t i = 0; rc == DONE && i < n; i++) {
        if (PySequence_Fast_GET_SIZE(seq) != n) {
            return FALLBACK;  /* changed under us: let the pure encoder see it */
        }
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(item);
        rc = walk(buf, item, depth + 1);
        Py_DECREF(item);
    }
    return rc;
}

typedef struct {
    const char *utf8;
    Py_ssize_t len;
    PyObject *owner;  /* the UTF-8 bytes object, if one was made */
    PyObject *key;
    PyObject *value;
} map_entry;

/* UTF-8 byte order, which is the code-point order the protocol specifies. */
static int compare_entries(const void *a, const void *b) {
    const map_entry *x = a, *y = b;
    Py_ssize_t common = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->utf8, y->utf8, (size_t)common);
    if (c != 0) {
        return c;
    }
    return (x->len > y->len) - (x->len < y->len);
}

static int put_map(buffer *buf, PyObject *obj, int depth) {
    Py_ssize_t n = PyDict_GET_SIZE(obj);
    if (n == 0) {
        return put_header(buf, 0, 0x80, 16, 0, 0, 0xde, 0xdf);
    }
    map_entry *entries = PyMem_Calloc((size_t)n, sizeof(map_entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    Py_ssize_t count = 0, pos = 0;
    PyObject *key, *value;
    int rc = DONE;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        if (count == n || !PyUnicode_CheckExact(key)) {
            rc = FALLBACK;  /* the pure encoder names the offending key type */
            break;
        }
        map_entry *e = &entries[count++];
        e->utf8 = utf8_of(key, &e->len, &e->owner);
        Py_INCREF(key);
        Py_INCREF(value);
        e->key = key;
        e->value = value;
        if (e->utf8 == NULL) {
            rc = FALLBACK;
            break;
        }
    }
    if (rc == DONE && count != n) {
        rc = FALLBACK;
    }
    if (rc == DONE) {
        qsort(entries, (size_t)n, sizeof(map_entry), compare_entries);
        rc = put_header(buf, n, 0x80, 16, 0, 0, 0xde, 0xdf);
    }
    for (Py_ssize_t i = 0; rc == DONE && i < n; i++) {
        rc = put_utf8(buf, entries[i].utf8, entries[i].len);
        if (rc == DONE) {
            rc = walk(buf, entries[i].value, depth + 1);
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_XDECREF(entries[i].owner);
        Py_DECREF(entries[i].key);
        Py_DECREF(entries[i].value);
    }
    PyMem_Free(entries);
    return rc;
}

static int walk(buffer *buf, PyObject *obj, int depth) {
    PyTypeObject *kind = Py_TYPE(obj);
    if (kind == &PyUnicode_Type) {
        return put_str(buf, obj);
    }
    if (kind == &PyLong_Type) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow == 0) {
            if (v == -1 && PyErr_Occurred()) {
                return FAILED;
            }
            return put_signed(buf, v);
        }
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(obj);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();  /* beyond 64 bits: the pure encoder refuses it by name */
                return FALLBACK;
            }
            return put_sized(buf, 0xcf, u, 8);
        }
        return FALLBACK;
    }
    if (kind == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(obj);
        int rc = put_header(buf, n, 0, 0, 1, 0xc4, 0xc5, 0xc6);
        return rc != DONE ? rc : put(buf, PyBytes_AS_STRING(obj), n);
    }
    if (obj == Py_None) {
        unsigned char b = 0xc0;
        return put(buf, &b, 1);
    }
    if (kind == &PyBool_Type) {
        unsigned char b = obj == Py_True ? 0xc3 : 0xc2;
        return put(buf, &b, 1);
    }
    if (depth > MAX_DEPTH) {
        return FALLBACK;  /* the pure encoder raises "nesting too deep" */
    }
    if (kind == &PyDict_Type) {
        return put_map(buf, obj, depth);
    }
    if (kind == &PyList_Type || kind == &PyTuple_Type) {
        return put_items(buf, obj, depth);
    }
    return FALLBACK;
}

PyDoc_STRVAR(encode_doc,
"encode(obj, depth=0) -> bytes | None\n\n"
"Canonical msgpack bytes of obj, or None when obj is not of the plain shape handled here\n"
"(the caller then uses the pure-Python encoder, which normalises or raises).");

static PyObject *encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "encode(obj, depth=0)");
        return NULL;
    }
    int depth = 0;
    if (nargs == 2) {
        long d = PyLong_AsLong(args[1]);
        if (d == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (d < 0 || d > MAX_DEPTH + 1) {
            Py_RETURN_NONE;
        }
        depth = (int)d;
    }
    buffer buf = {PyMem_Malloc(256), 0, 256};
    if (buf.data == NULL) {
        return PyErr_NoMemory();
    }
    int rc = walk(&buf, args[0], depth);
    PyObject *result;
    if (rc == DONE) {
        result = PyBytes_FromStringAndSize(buf.data, buf.len);
    } else if (rc == FALLBACK) {
        result = Py_NewRef(Py_None);
    } else {
        result = NULL;
    }
    PyMem_Free(buf.data);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL, encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "consensus._speedups",
    "The canonical encoder's fast path in C (see consensus/canonical.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    return PyModule_Create(&module);
}
