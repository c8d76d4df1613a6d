/*
 * node._state_scan: a restarting node's pass over its stored state, through LevelDB's own
 * C API, with the GIL released throughout.
 *
 * Why: a node rebuilds its state tree at every start from the stored values (hashing each
 * one; node/state_tree.py StateTree.from_state). Through plyvel that pass holds the GIL for
 * every entry (a tuple and two bytes objects each), so it could only begin once the node's
 * modules were imported, and it was the longest step of a restart after LevelDB's own log
 * replay: ~0.3 s for 130,000 keys. Here it runs on the thread that opens the store
 * (node/store_open.py), beside the imports, with no Python object per entry.
 *
 * Which LevelDB: the very library plyvel loaded (its extension module links it; LevelDB
 * exports its C API), looked up with dlopen(RTLD_NOLOAD) + dlsym by bind(), as
 * node/_sigcheck.c finds libsodium. No second copy of LevelDB, no new build dependency.
 *
 * What it gives is exactly what node._tree_speedups.state_buckets gives for the same
 * entries (tests/node/test_state_scan.py compares them). It never decides anything about
 * the data: any error (the database cannot be opened, an iterator reports corruption, out
 * of memory) returns None, and the node then opens and reads the store as before, which
 * reports the error in its own words.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init/Update/Final: no per-call lookup */
#include <Python.h>
#include <dlfcn.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HASH_SIZE 32
#define RECORD_SIZE (2 * HASH_SIZE)

/* LevelDB's C API (leveldb/c.h), its handles as opaque pointers. */
typedef struct {
    void *(*options_create)(void);
    void (*options_destroy)(void *);
    void (*options_set_create_if_missing)(void *, uint8_t);
    void (*options_set_paranoid_checks)(void *, uint8_t);
    void (*options_set_write_buffer_size)(void *, size_t);
    void (*options_set_max_file_size)(void *, size_t);
    void (*options_set_cache)(void *, void *);
    void (*options_set_filter_policy)(void *, void *);
    void (*options_set_compression)(void *, int);
    void *(*filterpolicy_create_bloom)(int);
    void (*filterpolicy_destroy)(void *);
    void *(*cache_create_lru)(size_t);
    void (*cache_destroy)(void *);
    void *(*open)(const void *, const char *, char **);
    void (*close)(void *);
    void *(*readoptions_create)(void);
    void (*readoptions_destroy)(void *);
    void (*readoptions_set_fill_cache)(void *, uint8_t);
    void *(*create_iterator)(void *, const void *);
    void (*iter_destroy)(void *);
    uint8_t (*iter_valid)(const void *);
    void (*iter_seek)(void *, const char *, size_t);
    void (*iter_next)(void *);
    const char *(*iter_key)(const void *, size_t *);
    const char *(*iter_value)(const void *, size_t *);
    void (*iter_get_error)(const void *, char **);
    void (*free)(void *);
} leveldb_api;

static leveldb_api api;
static int bound = 0;

#define LOOKUP(field, name)                                  \
    do {                                                     \
        *(void **)(&found.field) = dlsym(handle, name);      \
        if (found.field == NULL) {                           \
            return 0;                                        \
        }                                                    \
    } while (0)

static int lookup_all(void *handle) {
    leveldb_api found;
    LOOKUP(options_create, "leveldb_options_create");
    LOOKUP(options_destroy, "leveldb_options_destroy");
    LOOKUP(options_set_create_if_missing, "leveldb_options_set_create_if_missing");
    LOOKUP(options_set_paranoid_checks, "leveldb_options_set_paranoid_checks");
    LOOKUP(options_set_write_buffer_size, "leveldb_options_set_write_buffer_size");
    LOOKUP(options_set_max_file_size, "leveldb_options_set_max_file_size");
    LOOKUP(options_set_cache, "leveldb_options_set_cache");
    LOOKUP(options_set_filter_policy, "leveldb_options_set_filter_policy");
    LOOKUP(options_set_compression, "leveldb_options_set_compression");
    LOOKUP(filterpolicy_create_bloom, "leveldb_filterpolicy_create_bloom");
    LOOKUP(filterpolicy_destroy, "leveldb_filterpolicy_destroy");
    LOOKUP(cache_create_lru, "leveldb_cache_create_lru");
    LOOKUP(cache_destroy, "leveldb_cache_destroy");
    LOOKUP(open, "leveldb_open");
    LOOKUP(close, "leveldb_close");
    LOOKUP(readoptions_create, "leveldb_readoptions_create");
    LOOKUP(readoptions_destroy, "leveldb_readoptions_destroy");
    LOOKUP(readoptions_set_fill_cache, "leveldb_readoptions_set_fill_cache");
    LOOKUP(create_iterator, "leveldb_create_iterator");
    LOOKUP(iter_destroy, "leveldb_iter_destroy");
    LOOKUP(iter_valid, "leveldb_iter_valid");
    LOOKUP(iter_seek, "leveldb_iter_seek");
    LOOKUP(iter_next, "leveldb_iter_next");
    LOOKUP(iter_key, "leveldb_iter_key");
    LOOKUP(iter_value, "leveldb_iter_value");
    LOOKUP(iter_get_error, "leveldb_iter_get_error");
    LOOKUP(free, "leveldb_free");
    api = found;
    return 1;
}

PyDoc_STRVAR(bind_doc,
"bind(path) -> bool\n\n"
"Find LevelDB's C API in the already loaded library ``path`` (plyvel's extension module,\n"
"whose dependencies dlsym searches too). False if it is not loaded or lacks a function.");

static PyObject *bind(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(arg, &encoded)) {
        return NULL;
    }
    /* RTLD_NOLOAD: only a library this process has loaded already (plyvel's). */
    void *handle = dlopen(PyBytes_AS_STRING(encoded), RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(encoded);
    int ok = handle != NULL && lookup_all(handle);
    if (handle != NULL) {
        dlclose(handle); /* plyvel's module keeps it loaded */
    }
    bound = ok;
    return PyBool_FromLong(ok);
}

static void sha256(const char *data, size_t size, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, size);
    SHA256_Final(out, &ctx);
}

static int by_record(const void *a, const void *b) {
    return memcmp(a, b, RECORD_SIZE);
}

typedef struct {
    const char *path;
    const char *prefix;
    size_t prefix_size;
    size_t write_buffer_size, max_file_size, cache_bytes;
    int bloom_bits;
    int compress; /* snappy for the table the log is replayed into, as a plain open */
    unsigned char *records; /* malloc'd: count records of RECORD_SIZE, sorted */
    size_t count;
} scan;

/* Open, read every entry under the prefix, close; no Python, no GIL. 0 on success. */
static int run_scan(scan *job) {
    int failed = 0;
    size_t capacity = 0;
    char *error = NULL;
    void *options = api.options_create();
    void *cache = api.cache_create_lru(job->cache_bytes);
    void *filter = job->bloom_bits > 0 ? api.filterpolicy_create_bloom(job->bloom_bits) : NULL;
    /* The options the node's open uses (node/store_open.py open_db): the log is replayed
     * into a table written with or without snappy as that open would write it (the caller
     * decides: store_open.replays_uncompressed). */
    api.options_set_create_if_missing(options, 0);
    api.options_set_paranoid_checks(options, 1);
    api.options_set_write_buffer_size(options, job->write_buffer_size);
    api.options_set_max_file_size(options, job->max_file_size);
    api.options_set_cache(options, cache);
    if (filter != NULL) {
        api.options_set_filter_policy(options, filter);
    }
    api.options_set_compression(options, job->compress ? 1 /* leveldb_snappy_compression */
                                                       : 0 /* leveldb_no_compression */);
    void *db = api.open(options, job->path, &error);
    if (error != NULL || db == NULL) {
        failed = 1;
    } else {
        void *read = api.readoptions_create();
        api.readoptions_set_fill_cache(read, 0); /* a bulk scan (LevelDB's advice) */
        void *iter = api.create_iterator(db, read);
        for (api.iter_seek(iter, job->prefix, job->prefix_size); api.iter_valid(iter);
             api.iter_next(iter)) {
            size_t key_size, value_size;
            const char *key = api.iter_key(iter, &key_size);
            if (key_size < job->prefix_size
                    || memcmp(key, job->prefix, job->prefix_size) != 0) {
                break;
            }
            if (job->count == capacity) {
                size_t grown = capacity ? capacity * 2 : 4096;
                unsigned char *bigger = realloc(job->records, grown * RECORD_SIZE);
                if (bigger == NULL) {
                    failed = 1;
                    break;
                }
                job->records = bigger;
                capacity = grown;
            }
            const char *value = api.iter_value(iter, &value_size);
            unsigned char *record = job->records + job->count * RECORD_SIZE;
            sha256(key + job->prefix_size, key_size - job->prefix_size, record);
            sha256(value, value_size, record + HASH_SIZE);
            job->count++;
        }
        api.iter_get_error(iter, &error);
        if (error != NULL) {
            failed = 1;
        }
        api.iter_destroy(iter);
        api.readoptions_destroy(read);
        api.close(db);
    }
    if (error != NULL) {
        api.free(error);
    }
    api.options_destroy(options);
    if (filter != NULL) {
        api.filterpolicy_destroy(filter);
    }
    api.cache_destroy(cache);
    if (!failed && job->count > 1) {
        qsort(job->records, job->count, RECORD_SIZE, by_record);
    }
    return failed;
}

/* bucket -> SHA-256(0x00 || records) into ``hashes`` and -> records into ``by_bucket``. */
static int emit_bucket(PyObject *by_bucket, PyObject *hashes, long bucket,
                       const unsigned char *data, size_t size) {
    static const unsigned char leaf_tag = 0x00;
    unsigned char digest[HASH_SIZE];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &leaf_tag, 1);
    SHA256_Update(&ctx, data, size);
    SHA256_Final(digest, &ctx);
    PyObject *key = PyLong_FromLong(bucket);
    PyObject *hash = PyBytes_FromStringAndSize((const char *)digest, HASH_SIZE);
    PyObject *records = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    int failed = key == NULL || hash == NULL || records == NULL
                 || PyDict_SetItem(hashes, key, hash) < 0
                 || PyDict_SetItem(by_bucket, key, records) < 0;
    Py_XDECREF(key);
    Py_XDECREF(hash);
    Py_XDECREF(records);
    return failed ? -1 : 0;
}

PyDoc_STRVAR(state_buckets_doc,
"state_buckets(path, prefix, write_buffer_size, max_file_size, bloom_bits, cache_bytes,\n"
"              compress)\n"
"    -> tuple[dict, dict] | None\n\n"
"Open the LevelDB database at ``path`` (replaying its log into a table written with snappy\n"
"if ``compress``, else without, with these options), read every entry whose key starts\n"
"with ``prefix``,\n"
"close it. Returns what node._tree_speedups.state_buckets returns for those entries with\n"
"the prefix cut off: (bucket -> its sorted records SHA-256(key) || SHA-256(value),\n"
"bucket -> SHA-256(0x00 || records)). None if bind() found no LevelDB, or on any error\n"
"of the database (the caller reads the store as usual, which reports it). The GIL is\n"
"released until the records are sorted.");

static PyObject *state_buckets(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path = NULL, *prefix = NULL;
    Py_ssize_t write_buffer_size, max_file_size, cache_bytes;
    int bloom_bits, compress;
    /* The prefix as exact bytes: immutable, so it cannot change while the GIL is released
     * (the argument tuple holds it for the call). */
    if (!PyArg_ParseTuple(args, "O&O!nninp", PyUnicode_FSConverter, &path, &PyBytes_Type,
                          &prefix, &write_buffer_size, &max_file_size, &bloom_bits,
                          &cache_bytes, &compress)) {
        return NULL;
    }
    if (write_buffer_size <= 0 || max_file_size <= 0 || cache_bytes <= 0 || bloom_bits < 0) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "sizes must be positive, bloom_bits not negative");
        return NULL;
    }
    if (!bound) {
        Py_DECREF(path);
        Py_RETURN_NONE;
    }
    scan job = {PyBytes_AS_STRING(path), PyBytes_AS_STRING(prefix),
                (size_t)PyBytes_GET_SIZE(prefix), (size_t)write_buffer_size,
                (size_t)max_file_size, (size_t)cache_bytes, bloom_bits, compress, NULL, 0};
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = run_scan(&job);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (failed) {
        free(job.records);
        Py_RETURN_NONE;
    }
    PyObject *by_bucket = PyDict_New();
    PyObject *hashes = PyDict_New();
    int error = by_bucket == NULL || hashes == NULL;
    size_t first = 0;
    for (size_t i = 1; !error && i <= job.count; i++) {
        const unsigned char *at = job.records + first * RECORD_SIZE;
        if (i == job.count || memcmp(at, job.records + i * RECORD_SIZE, 2) != 0) {
            error = emit_bucket(by_bucket, hashes, (long)(at[0] << 8 | at[1]), at,
                                (i - first) * RECORD_SIZE) < 0;
            first = i;
        }
    }
    free(job.records);
    if (error) {
        Py_XDECREF(by_bucket);
        Py_XDECREF(hashes);
        return NULL;
    }
    return Py_BuildValue("(NN)", by_bucket, hashes);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_O, bind_doc},
    {"state_buckets", state_buckets, METH_VARARGS, state_buckets_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node._state_scan",
    "A restarting node's pass over its stored state, in C without the GIL "
    "(see node/store_open.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__state_scan(void) {
    return PyModule_Create(&module);
}
