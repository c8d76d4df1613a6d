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
 *
 * The decoder below is the same idea the other way round: canonical.decode's reference is
 * msgpack's unpacker followed by a full re-encode compared with the input, which for a
 * node's commonest inputs (a transaction, a block, a sync message) cost about as much as
 * the unpacking itself. Here one pass builds the value and checks each byte choice as it
 * reads it. Anything it does not accept as canonical (a non-minimal length or integer,
 * unsorted or repeated keys, a float, an ext, invalid UTF-8, trailing or missing bytes,
 * too deep) makes it step aside, and the reference path decides and names the error:
 * accepted here implies accepted there, with an equal value
 * (tests/unit/test_canonical_decoder.py).
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

/* --- the decoder ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
    /* The least number of bytes the open containers still need after the value being
     * read (one per array item, two per map entry, one for a key's value): a count is
     * believed only if what is left covers it and this, so nested headers cannot each
     * claim the whole input and have large lists allocated for it. */
    unsigned long long owed;
    int stepped_aside;  /* not canonical, or not handled here: the reference path decides */
} reader;

/* NULL with no exception set: step aside (the caller checks PyErr_Occurred). */
static PyObject *aside(reader *r) {
    r->stepped_aside = 1;
    return NULL;
}

static inline int have(const reader *r, unsigned long long n) {
    return (unsigned long long)(r->end - r->at) >= n;
}

static inline unsigned long long read_be(reader *r, int width) {
    unsigned long long v = 0;
    for (int i = 0; i < width; i++) {
        v = (v << 8) | r->at[i];
    }
    r->at += width;
    return v;
}

/* A length after a 1-, 2- or 4-byte marker, refused (-1) unless it is the smallest form
 * the encoder would have chosen: at least ``minimum`` (the previous form's limit). */
static long long read_length(reader *r, int width, unsigned long long minimum) {
    if (!have(r, (unsigned long long)width)) {
        return -1;
    }
    unsigned long long n = read_be(r, width);
    if (n < minimum) {
        return -1;
    }
    return (long long)n;
}

static PyObject *read_value(reader *r, int depth);

static PyObject *read_str(reader *r, long long n) {
    if (n < 0 || !have(r, (unsigned long long)n)) {
        return aside(r);
    }
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->at, (Py_ssize_t)n, "strict");
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            return NULL;
        }
        PyErr_Clear();  /* invalid UTF-8 or a surrogate: msgpack raises, named there */
        return aside(r);
    }
    r->at += n;
    return s;
}

static PyObject *read_bin(reader *r, long long n) {
    if (n < 0 || !have(r, (unsigned long long)n)) {
        return aside(r);
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)r->at, (Py_ssize_t)n);
    if (b != NULL) {
        r->at += n;
    }
    return b;
}

static PyObject *read_array(reader *r, long long n, int depth) {
    /* Every item takes at least a byte: a count beyond what is left (after what the
     * enclosing containers still need) is refused before anything is allocated for it. */
    if (n < 0 || !have(r, (unsigned long long)n + r->owed) || depth > MAX_DEPTH) {
        return aside(r);
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        return NULL;
    }
    unsigned long long owed = r->owed;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
        r->owed = owed + (unsigned long long)(n - 1 - i);
        PyObject *item = read_value(r, depth + 1);
        r->owed = owed;
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* A map key: a str, after the previous key in UTF-8 byte order (so also not equal). */
static PyObject *read_key(reader *r, const unsigned char **prev, Py_ssize_t *prev_len) {
    if (!have(r, 1)) {
        return aside(r);
    }
    unsigned char m = *r->at++;
    long long n;
    if ((m & 0xe0) == 0xa0) {
        n = m & 0x1f;
    } else if (m == 0xd9) {
        n = read_length(r, 1, 32);
    } else if (m == 0xda) {
        n = read_length(r, 2, 0x100);
    } else if (m == 0xdb) {
        n = read_length(r, 4, 0x10000);
    } else {
        return aside(r);  /* not a str key */
    }
    if (n < 0 || !have(r, (unsigned long long)n)) {
        return aside(r);
    }
    const unsigned char *utf8 = r->at;
    if (*prev != NULL) {
        Py_ssize_t common = *prev_len < (Py_ssize_t)n ? *prev_len : (Py_ssize_t)n;
        int c = memcmp(*prev, utf8, (size_t)common);
        if (c > 0 || (c == 0 && *prev_len >= (Py_ssize_t)n)) {
            return aside(r);  /* out of order or repeated */
        }
    }
    PyObject *key = read_str(r, n);
    if (key == NULL) {
        return NULL;
    }
    /* Not interned: on Python 3.12 an interned string lives for good, and a peer could
     * send any number of distinct keys. */
    *prev = utf8;
    *prev_len = (Py_ssize_t)n;
    return key;
}

static PyObject *read_map(reader *r, long long n, int depth) {
    if (n < 0 || !have(r, 2 * (unsigned long long)n + r->owed) || depth > MAX_DEPTH) {
        return aside(r);
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    const unsigned char *prev = NULL;
    Py_ssize_t prev_len = 0;
    unsigned long long owed = r->owed;
    for (long long i = 0; i < n; i++) {
        unsigned long long after = owed + 2 * (unsigned long long)(n - 1 - i);
        r->owed = after + 1;  /* this entry's value */
        PyObject *key = read_key(r, &prev, &prev_len);
        if (key == NULL) {
            r->owed = owed;
            Py_DECREF(dict);
            return NULL;
        }
        r->owed = after;
        PyObject *value = read_value(r, depth + 1);
        r->owed = owed;
        if (value == NULL) {
            Py_DECREF(key);
            Py_DECREF(dict);
            return NULL;
        }
        int rc = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* Signed forms carry only values no smaller form holds: negative ones, each below the
 * previous form's least value (the encoder writes non-negative integers unsigned). */
static PyObject *read_signed(reader *r, int width, long long least_of_smaller) {
    if (!have(r, (unsigned long long)width)) {
        return aside(r);
    }
    unsigned long long u = read_be(r, width);
    long long v;
    if (width == 8) {
        v = (long long)u;
    } else {
        unsigned long long sign = 1ULL << (8 * width - 1);
        v = (long long)(u ^ sign) - (long long)sign;
    }
    if (v >= least_of_smaller) {
        return aside(r);
    }
    return PyLong_FromLongLong(v);
}

static PyObject *read_unsigned(reader *r, int width, unsigned long long minimum) {
    if (!have(r, (unsigned long long)width)) {
        return aside(r);
    }
    unsigned long long u = read_be(r, width);
    if (u < minimum) {
        return aside(r);
    }
    return PyLong_FromUnsignedLongLong(u);
}

static PyObject *read_value(reader *r, int depth) {
    if (!have(r, 1)) {
        return aside(r);
    }
    unsigned char m = *r->at++;
    if (m <= 0x7f) {
        return PyLong_FromLong(m);
    }
    if (m >= 0xe0) {
        return PyLong_FromLong((long)m - 256);
    }
    if ((m & 0xe0) == 0xa0) {
        return read_str(r, m & 0x1f);
    }
    if ((m & 0xf0) == 0x90) {
        return read_array(r, m & 0x0f, depth);
    }
    if ((m & 0xf0) == 0x80) {
        return read_map(r, m & 0x0f, depth);
    }
    switch (m) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xc4:
        return read_bin(r, read_length(r, 1, 0));
    case 0xc5:
        return read_bin(r, read_length(r, 2, 0x100));
    case 0xc6:
        return read_bin(r, read_length(r, 4, 0x10000));
    case 0xcc:
        return read_unsigned(r, 1, 0x80);
    case 0xcd:
        return read_unsigned(r, 2, 0x100);
    case 0xce:
        return read_unsigned(r, 4, 0x10000);
    case 0xcf:
        return read_unsigned(r, 8, 0x100000000ULL);
    case 0xd0:
        return read_signed(r, 1, -32);
    case 0xd1:
        return read_signed(r, 2, -128);
    case 0xd2:
        return read_signed(r, 4, -32768);
    case 0xd3:
        return read_signed(r, 8, -2147483648LL);
    case 0xd9:
        return read_str(r, read_length(r, 1, 32));
    case 0xda:
        return read_str(r, read_length(r, 2, 0x100));
    case 0xdb:
        return read_str(r, read_length(r, 4, 0x10000));
    case 0xdc:
        return read_array(r, read_length(r, 2, 16), depth);
    case 0xdd:
        return read_array(r, read_length(r, 4, 0x10000), depth);
    case 0xde:
        return read_map(r, read_length(r, 2, 16), depth);
    case 0xdf:
        return read_map(r, read_length(r, 4, 0x10000), depth);
    default:
        return aside(r);  /* floats, ext types, the unused 0xc1 */
    }
}

PyDoc_STRVAR(decode_doc,
"decode(data, not_handled) -> object\n\n"
"The value of the canonical msgpack bytes data, or not_handled when data is not canonical\n"
"or not handled here (the caller then decodes it the reference way, which raises the\n"
"protocol's error).");

static PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, not_handled)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        return Py_NewRef(args[1]);
    }
    /* ``data`` is immutable and held by the caller for the whole call, so its buffer
     * stays put whatever a collection triggered by an allocation here runs. */
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    reader r = {start, start + PyBytes_GET_SIZE(args[0]), 0, 0};
    /* The collector stays off while lists are being filled: their empty slots must not
     * be reachable from a collection's callbacks or finalizers (gc.get_objects()). */
    int collecting = PyGC_Disable();
    PyObject *value = read_value(&r, 0);
    if (collecting) {
        PyGC_Enable();
    }
    if (value == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return Py_NewRef(args[1]);
    }
    if (r.at != r.end) {  /* trailing bytes */
        Py_DECREF(value);
        return Py_NewRef(args[1]);
    }
    return value;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL, encode_doc},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "consensus._speedups",
    "The canonical codec's fast paths in C (see consensus/canonical.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    return PyModule_Create(&module);
}
