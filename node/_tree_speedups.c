/*
 * node._tree_speedups: the state tree's hot loops (node/state_tree.py), in C.
 *
 * Why: every block hashes each key and value it writes, re-hashes the buckets it touches
 * and every node above them: 11,000 to 21,000 SHA-256 calls for a block of 1,000 orders.
 * In Python each node hash costs ~0.6 us (dict lookups, a bytes concatenation, a hash
 * object); OpenSSL's SHA-256 (SHA-NI where the CPU has it) is ~0.1 us. The tree was ~9%
 * of a node's CPU under load.
 *
 * Like consensus/_speedups.c, this module never decides anything: for any input not in the
 * exact shape the tree itself produces (32-byte hashes, sorted unique records, indexes in
 * range, exact dict/list/bytes/int types) it returns None and the caller runs the Python
 * code, which then raises or handles the odd case as it always did.
 * tests/unit/test_tree_speedups.py checks each function against the Python code.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init/Update/Final: no per-call lookup */
#include <Python.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define HASH_SIZE 32
#define RECORD_SIZE (2 * HASH_SIZE)
#define DEPTH 16 /* node/state_tree.py DEPTH; exported, and a test checks they agree */

/* Run ``impl`` with the cyclic garbage collector off. Both functions below allocate
 * container objects (each can start a collection) while they hold borrowed pointers into
 * their arguments; a finaliser run by that collection could change those arguments under
 * them. Nothing the node passes has finalisers, but this module must be safe for any
 * input, and the functions run for milliseconds at most. */
static PyObject *without_gc(PyObject *(*impl)(PyObject *const *), PyObject *const *args) {
    int was_enabled = PyGC_Disable();
    PyObject *result = impl(args);
    if (was_enabled) {
        PyGC_Enable();
    }
    return result;
}

/* The body of a METH_FASTCALL function whose ``impl`` takes exactly ``expected``
 * arguments and runs with the collector off; ``usage`` is the TypeError for any other
 * count. */
static PyObject *call_without_gc(PyObject *(*impl)(PyObject *const *), PyObject *const *args,
                                 Py_ssize_t nargs, Py_ssize_t expected, const char *usage) {
    if (nargs != expected) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    return without_gc(impl, args);
}

typedef struct {
    Py_ssize_t index;
    unsigned char hash[HASH_SIZE];
} node;

/* RFC 6962 node hash: SHA-256(0x01 || left || right). */
static void node_hash(const unsigned char *left, const unsigned char *right,
                      unsigned char *out) {
    static const unsigned char tag = 0x01;
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &tag, 1);
    SHA256_Update(&ctx, left, HASH_SIZE);
    SHA256_Update(&ctx, right, HASH_SIZE);
    SHA256_Final(out, &ctx);
}

static int by_index(const void *a, const void *b) {
    Py_ssize_t x = ((const node *)a)->index, y = ((const node *)b)->index;
    return (x > y) - (x < y);
}

#define NUM_BUCKETS ((Py_ssize_t)1 << DEPTH)
#define PACKED_SIZE (4 + HASH_SIZE) /* one changed node: 4-byte big-endian index, hash */

/* The hashes of tree level ``level`` (a bytearray of its 2**(DEPTH - level) 32-byte node
 * hashes, side by side), or NULL if ``row`` is not exactly that. */
static unsigned char *flat_row(PyObject *row, Py_ssize_t level) {
    if (!PyByteArray_CheckExact(row)
            || PyByteArray_GET_SIZE(row) != (NUM_BUCKETS >> level) * HASH_SIZE) {
        return NULL;
    }
    return (unsigned char *)PyByteArray_AS_STRING(row);
}

/* Are ``levels`` the tree's own: a list of DEPTH + 1 rows as flat_row takes them? */
static int levels_ok(PyObject *levels) {
    if (!PyList_CheckExact(levels) || PyList_GET_SIZE(levels) != DEPTH + 1) {
        return 0;
    }
    for (Py_ssize_t level = 0; level <= DEPTH; level++) {
        if (flat_row(PyList_GET_ITEM(levels, level), level) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* The index of the packed node at ``at`` (its first 4 bytes, big-endian). */
static size_t packed_index(const unsigned char *at) {
    return (size_t)at[0] << 24 | (size_t)at[1] << 16 | (size_t)at[2] << 8 | at[3];
}

/* ``count`` nodes packed as StateDelta.nodes holds a level: index (4 bytes, big-endian)
 * then hash, in index order. */
static PyObject *packed_level(const node *nodes, Py_ssize_t count) {
    PyObject *packed = PyBytes_FromStringAndSize(NULL, count * PACKED_SIZE);
    if (packed == NULL) {
        return NULL;
    }
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(packed);
    for (Py_ssize_t i = 0; i < count; i++, at += PACKED_SIZE) {
        size_t index = (size_t)nodes[i].index;
        at[0] = (unsigned char)(index >> 24);
        at[1] = (unsigned char)(index >> 16);
        at[2] = (unsigned char)(index >> 8);
        at[3] = (unsigned char)index;
        memcpy(at + 4, nodes[i].hash, HASH_SIZE);
    }
    return packed;
}

PyDoc_STRVAR(with_parents_doc,
"with_parents(levels, bucket_nodes) -> list[bytes] | None\n\n"
"StateTree._with_parents: ``bucket_nodes`` (bucket -> new hash) and every node above them,\n"
"one packed level each (4-byte big-endian index || hash, in index order), siblings read\n"
"from ``levels`` (the committed rows, one bytearray of 32-byte hashes each). None when an\n"
"input is not of the tree's own shape.");

static PyObject *with_parents_impl(PyObject *const *args) {
    PyObject *levels = args[0], *buckets = args[1];
    if (!levels_ok(levels) || !PyDict_CheckExact(buckets)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyDict_GET_SIZE(buckets);
    if (count == 0) {
        Py_RETURN_NONE;
    }
    node *current = PyMem_Malloc((size_t)count * sizeof(node));
    if (current == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL, *out = NULL;
    Py_ssize_t pos = 0, n = 0;
    PyObject *key, *value;
    int sorted = 1;
    while (PyDict_Next(buckets, &pos, &key, &value)) {
        if (!PyLong_CheckExact(key) || !PyBytes_CheckExact(value)
                || PyBytes_GET_SIZE(value) != HASH_SIZE) {
            goto fallback;
        }
        Py_ssize_t index = PyLong_AsSsize_t(key);
        if (index == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        /* Python would wrap a negative index; such input is not the tree's own. */
        if (index < 0 || index >= NUM_BUCKETS) {
            goto fallback;
        }
        current[n].index = index;
        memcpy(current[n].hash, PyBytes_AS_STRING(value), HASH_SIZE);
        if (n > 0 && current[n - 1].index > index) {
            sorted = 0;
        }
        n++;
    }
    if (!sorted) {
        qsort(current, (size_t)n, sizeof(node), by_index);
    }
    out = PyList_New(DEPTH + 1);
    if (out == NULL) {
        goto done;
    }
    for (Py_ssize_t level = 0; level <= DEPTH; level++) {
        if (level > 0) {
            /* No Python code has run since levels_ok: the rows are as checked. */
            const unsigned char *below = flat_row(PyList_GET_ITEM(levels, level - 1),
                                                  level - 1);
            Py_ssize_t width = NUM_BUCKETS >> (level - 1), parents = 0;
            for (Py_ssize_t i = 0; i < n; i++) {
                Py_ssize_t index = current[i].index;
                const unsigned char *left, *right;
                unsigned char *mine = current[i].hash;
                if (index & 1) {
                    left = below + (index - 1) * HASH_SIZE;  /* the left sibling is unchanged */
                    right = mine;
                } else if (i + 1 < n && current[i + 1].index == index + 1) {
                    left = mine;
                    right = current[++i].hash;
                } else if (index + 1 < width) {
                    left = mine;
                    right = below + (index + 1) * HASH_SIZE;
                } else {
                    goto fallback;  /* cannot happen for indexes in range: width is even */
                }
                /* In place: parents are written at or before the child being read. */
                node_hash(left, right, current[parents].hash);
                current[parents].index = index >> 1;
                parents++;
            }
            n = parents;
        }
        PyObject *packed = packed_level(current, n);
        if (packed == NULL) {
            goto done;
        }
        PyList_SET_ITEM(out, level, packed);
    }
    result = out;
    out = NULL;
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(out);
    PyMem_Free(current);
    return result;
}

static PyObject *with_parents(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(with_parents_impl, args, nargs, 2, "with_parents(levels, bucket_nodes)");
}

PyDoc_STRVAR(set_nodes_doc,
"set_nodes(levels, nodes) -> bool | None\n\n"
"StateTree.apply's update of the committed rows: each packed node of ``nodes`` (one bytes\n"
"per level from 0, as with_parents returns them) written into its row of ``levels``.\n"
"True when done; None, with nothing written, when an input is not of the tree's shape.");

static PyObject *set_nodes_impl(PyObject *const *args) {
    PyObject *levels = args[0], *nodes = args[1];
    if (!levels_ok(levels) || !PyList_CheckExact(nodes) || PyList_GET_SIZE(nodes) > DEPTH + 1) {
        Py_RETURN_NONE;
    }
    Py_ssize_t depth = PyList_GET_SIZE(nodes);
    for (Py_ssize_t level = 0; level < depth; level++) {  /* all checked before any write */
        PyObject *packed = PyList_GET_ITEM(nodes, level);
        if (!PyBytes_CheckExact(packed) || PyBytes_GET_SIZE(packed) % PACKED_SIZE != 0) {
            Py_RETURN_NONE;
        }
        const unsigned char *at = (const unsigned char *)PyBytes_AS_STRING(packed);
        const unsigned char *end = at + PyBytes_GET_SIZE(packed);
        for (; at < end; at += PACKED_SIZE) {
            if (packed_index(at) >= (size_t)(NUM_BUCKETS >> level)) {
                Py_RETURN_NONE;
            }
        }
    }
    for (Py_ssize_t level = 0; level < depth; level++) {
        PyObject *packed = PyList_GET_ITEM(nodes, level);
        unsigned char *row = flat_row(PyList_GET_ITEM(levels, level), level);
        const unsigned char *at = (const unsigned char *)PyBytes_AS_STRING(packed);
        const unsigned char *end = at + PyBytes_GET_SIZE(packed);
        for (; at < end; at += PACKED_SIZE) {
            memcpy(row + packed_index(at) * HASH_SIZE, at + 4, HASH_SIZE);
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *set_nodes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(set_nodes_impl, args, nargs, 2, "set_nodes(levels, nodes)");
}

typedef struct {
    const unsigned char *khash;
    const unsigned char *vhash; /* NULL: delete */
} change;

static int by_khash(const void *a, const void *b) {
    return memcmp(((const change *)a)->khash, ((const change *)b)->khash, HASH_SIZE);
}

PyDoc_STRVAR(merge_bucket_doc,
"merge_bucket(records, changes) -> tuple[bytes, bytes] | None\n\n"
"A bucket's sorted ``key hash || value hash`` records after ``changes`` (key hash -> value\n"
"hash, or None to delete), and the bucket's hash (leaf hash of the records). None when\n"
"the records are not sorted unique 64-byte records or a change is not 32-byte hashes.");

/* ``records`` (a bucket's sorted unique 64-byte records) after ``changes`` (key hash ->
 * value hash or None), and the bucket's hash over the result. 1: done (``*merged`` is a
 * new reference); 0: not of the tree's shape, nothing made; -1: an error is set. */
static int merge_records(PyObject *records, PyObject *changes, PyObject **merged_out,
                         unsigned char *digest) {
    if (!PyBytes_CheckExact(records) || !PyDict_CheckExact(changes)
            || PyBytes_GET_SIZE(records) % RECORD_SIZE != 0) {
        return 0;
    }
    const unsigned char *old = (const unsigned char *)PyBytes_AS_STRING(records);
    Py_ssize_t old_count = PyBytes_GET_SIZE(records) / RECORD_SIZE;
    for (Py_ssize_t i = 1; i < old_count; i++) {
        if (memcmp(old + (i - 1) * RECORD_SIZE, old + i * RECORD_SIZE, HASH_SIZE) >= 0) {
            return 0;
        }
    }
    Py_ssize_t count = PyDict_GET_SIZE(changes);
    change *todo = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(change));
    if (todo == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0, n = 0;
    PyObject *key, *value;
    while (PyDict_Next(changes, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) != HASH_SIZE
                || (value != Py_None && (!PyBytes_CheckExact(value)
                                         || PyBytes_GET_SIZE(value) != HASH_SIZE))) {
            PyMem_Free(todo);
            return 0;
        }
        todo[n].khash = (const unsigned char *)PyBytes_AS_STRING(key);
        todo[n].vhash = value == Py_None ? NULL : (const unsigned char *)PyBytes_AS_STRING(value);
        n++;
    }
    qsort(todo, (size_t)n, sizeof(change), by_khash);  /* dict keys: unique */
    /* The result is built in place in a new bytes object, one byte before it the leaf
     * tag, so the hash is one call over one buffer and nothing is copied twice. */
    PyObject *merged = PyBytes_FromStringAndSize(NULL, (old_count + n) * RECORD_SIZE);
    if (merged == NULL) {
        PyMem_Free(todo);
        return -1;
    }
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(merged);
    unsigned char *at = start;
    Py_ssize_t i = 0, j = 0;
    while (i < old_count || j < n) {
        int order = i == old_count ? 1 : j == n ? -1
                    : memcmp(old + i * RECORD_SIZE, todo[j].khash, HASH_SIZE);
        if (order < 0) {  /* unchanged record */
            memcpy(at, old + i * RECORD_SIZE, RECORD_SIZE);
            at += RECORD_SIZE;
            i++;
            continue;
        }
        if (order == 0) {
            i++;  /* replaced or deleted */
        }
        if (todo[j].vhash != NULL) {
            memcpy(at, todo[j].khash, HASH_SIZE);
            memcpy(at + HASH_SIZE, todo[j].vhash, HASH_SIZE);
            at += RECORD_SIZE;
        }
        j++;
    }
    PyMem_Free(todo);
    static const unsigned char leaf_tag = 0x00;
    SHA256_CTX ctx;  /* not SHA256(): in OpenSSL 3 that looks the algorithm up per call */
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &leaf_tag, 1);
    SHA256_Update(&ctx, start, (size_t)(at - start));
    SHA256_Final(digest, &ctx);
    if (_PyBytes_Resize(&merged, at - start) < 0) {  /* deletes shrink it; frees on error */
        return -1;
    }
    *merged_out = merged;
    return 1;
}

static PyObject *merge_bucket(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "merge_bucket(records, changes)");
        return NULL;
    }
    PyObject *merged = NULL;
    unsigned char digest[HASH_SIZE];
    int done = merge_records(args[0], args[1], &merged, digest);
    if (done < 0) {
        return NULL;
    }
    if (done == 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(Ny#)", merged, (const char *)digest, (Py_ssize_t)HASH_SIZE);
}

typedef struct {
    long bucket;
    PyObject *key;     /* borrowed from by_bucket */
    PyObject *changes; /* borrowed from by_bucket */
} touched;

static int by_bucket_number(const void *a, const void *b) {
    long x = ((const touched *)a)->bucket, y = ((const touched *)b)->bucket;
    return (x > y) - (x < y);
}

PyDoc_STRVAR(merge_buckets_doc,
"merge_buckets(by_bucket, cache, bucket_level, empty) -> tuple | None\n\n"
"StateTree.preview's loop over the touched buckets, in bucket order: for each bucket of\n"
"``by_bucket`` (bucket -> {key hash: value hash or None}) whose committed records are in\n"
"``cache`` (an OrderedDict, bucket -> records; each one found is moved to its end) or,\n"
"``bucket_level`` being the tree's bucket row (a bytearray of 32-byte hashes; None: cache\n"
"off), whose committed hash is ``empty`` (so it holds nothing), its records after the\n"
"changes and its new hash.\n"
"Returns (after, bucket_nodes, missing, held_bytes): the merged records and hashes by\n"
"bucket, the buckets left for the caller to read (neither cached nor known empty), in\n"
"order, and the merged records' total size. None, with nothing merged, when an input is\n"
"not of the tree's own shape (the buckets found cached before that may have been moved\n"
"to the cache's end, as the Python loop that then runs moves them again, in order).");

static PyObject *merge_buckets_impl(PyObject *const *args) {
    PyObject *by_bucket = args[0], *cache = args[1], *level = args[2], *empty = args[3];
    /* Only the tree's own cache, an exact OrderedDict: a subclass's move_to_end could run
     * Python code while this loop holds borrowed pointers into the arguments. */
    if (!PyDict_CheckExact(by_bucket) || !PyODict_CheckExact(cache)
            || (level != Py_None && flat_row(level, 0) == NULL)
            || !PyBytes_CheckExact(empty) || PyBytes_GET_SIZE(empty) != HASH_SIZE) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyDict_GET_SIZE(by_bucket);
    touched *todo = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(touched));
    if (todo == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *result = NULL, *after = NULL, *nodes = NULL, *missing = NULL;
    Py_ssize_t pos = 0, n = 0, held = 0;
    PyObject *key, *value;
    int sorted = 1;
    while (PyDict_Next(by_bucket, &pos, &key, &value)) {
        if (!PyLong_CheckExact(key) || !PyDict_CheckExact(value)) {
            goto fallback;
        }
        long bucket = PyLong_AsLong(key);
        if (bucket == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        if (bucket < 0 || bucket >= NUM_BUCKETS) {
            goto fallback;
        }
        todo[n].bucket = bucket;
        todo[n].key = key;
        todo[n].changes = value;
        if (n > 0 && todo[n - 1].bucket > bucket) {
            sorted = 0;
        }
        n++;
    }
    if (!sorted) {
        qsort(todo, (size_t)n, sizeof(touched), by_bucket_number);
    }
    after = PyDict_New();
    nodes = PyDict_New();
    missing = PyList_New(0);
    if (after == NULL || nodes == NULL || missing == NULL) {
        goto done;
    }
    static PyObject *move_to_end = NULL;
    if (move_to_end == NULL && (move_to_end = PyUnicode_InternFromString("move_to_end")) == NULL) {
        goto done;
    }
    PyObject *no_records = PyBytes_FromStringAndSize(NULL, 0);  /* the shared empty bytes */
    if (no_records == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *records = PyDict_GetItemWithError(cache, todo[i].key);  /* borrowed */
        if (records == NULL && PyErr_Occurred()) {
            Py_DECREF(no_records);
            goto done;
        }
        if (records == Py_None) {
            records = NULL;  /* cache.get(bucket) is None: not cached */
        } else if (records != NULL && !PyBytes_CheckExact(records)) {
            Py_DECREF(no_records);  /* not the tree's own records: before touching it */
            goto fallback;
        }
        if (records != NULL) {
            Py_INCREF(records);  /* moving it must not free it under us */
            PyObject *moved = PyObject_CallMethodOneArg(cache, move_to_end, todo[i].key);
            if (moved == NULL) {
                Py_DECREF(records);
                Py_DECREF(no_records);
                goto done;
            }
            Py_DECREF(moved);
        } else if (level != Py_None) {
            /* Read again after move_to_end: nothing can resize the row, but no pointer
             * into it is kept across a call. */
            const unsigned char *row = flat_row(level, 0);
            if (row != NULL && memcmp(row + todo[i].bucket * HASH_SIZE,
                                      PyBytes_AS_STRING(empty), HASH_SIZE) == 0) {
                records = no_records;
                Py_INCREF(records);
            }
        }
        if (records == NULL) {
            if (PyList_Append(missing, todo[i].key) < 0) {
                Py_DECREF(no_records);
                goto done;
            }
            continue;
        }
        PyObject *merged = NULL;
        unsigned char digest[HASH_SIZE];
        int merged_ok = merge_records(records, todo[i].changes, &merged, digest);
        Py_DECREF(records);
        if (merged_ok <= 0) {
            Py_DECREF(no_records);
            if (merged_ok < 0) {
                goto done;
            }
            goto fallback;
        }
        held += PyBytes_GET_SIZE(merged);
        PyObject *hash = PyBytes_FromStringAndSize((const char *)digest, HASH_SIZE);
        int failed = hash == NULL || PyDict_SetItem(after, todo[i].key, merged) < 0
                     || PyDict_SetItem(nodes, todo[i].key, hash) < 0;
        Py_DECREF(merged);
        Py_XDECREF(hash);
        if (failed) {
            Py_DECREF(no_records);
            goto done;
        }
    }
    Py_DECREF(no_records);
    result = Py_BuildValue("(OOOn)", after, nodes, missing, held);
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(after);
    Py_XDECREF(nodes);
    Py_XDECREF(missing);
    PyMem_Free(todo);
    return result;
}

static PyObject *merge_buckets(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(merge_buckets_impl, args, nargs, 4, "merge_buckets(by_bucket, cache, bucket_level, empty)");
}

PyDoc_STRVAR(cache_buckets_doc,
"cache_buckets(cache, buckets, limit, size) -> int | None\n\n"
"StateTree._cache_buckets: put each bucket's records of ``buckets`` (bucket -> bytes) in\n"
"``cache`` (an OrderedDict; a bucket already there keeps its place, one with no records\n"
"or costing more than ``limit`` leaves it), then evict from the front until the cost is\n"
"within ``limit``; a bucket costs 1 + its records. Returns the new total cost, given the\n"
"one before (``size``). None, with nothing changed, when an input is not of the tree's\n"
"own shape.");

/* What a cached bucket counts against the bound: itself and each 64-byte record; -1 with
 * an error set if its length cannot be taken (len() of it raising, as in Python). */
static Py_ssize_t bucket_cost(PyObject *records) {
    Py_ssize_t size = PyBytes_CheckExact(records) ? PyBytes_GET_SIZE(records)
                                                  : PyObject_Length(records);
    return size < 0 ? -1 : 1 + size / RECORD_SIZE;
}

static PyObject *cache_buckets_impl(PyObject *const *args) {
    PyObject *cache = args[0], *buckets = args[1];
    /* Only the tree's own cache, an exact OrderedDict: it evicts in order, and a subclass's
     * methods could run Python code while this loop holds borrowed pointers. */
    if (!PyODict_CheckExact(cache) || !PyDict_CheckExact(buckets)
            || !PyLong_CheckExact(args[2]) || !PyLong_CheckExact(args[3])) {
        Py_RETURN_NONE;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]), size = PyLong_AsSsize_t(args[3]);
    if ((limit == -1 || size == -1) && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(buckets, &pos, &key, &value)) {  /* all checked before any change */
        if (!PyLong_CheckExact(key) || !PyBytes_CheckExact(value)) {
            Py_RETURN_NONE;
        }
        /* What each replaces must be the tree's own records too (or None, not cached):
         * taking the length of, or dropping, anything else could run Python code. */
        PyObject *old = PyDict_GetItemWithError(cache, key);  /* an int key: no Python code */
        if (old == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (old != NULL && old != Py_None && !PyBytes_CheckExact(old)) {
            Py_RETURN_NONE;
        }
    }
    static PyObject *popitem = NULL;
    if (popitem == NULL && (popitem = PyUnicode_InternFromString("popitem")) == NULL) {
        return NULL;
    }
    pos = 0;
    while (PyDict_Next(buckets, &pos, &key, &value)) {
        Py_ssize_t cost = bucket_cost(value);
        int keep = cost <= limit && PyBytes_GET_SIZE(value) > 0;
        PyObject *old = PyDict_GetItemWithError(cache, key);  /* borrowed */
        if (old == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (old != NULL && old != Py_None) {  /* cache.get(bucket) is not None */
            size -= bucket_cost(old);  /* exact bytes, checked above */
            if (!keep) {
                if (PyObject_DelItem(cache, key) < 0) {
                    return NULL;
                }
                continue;
            }
        } else if (!keep) {
            continue;  /* too big, or empty (known from its hash) */
        }
        /* Through the OrderedDict's own assignment: a replaced bucket keeps its place. */
        if (PyObject_SetItem(cache, key, value) < 0) {
            return NULL;
        }
        size += cost;
    }
    while (size > limit) {
        PyObject *item = PyObject_CallMethodOneArg(cache, popitem, Py_False);
        if (item == NULL) {
            return NULL;
        }
        Py_ssize_t evicted_cost = bucket_cost(PyTuple_GET_ITEM(item, 1));
        Py_DECREF(item);
        if (evicted_cost < 0) {
            return NULL;
        }
        size -= evicted_cost;
    }
    return PyLong_FromSsize_t(size);
}

static PyObject *cache_buckets(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(cache_buckets_impl, args, nargs, 4, "cache_buckets(cache, buckets, limit, size)");
}

static void sha256(const char *data, Py_ssize_t size, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, (size_t)size);
    SHA256_Final(out, &ctx);
}

PyDoc_STRVAR(hash_writes_doc,
"hash_writes(writes, leaf_prefix) -> tuple[dict, dict] | None\n\n"
"The first half of StateTree.preview: for ``writes`` (state key -> value, or None to\n"
"delete) the leaf writes (leaf_prefix + SHA-256(key) -> SHA-256(value) or None) and the\n"
"same changes grouped by bucket (first two bytes of the key hash -> {key hash: value\n"
"hash or None}). None when a key or value is not exactly bytes (or None).");

static PyObject *hash_writes_impl(PyObject *const *args) {
    PyObject *writes = args[0], *prefix = args[1];
    if (!PyDict_CheckExact(writes) || !PyBytes_CheckExact(prefix)
            || PyBytes_GET_SIZE(prefix) > 64) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(writes, &pos, &key, &value)) {  /* check all first: no half work */
        if (!PyBytes_CheckExact(key) || (value != Py_None && !PyBytes_CheckExact(value))) {
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t cut = PyBytes_GET_SIZE(prefix);
    unsigned char leaf[64 + HASH_SIZE];
    memcpy(leaf, PyBytes_AS_STRING(prefix), (size_t)cut);
    PyObject *leaf_writes = PyDict_New();
    PyObject *by_bucket = PyDict_New();
    if (leaf_writes == NULL || by_bucket == NULL) {
        goto failed;
    }
    pos = 0;
    while (PyDict_Next(writes, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(key) || (value != Py_None && !PyBytes_CheckExact(value))) {
            Py_DECREF(leaf_writes);  /* checked above; only a changed dict gets here */
            Py_DECREF(by_bucket);
            Py_RETURN_NONE;
        }
        unsigned char *khash = leaf + cut;
        sha256(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), khash);
        PyObject *vhash;
        if (value == Py_None) {
            vhash = Py_None;
            Py_INCREF(vhash);
        } else {
            unsigned char digest[HASH_SIZE];
            sha256(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), digest);
            vhash = PyBytes_FromStringAndSize((const char *)digest, HASH_SIZE);
        }
        PyObject *leaf_key = PyBytes_FromStringAndSize((const char *)leaf, cut + HASH_SIZE);
        PyObject *khash_obj = PyBytes_FromStringAndSize((const char *)khash, HASH_SIZE);
        PyObject *bucket = PyLong_FromLong((long)(khash[0] << 8 | khash[1]));
        int failed = vhash == NULL || leaf_key == NULL || khash_obj == NULL || bucket == NULL
                     || PyDict_SetItem(leaf_writes, leaf_key, vhash) < 0;
        if (!failed) {
            PyObject *changes = PyDict_GetItemWithError(by_bucket, bucket);  /* borrowed */
            if (changes == NULL && !PyErr_Occurred()) {
                changes = PyDict_New();
                failed = changes == NULL || PyDict_SetItem(by_bucket, bucket, changes) < 0;
                Py_XDECREF(changes);  /* by_bucket holds it now (or it failed) */
            }
            failed = failed || changes == NULL || PyDict_SetItem(changes, khash_obj, vhash) < 0;
        }
        Py_XDECREF(vhash);
        Py_XDECREF(leaf_key);
        Py_XDECREF(khash_obj);
        Py_XDECREF(bucket);
        if (failed) {
            goto failed;
        }
    }
    return Py_BuildValue("(NN)", leaf_writes, by_bucket);
failed:
    Py_XDECREF(leaf_writes);
    Py_XDECREF(by_bucket);
    return NULL;
}

static PyObject *hash_writes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(hash_writes_impl, args, nargs, 2, "hash_writes(writes, leaf_prefix)");
}

/* RFC 6962 leaf hash, SHA-256(0x00 || data) (node.merkle.leaf_hash): a block root's
 * leaves, and a bucket's hash over its records. */
static void leaf_digest(const unsigned char *data, size_t size, unsigned char *out) {
    static const unsigned char leaf_tag = 0x00;
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &leaf_tag, 1);
    SHA256_Update(&ctx, data, size);
    SHA256_Final(out, &ctx);
}

PyDoc_STRVAR(merkle_root_doc,
"merkle_root(items) -> bytes | None\n\n"
"The RFC 6962 root over ``items`` (leaf data), as node.merkle.merkle_root computes it:\n"
"a block's txs_root and results_root. None when ``items`` is not a list of exactly bytes.");

/* Bottom-up: hash pairs left to right, carry an odd last node up unchanged. That builds the
 * same tree as RFC 6962's split at the largest power of two below n (complete subtrees of
 * 2^j leaves from the left); tests compare the two for every size up to a few hundred. */
static PyObject *merkle_root(PyObject *self, PyObject *items) {
    (void)self;
    if (!PyList_CheckExact(items)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(items, i))) {
            Py_RETURN_NONE;
        }
    }
    unsigned char root[HASH_SIZE];
    if (count == 0) {
        SHA256((const unsigned char *)"", 0, root);
        return PyBytes_FromStringAndSize((const char *)root, HASH_SIZE);
    }
    unsigned char *level = PyMem_Malloc((size_t)count * HASH_SIZE);
    if (level == NULL) {
        return PyErr_NoMemory();
    }
    /* No Python call and no allocation of Python objects from here to the end of the
     * reads: the list and its bytes cannot change under us. */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        leaf_digest((const unsigned char *)PyBytes_AS_STRING(item),
                    (size_t)PyBytes_GET_SIZE(item), level + i * HASH_SIZE);
    }
    while (count > 1) {
        Py_ssize_t out = 0;
        for (Py_ssize_t i = 0; i + 1 < count; i += 2, out++) {
            /* In place: node out is written after nodes i, i+1 (out <= i) are read. */
            node_hash(level + i * HASH_SIZE, level + (i + 1) * HASH_SIZE,
                      level + out * HASH_SIZE);
        }
        if (count % 2) {
            memmove(level + out * HASH_SIZE, level + (count - 1) * HASH_SIZE, HASH_SIZE);
            out++;
        }
        count = out;
    }
    memcpy(root, level, HASH_SIZE);
    PyMem_Free(level);
    return PyBytes_FromStringAndSize((const char *)root, HASH_SIZE);
}

/* A growable buffer of bytes (PyMem): the records of a bucket, or of a whole state. */
typedef struct {
    unsigned char *data;
    size_t size, capacity;
} buffer;

static int buffer_add(buffer *buf, const unsigned char *data, size_t size) {
    if (size > (size_t)PY_SSIZE_T_MAX - buf->size) {
        PyErr_NoMemory();
        return -1;
    }
    if (buf->size + size > buf->capacity) {
        size_t capacity = buf->capacity ? buf->capacity : 4096;
        while (capacity < buf->size + size) {
            capacity = capacity > (size_t)PY_SSIZE_T_MAX / 2 ? (size_t)PY_SSIZE_T_MAX
                                                             : capacity * 2;
        }
        unsigned char *grown = PyMem_Realloc(buf->data, capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        buf->data = grown;
        buf->capacity = capacity;
    }
    memcpy(buf->data + buf->size, data, size);
    buf->size += size;
    return 0;
}

/* ``skip`` as the number of key bytes to cut: an exact int from 0 to 1 KiB, else
 * TypeError / ValueError (a caller's bug, never a shape of the data). */
static int read_skip(PyObject *arg, Py_ssize_t *skip) {
    if (!PyLong_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "skip must be an int");
        return -1;
    }
    *skip = PyLong_AsSsize_t(arg);
    if (*skip == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*skip < 0 || *skip > 1024) {
        PyErr_SetString(PyExc_ValueError, "skip must be 0 to 1024");
        return -1;
    }
    return 0;
}

/* The arguments (entries, skip) of the two functions below: an iterator over ``entries``
 * and ``*skip``; NULL with an error set if they are not that. */
static PyObject *entries_of(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                            Py_ssize_t *skip) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (read_skip(args[1], skip) < 0) {
        return NULL;
    }
    return PyObject_GetIter(args[0]);
}

/* The next (key, value) of ``iterator``, a new reference in ``*item`` whose bytes the
 * pointers point into; 1 when there is one, 0 at the end, -1 on an error (set), 2 when it
 * is not a pair of exact bytes. Tuples of bytes cannot change while ``*item`` is held. */
static int next_pair(PyObject *iterator, PyObject **item, const char **key, Py_ssize_t *ksize,
                     const char **value, Py_ssize_t *vsize) {
    *item = PyIter_Next(iterator);
    if (*item == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!PyTuple_CheckExact(*item) || PyTuple_GET_SIZE(*item) != 2
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(*item, 0))
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(*item, 1))) {
        return 2;
    }
    *key = PyBytes_AS_STRING(PyTuple_GET_ITEM(*item, 0));
    *ksize = PyBytes_GET_SIZE(PyTuple_GET_ITEM(*item, 0));
    *value = PyBytes_AS_STRING(PyTuple_GET_ITEM(*item, 1));
    *vsize = PyBytes_GET_SIZE(PyTuple_GET_ITEM(*item, 1));
    return 1;
}

/* bucket -> its hash into ``hashes``, and -> its records into ``records`` unless NULL. */
static int emit_bucket(PyObject *records_by_bucket, PyObject *hash_by_bucket, long bucket,
                       const unsigned char *data, size_t size) {
    unsigned char digest[HASH_SIZE];
    leaf_digest(data, size, digest);
    PyObject *key = PyLong_FromLong(bucket);
    PyObject *hash = PyBytes_FromStringAndSize((const char *)digest, HASH_SIZE);
    PyObject *records = records_by_bucket == NULL ? NULL
        : PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    int failed = key == NULL || hash == NULL
                 || (records_by_bucket != NULL && records == NULL)
                 || PyDict_SetItem(hash_by_bucket, key, hash) < 0
                 || (records_by_bucket != NULL
                     && PyDict_SetItem(records_by_bucket, key, records) < 0);
    Py_XDECREF(key);
    Py_XDECREF(records);
    Py_XDECREF(hash);
    return failed ? -1 : 0;
}

PyDoc_STRVAR(leaf_buckets_doc,
"leaf_buckets(entries, skip) -> tuple[dict, dict] | None\n\n"
"The leaf index read whole (StateTree.load): ``entries`` yields (key, value) in key order,\n"
"each key ``skip`` bytes of prefix then a 32-byte key hash, each value a 32-byte value\n"
"hash. Returns (bucket -> its records: key hash || value hash, in order; bucket -> its\n"
"hash, SHA-256(0x00 || records)). None (the iterator partly read) when an entry has\n"
"another shape or the key hashes are not strictly increasing: the caller reads again.\n"
"An error raised by the iterator is raised.");

static PyObject *leaf_buckets(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_ssize_t skip;
    PyObject *iterator = entries_of(args, nargs, "leaf_buckets(entries, skip)", &skip);
    if (iterator == NULL) {
        return NULL;
    }
    PyObject *records_by_bucket = PyDict_New();
    PyObject *hash_by_bucket = PyDict_New();
    buffer buf = {NULL, 0, 0};
    unsigned char previous[HASH_SIZE];
    long bucket = -1;  /* none yet; then the bucket of ``previous`` */
    int shape_ok = 1;
    int failed = records_by_bucket == NULL || hash_by_bucket == NULL;
    while (!failed) {
        PyObject *item;
        const char *key, *value;
        Py_ssize_t ksize, vsize;
        int got = next_pair(iterator, &item, &key, &ksize, &value, &vsize);
        if (got <= 0) {
            failed = got < 0;
            break;
        }
        if (got == 2 || ksize - HASH_SIZE != skip || vsize != HASH_SIZE
                || (bucket >= 0 && memcmp(previous, key + skip, HASH_SIZE) >= 0)) {
            Py_DECREF(item);
            shape_ok = 0;
            break;
        }
        const unsigned char *khash = (const unsigned char *)key + skip;
        long this_bucket = (long)(khash[0] << 8 | khash[1]);
        if (this_bucket != bucket && bucket >= 0) {
            failed = emit_bucket(records_by_bucket, hash_by_bucket, bucket, buf.data,
                                 buf.size) < 0;
            buf.size = 0;
        }
        bucket = this_bucket;
        memcpy(previous, khash, HASH_SIZE);
        failed = failed || buffer_add(&buf, khash, HASH_SIZE) < 0
                 || buffer_add(&buf, (const unsigned char *)value, HASH_SIZE) < 0;
        Py_DECREF(item);
    }
    if (!failed && shape_ok && bucket >= 0) {
        failed = emit_bucket(records_by_bucket, hash_by_bucket, bucket, buf.data,
                             buf.size) < 0;
    }
    PyMem_Free(buf.data);
    Py_DECREF(iterator);
    if (failed || !shape_ok) {
        Py_XDECREF(records_by_bucket);
        Py_XDECREF(hash_by_bucket);
        if (failed) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NN)", records_by_bucket, hash_by_bucket);
}

static int by_record(const void *a, const void *b) {
    return memcmp(a, b, RECORD_SIZE);
}

PyDoc_STRVAR(state_buckets_doc,
"state_buckets(entries, skip) -> tuple[dict, dict] | None\n\n"
"The tree's buckets as the stored values give them (StateTree.from_state, at start-up):\n"
"for each (key, value) of ``entries``, the record SHA-256(key[skip:]) || SHA-256(value);\n"
"the records sorted and grouped by bucket (first two bytes). Returns (bucket -> its\n"
"records, in order; bucket -> SHA-256(0x00 || records)) for every bucket that holds one,\n"
"the shape leaf_buckets returns. None (the iterator partly read) when an entry is not a\n"
"pair of exact bytes or a key is shorter than ``skip``. An error raised by the iterator\n"
"is raised.");

static PyObject *state_buckets(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_ssize_t skip;
    PyObject *iterator = entries_of(args, nargs, "state_buckets(entries, skip)", &skip);
    if (iterator == NULL) {
        return NULL;
    }
    buffer buf = {NULL, 0, 0};
    int failed = 0, shape_ok = 1;
    for (;;) {
        PyObject *item;
        const char *key, *value;
        Py_ssize_t ksize, vsize;
        int got = next_pair(iterator, &item, &key, &ksize, &value, &vsize);
        if (got <= 0) {
            failed = got < 0;
            break;
        }
        if (got == 2 || ksize < skip) {
            Py_DECREF(item);
            shape_ok = 0;
            break;
        }
        unsigned char record[RECORD_SIZE];
        sha256(key + skip, ksize - skip, record);
        sha256(value, vsize, record + HASH_SIZE);
        Py_DECREF(item);
        if (buffer_add(&buf, record, RECORD_SIZE) < 0) {
            failed = 1;
            break;
        }
    }
    Py_DECREF(iterator);
    PyObject *records = NULL, *hashes = NULL;
    if (!failed && shape_ok) {
        size_t count = buf.size / RECORD_SIZE;
        if (count > 1) {
            qsort(buf.data, count, RECORD_SIZE, by_record);
        }
        records = PyDict_New();
        hashes = PyDict_New();
        failed = records == NULL || hashes == NULL;
        size_t first = 0;
        for (size_t i = 1; !failed && i <= count; i++) {
            const unsigned char *at = buf.data + first * RECORD_SIZE;
            if (i == count || memcmp(at, buf.data + i * RECORD_SIZE, 2) != 0) {
                failed = emit_bucket(records, hashes, (long)(at[0] << 8 | at[1]), at,
                                     (i - first) * RECORD_SIZE) < 0;
                first = i;
            }
        }
    }
    PyMem_Free(buf.data);
    if (failed) {
        Py_XDECREF(records);
        Py_XDECREF(hashes);
        return NULL;
    }
    if (!shape_ok) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NN)", records, hashes);
}

/* The canonical layout of a transaction's last two map entries (node/tx.py): keys sort,
 * so a 7-entry map ends with "sig" (a 64-byte bin) then "signer" (a 32-byte bin). */
static const unsigned char SIG_ENTRY[] = {0xa3, 's', 'i', 'g', 0xc4, 0x40};
static const unsigned char SIGNER_ENTRY[] = {0xa6, 's', 'i', 'g', 'n', 'e', 'r', 0xc4, 0x20};
#define SIG_SIZE 64
#define SIGNER_SIZE 32
#define SIG_ENTRY_SIZE ((Py_ssize_t)sizeof(SIG_ENTRY) + SIG_SIZE)
#define SIGNER_ENTRY_SIZE ((Py_ssize_t)sizeof(SIGNER_ENTRY) + SIGNER_SIZE)

/* (hash, sig, signer, signed bytes) of one transaction laid out canonically, a new
 * reference; Py_None (new reference) if ``raw`` is not such bytes; NULL on an error. */
static PyObject *certified_parts(PyObject *raw, const char *prefix, Py_ssize_t prefix_size) {
    if (!PyBytes_CheckExact(raw)) {
        Py_RETURN_NONE;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(raw);
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    if (size < 1 + SIG_ENTRY_SIZE + SIGNER_ENTRY_SIZE || data[0] != 0x87) {
        Py_RETURN_NONE;
    }
    Py_ssize_t sig_at = size - SIG_ENTRY_SIZE - SIGNER_ENTRY_SIZE;
    Py_ssize_t signer_at = size - SIGNER_ENTRY_SIZE;
    if (memcmp(data + sig_at, SIG_ENTRY, sizeof(SIG_ENTRY)) != 0
            || memcmp(data + signer_at, SIGNER_ENTRY, sizeof(SIGNER_ENTRY)) != 0) {
        Py_RETURN_NONE;
    }
    /* prefix || 0x86 (a 6-entry map) || the entries before "sig" || the "signer" entry:
     * the signed body, exactly as node.tx.body_from_encoded cuts it. */
    Py_ssize_t head = sig_at - 1;
    PyObject *signed_bytes = PyBytes_FromStringAndSize(
        NULL, prefix_size + 1 + head + SIGNER_ENTRY_SIZE);
    if (signed_bytes == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(signed_bytes);
    memcpy(out, prefix, (size_t)prefix_size);
    out[prefix_size] = (char)0x86;
    memcpy(out + prefix_size + 1, data + 1, (size_t)head);
    memcpy(out + prefix_size + 1 + head, data + signer_at, (size_t)SIGNER_ENTRY_SIZE);
    unsigned char digest[HASH_SIZE];
    sha256(out, PyBytes_GET_SIZE(signed_bytes), digest);
    PyObject *parts = Py_BuildValue(
        "(y#y#y#N)", (const char *)digest, (Py_ssize_t)HASH_SIZE,
        (const char *)data + sig_at + sizeof(SIG_ENTRY), (Py_ssize_t)SIG_SIZE,
        (const char *)data + size - SIGNER_SIZE, (Py_ssize_t)SIGNER_SIZE, signed_bytes);
    return parts;  /* "N" took signed_bytes, also when the build failed */
}

PyDoc_STRVAR(certified_tx_parts_doc,
"certified_tx_parts(raws, prefix) -> list | None\n\n"
"For each of a synced block's transactions (node.tx.Transaction.decode_certified_many):\n"
"(SHA-256(prefix || body), sig, signer, prefix || body), where body is the transaction\n"
"without its \"sig\" entry (node.tx.body_from_encoded) and prefix the signing prefix of\n"
"its chain; None for an item that is not bytes laid out that way (the caller decodes it\n"
"fully). None when ``raws`` is not a list or ``prefix`` not bytes of at most 1 KiB.");

static PyObject *certified_tx_parts_impl(PyObject *const *args) {
    PyObject *raws = args[0], *prefix = args[1];
    if (!PyList_CheckExact(raws) || !PyBytes_CheckExact(prefix)
            || PyBytes_GET_SIZE(prefix) > 1024) {
        Py_RETURN_NONE;
    }
    /* With the collector off (call_without_gc) and the GIL held throughout, no other code
     * runs while the list is read: its size and items stay as they are. */
    Py_ssize_t count = PyList_GET_SIZE(raws);
    PyObject *out = PyList_New(count);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *parts = certified_parts(PyList_GET_ITEM(raws, i), PyBytes_AS_STRING(prefix),
                                          PyBytes_GET_SIZE(prefix));
        if (parts == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, parts);
    }
    return out;
}

static PyObject *certified_tx_parts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(certified_tx_parts_impl, args, nargs, 2,
                           "certified_tx_parts(raws, prefix)");
}

PyDoc_STRVAR(writes_from_pairs_doc,
"writes_from_pairs(pairs) -> dict | None\n\n"
"A synced block's state writes from its diff's wire form (node.recent_diffs.diff_from_wire):\n"
"{key: value} for a list of [key, value] lists, each key bytes and distinct, each value\n"
"bytes or None. None for anything else: the Python loop then names what is wrong.");

static PyObject *writes_from_pairs_impl(PyObject *const *args) {
    PyObject *pairs = args[0];
    if (!PyList_CheckExact(pairs)) {
        Py_RETURN_NONE;
    }
    /* With the collector off (call_without_gc) and the GIL held, nothing else runs while
     * the list is read; dict insertions of exact bytes keys run no Python code. */
    Py_ssize_t count = PyList_GET_SIZE(pairs);
    PyObject *writes = _PyDict_NewPresized(count < 65536 ? count : 65536);
    if (writes == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i);
        if (!PyList_CheckExact(pair) || PyList_GET_SIZE(pair) != 2) {
            goto aside;
        }
        PyObject *key = PyList_GET_ITEM(pair, 0), *value = PyList_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(key) || (value != Py_None && !PyBytes_CheckExact(value))) {
            goto aside;
        }
        Py_ssize_t before = PyDict_GET_SIZE(writes);
        if (PyDict_SetItem(writes, key, value) < 0) {
            Py_DECREF(writes);
            return NULL;
        }
        if (PyDict_GET_SIZE(writes) == before) {
            goto aside;  /* a repeated key */
        }
    }
    return writes;
aside:
    Py_DECREF(writes);
    Py_RETURN_NONE;
}

static PyObject *writes_from_pairs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    return call_without_gc(writes_from_pairs_impl, args, nargs, 1, "writes_from_pairs(pairs)");
}

static PyMethodDef methods[] = {
    {"merkle_root", merkle_root, METH_O, merkle_root_doc},
    {"certified_tx_parts", (PyCFunction)(void (*)(void))certified_tx_parts, METH_FASTCALL,
     certified_tx_parts_doc},
    {"hash_writes", (PyCFunction)(void (*)(void))hash_writes, METH_FASTCALL, hash_writes_doc},
    {"writes_from_pairs", (PyCFunction)(void (*)(void))writes_from_pairs, METH_FASTCALL,
     writes_from_pairs_doc},
    {"set_nodes", (PyCFunction)(void (*)(void))set_nodes, METH_FASTCALL, set_nodes_doc},
    {"with_parents", (PyCFunction)(void (*)(void))with_parents, METH_FASTCALL,
     with_parents_doc},
    {"merge_bucket", (PyCFunction)(void (*)(void))merge_bucket, METH_FASTCALL,
     merge_bucket_doc},
    {"merge_buckets", (PyCFunction)(void (*)(void))merge_buckets, METH_FASTCALL,
     merge_buckets_doc},
    {"cache_buckets", (PyCFunction)(void (*)(void))cache_buckets, METH_FASTCALL,
     cache_buckets_doc},
    {"leaf_buckets", (PyCFunction)(void (*)(void))leaf_buckets, METH_FASTCALL,
     leaf_buckets_doc},
    {"state_buckets", (PyCFunction)(void (*)(void))state_buckets, METH_FASTCALL,
     state_buckets_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node._tree_speedups",
    "The state tree's hot loops in C (see node/state_tree.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tree_speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "DEPTH", DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
