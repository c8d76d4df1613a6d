/*
 * node._sigcheck: check many Ed25519 signatures in one call, with the GIL released.
 *
 * Why: a node checks every transaction's signature once (~40 us each, libsodium). PyNaCl
 * releases the GIL inside each check, but a thread that returns from one needs the GIL
 * back before it can start the next, and the event loop's thread, busy in Python, gives it
 * up only every few milliseconds: checks in a second thread then crawl. Here the whole
 * batch runs in C without the GIL, so a block's checks run on a second core while its
 * other checks (execution, receipts, the state tree) run in Python (node/sigcheck.py).
 *
 * Which code checks: libsodium's crypto_sign_ed25519_verify_detached from the very
 * library PyNaCl loaded (its nacl/_sodium module exports libsodium's symbols), looked up
 * with dlopen(RTLD_NOLOAD) + dlsym by bind(). No second copy of libsodium, no new build
 * dependency, and the same verification rules as every other check in the node
 * (canonical S, small-order points refused).
 *
 * The module never decides anything about odd input: an item that is not a tuple of
 * (32-byte bytes, bytes, 64-byte bytes) is reported as not verified.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdatomic.h>

#include "_ed25519_keyed.h"

#define PUBKEY_SIZE 32
#define SIGNATURE_SIZE 64

typedef int (*verify_detached_fn)(const unsigned char *sig, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *pk);

static verify_detached_fn verify_detached = NULL;

/* Keys seen before are checked from their tables (node/_ed25519_keyed.c), which only
 * ever accept; whatever they do not accept goes to libsodium. Off until use_keyed(True). */
static _Atomic int keyed_on = 0;
static int keyed_ready = 0;

/* 0 if (sig, m, pk) verifies: as libsodium's crypto_sign_ed25519_verify_detached. */
static int check_signature(const unsigned char *sig, const unsigned char *m,
                           unsigned long long mlen, const unsigned char *pk) {
    if (!atomic_load_explicit(&keyed_on, memory_order_relaxed)) {
        return verify_detached(sig, m, mlen, pk);
    }
    int keyed = keyed_check(sig, m, (size_t)mlen, pk);
    if (keyed == KEYED_ACCEPTED) {
        return 0;
    }
    int verdict = verify_detached(sig, m, mlen, pk);
    if (verdict == 0 && keyed == KEYED_NO_TABLE) {
        keyed_note_valid(pk); /* only valid signatures earn a key its table */
    }
    return verdict;
}

typedef struct {
    const unsigned char *pubkey;
    const unsigned char *message;
    const unsigned char *signature;
    Py_ssize_t message_size;
} job;

/* bind(path): find the check in the already loaded library at ``path``. */
static PyObject *bind(PyObject *self, PyObject *arg) {
    (void)self;
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL) {
        return NULL;
    }
    /* RTLD_NOLOAD: only a library this process has loaded already (PyNaCl's). */
    void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        const char *why = dlerror();
        PyErr_Format(PyExc_OSError, "%s is not loaded: %s", path, why ? why : "?");
        return NULL;
    }
    void *symbol = dlsym(handle, "crypto_sign_ed25519_verify_detached");
    if (symbol == NULL) {
        PyErr_Format(PyExc_OSError, "%s has no crypto_sign_ed25519_verify_detached", path);
        return NULL;
    }
    keyed_sodium functions = {
        .statebytes = (size_t (*)(void))dlsym(handle, "crypto_hash_sha512_statebytes"),
        .init = (int (*)(void *))dlsym(handle, "crypto_hash_sha512_init"),
        .update = (int (*)(void *, const unsigned char *, unsigned long long))dlsym(
            handle, "crypto_hash_sha512_update"),
        .final = (int (*)(void *, unsigned char *))dlsym(handle, "crypto_hash_sha512_final"),
        .reduce = (void (*)(unsigned char *, const unsigned char *))dlsym(
            handle, "crypto_core_ed25519_scalar_reduce"),
    };
    verify_detached = (verify_detached_fn)symbol;
    if (!keyed_ready && functions.statebytes != NULL && functions.init != NULL &&
        functions.update != NULL && functions.final != NULL && functions.reduce != NULL) {
        keyed_ready = keyed_init(&functions) == 0;
    }
    Py_RETURN_NONE;
}

/* Fill ``out`` from ``item`` if it has the exact shape; 0 if it does not. (Only exact
 * tuples of exact bytes are kept alive by what follows: such objects cannot be part of a
 * reference cycle, so the holders need no garbage-collector support.) */
static int read_item(PyObject *item, job *out) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) {
        return 0;
    }
    PyObject *pubkey = PyTuple_GET_ITEM(item, 0);
    PyObject *message = PyTuple_GET_ITEM(item, 1);
    PyObject *signature = PyTuple_GET_ITEM(item, 2);
    if (!PyBytes_CheckExact(pubkey) || !PyBytes_CheckExact(message) ||
        !PyBytes_CheckExact(signature) || PyBytes_GET_SIZE(pubkey) != PUBKEY_SIZE ||
        PyBytes_GET_SIZE(signature) != SIGNATURE_SIZE) {
        return 0;
    }
    out->pubkey = (const unsigned char *)PyBytes_AS_STRING(pubkey);
    out->message = (const unsigned char *)PyBytes_AS_STRING(message);
    out->signature = (const unsigned char *)PyBytes_AS_STRING(signature);
    out->message_size = PyBytes_GET_SIZE(message);
    return 1;
}

/* Read every item of ``items`` (a list) into ``jobs`` and return a tuple holding each
 * accepted item (None in the place of a rejected one, whose job gets pubkey NULL): the
 * caller's list may change while the checks run without the GIL, the tuple may not.
 * NULL with an exception set on failure; ``jobs`` may be NULL (then NULL, no exception). */
static PyObject *hold_items(PyObject *items, job *jobs) {
    if (jobs == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    PyObject *held = PyTuple_New(count);
    if (held == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!read_item(item, &jobs[i])) {
            jobs[i].pubkey = NULL;
            item = Py_None;
        }
        Py_INCREF(item);
        PyTuple_SET_ITEM(held, i, item);
    }
    return held;
}

/* A batch two threads can work through together: each run() claims the next unchecked
 * item until none is left. The worker thread starts it; the caller's thread joins in
 * when it has done its own work, so neither sits idle while signatures remain. */
typedef struct {
    PyObject_HEAD
    PyObject *held;          /* tuple of the items: keeps their bytes alive */
    job *jobs;
    unsigned char *verified; /* one verdict per item */
    Py_ssize_t count;
    _Atomic Py_ssize_t next; /* the next item to claim */
} Batch;

static void batch_dealloc(Batch *self) {
    PyMem_Free(self->jobs);
    PyMem_Free(self->verified);
    Py_XDECREF(self->held);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* run(): check items until none is left unclaimed (GIL released); returns None. */
static PyObject *batch_run(Batch *self, PyObject *unused) {
    (void)unused;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        Py_ssize_t i = atomic_fetch_add(&self->next, 1);
        if (i >= self->count) {
            break;
        }
        job *j = &self->jobs[i];
        self->verified[i] = j->pubkey != NULL &&
                            check_signature(j->signature, j->message,
                                  (unsigned long long)j->message_size, j->pubkey) == 0;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* cancel(): leave every unclaimed item unchecked (its verdict stays 0). For a batch whose
 * block failed another check first: the worker then stops after the item it is on
 * instead of working through a batch nobody will read. */
static PyObject *batch_cancel(Batch *self, PyObject *unused) {
    (void)unused;
    atomic_store(&self->next, self->count);
    Py_RETURN_NONE;
}

/* verdicts(): one byte per item; read them only once every run() has returned (the
 * caller waits for the worker's run first: an earlier read races with the checks). */
static PyObject *batch_verdicts(Batch *self, PyObject *unused) {
    (void)unused;
    return PyBytes_FromStringAndSize((const char *)self->verified, self->count);
}

static PyMethodDef batch_methods[] = {
    {"run", (PyCFunction)batch_run, METH_NOARGS,
     "Check unclaimed items until none is left (GIL released)."},
    {"cancel", (PyCFunction)batch_cancel, METH_NOARGS,
     "Leave every unclaimed item unchecked (verdict 0)."},
    {"verdicts", (PyCFunction)batch_verdicts, METH_NOARGS,
     "One byte per item, 1 if it verified (call after every run() returned)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "node._sigcheck.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Signature checks that several threads can share.",
    .tp_methods = batch_methods,
};

/* prepare(items: list[tuple[bytes, bytes, bytes]]) -> Batch */
static PyObject *prepare(PyObject *self, PyObject *items) {
    (void)self;
    if (verify_detached == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "node._sigcheck: bind() first");
        return NULL;
    }
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "a list of (pubkey, message, signature) expected");
        return NULL;
    }
    Batch *batch = PyObject_New(Batch, &BatchType);
    if (batch == NULL) {
        return NULL;
    }
    batch->jobs = NULL;
    batch->verified = NULL;
    batch->count = 0;
    atomic_init(&batch->next, 0);
    batch->held = NULL;
    Py_ssize_t count = PyList_GET_SIZE(items);
    size_t slots = (size_t)(count > 0 ? count : 1);
    batch->jobs = PyMem_Malloc(slots * sizeof(job));
    batch->verified = PyMem_Calloc(slots, 1);
    if (batch->jobs == NULL || batch->verified == NULL) {
        Py_DECREF(batch);
        return PyErr_NoMemory();
    }
    batch->held = hold_items(items, batch->jobs);
    if (batch->held == NULL) {
        Py_DECREF(batch);
        return NULL;
    }
    batch->count = count;
    return (PyObject *)batch;
}

/* verify_many(items: list[tuple[bytes, bytes, bytes]]) -> bytes: one byte per item, 1 if
 * (pubkey, message, signature) verifies, else 0; all on this thread, GIL released. */
static PyObject *verify_many(PyObject *self, PyObject *items) {
    PyObject *batch = prepare(self, items);
    if (batch == NULL) {
        return NULL;
    }
    PyObject *done = batch_run((Batch *)batch, NULL);
    PyObject *verdicts = done == NULL ? NULL : batch_verdicts((Batch *)batch, NULL);
    Py_XDECREF(done);
    Py_DECREF(batch);
    return verdicts;
}

/* use_keyed(on: bool) -> bool: check keys seen before from their tables; True if on
 * (off when the tables could not be made: no 128-bit integers, or bind() not called). */
static PyObject *use_keyed(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    on = on && keyed_ready;
    atomic_store(&keyed_on, on);
    if (!on) {
        keyed_reset();
    }
    return PyBool_FromLong(on);
}

/* keyed_stats() -> dict of the tables' counters (accepted, deferred, built, evicted,
 * refused_keys): how many checks the tables took off libsodium. */
static PyObject *keyed_stats_py(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    keyed_counts c;
    keyed_stats(&c);
    return Py_BuildValue("{sKsKsKsKsK}", "accepted", (unsigned long long)c.accepted,
                         "deferred", (unsigned long long)c.deferred,
                         "built", (unsigned long long)c.built,
                         "evicted", (unsigned long long)c.evicted,
                         "refused_keys", (unsigned long long)c.refused_keys);
}

/* keyed_combination(s, k, pk) -> bytes | None: the encoding of [s]B + [k](-A) as the
 * tables compute it (tests compare it with an independent computation). */
static PyObject *keyed_combination_py(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer s, k, pk;
    if (!PyArg_ParseTuple(args, "y*y*y*", &s, &k, &pk)) {
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char out[32];
    if (s.len != 32 || k.len != 32 || pk.len != 32) {
        PyErr_SetString(PyExc_ValueError, "three 32-byte values expected");
    } else if (!keyed_ready ||
               keyed_combination(out, s.buf, k.buf, pk.buf) != 0) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        result = PyBytes_FromStringAndSize((const char *)out, 32);
    }
    PyBuffer_Release(&s);
    PyBuffer_Release(&k);
    PyBuffer_Release(&pk);
    return result;
}

static PyMethodDef methods[] = {
    {"use_keyed", use_keyed, METH_O, "Check keys seen before from their tables (True if on)."},
    {"keyed_stats", keyed_stats_py, METH_NOARGS, "The key tables' counters."},
    {"keyed_combination", keyed_combination_py, METH_VARARGS,
     "[s]B + [k](-A) as the key tables compute it (tests)."},
    {"bind", bind, METH_O, "Use crypto_sign_ed25519_verify_detached from this loaded library."},
    {"verify_many", verify_many, METH_O,
     "One byte per (pubkey, message, signature): 1 if it verifies (GIL released)."},
    {"prepare", prepare, METH_O, "A Batch of (pubkey, message, signature) to share out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node._sigcheck", "Many Ed25519 checks per call, without the GIL.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sigcheck(void) {
    if (PyType_Ready(&BatchType) < 0) {
        return NULL;
    }
    return PyModule_Create(&module);
}
