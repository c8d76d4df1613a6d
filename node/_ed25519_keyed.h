/*
 * Ed25519 checks for a public key seen before, from a table of its multiples
 * (node/_ed25519_keyed.c). Used by node/_sigcheck.c only.
 */
#ifndef JANGBU_ED25519_KEYED_H
#define JANGBU_ED25519_KEYED_H

#include <stddef.h>
#include <stdint.h>

/* libsodium's incremental SHA-512 and scalar reduction (its public API). */
typedef struct {
    size_t (*statebytes)(void);
    int (*init)(void *state);
    int (*update)(void *state, const unsigned char *in, unsigned long long inlen);
    int (*final)(void *state, unsigned char *out);
    void (*reduce)(unsigned char *r, const unsigned char *s);
} keyed_sodium;

/* Bind libsodium's functions and build the base point's table. 0 on success, -1 if out of
 * memory or if libsodium's hash state does not fit the buffer kept for it. */
int keyed_init(const keyed_sodium *sodium);

#define KEYED_ACCEPTED 1
#define KEYED_NOT_ACCEPTED 0 /* pk has a table, and this signature did not pass from it */
#define KEYED_NO_TABLE (-1)  /* pk has no table (yet): count it with keyed_note_valid */

/* Whether (sig, m, pk) verifies under libsodium's rules, as computed from pk's table. Only
 * KEYED_ACCEPTED decides anything: on the two others the caller asks libsodium. This
 * module never refuses a signature itself. */
int keyed_check(const unsigned char *sig, const unsigned char *m, size_t mlen,
                const unsigned char *pk);

/* Count a signature libsodium accepted for a pk that had no table; from its
 * KEYED_BUILD_AFTER-th counted signature on, it builds the pk's table if a table is free or
 * the pk has signed more often than the least used key with one. Only valid signatures
 * count, so a table costs its key that many real signatures. */
void keyed_note_valid(const unsigned char *pk);

/* Drop every key's table and use count; the counters below carry on (tests, and
 * use_keyed(False)). */
void keyed_reset(void);

typedef struct {
    uint64_t accepted;   /* signatures accepted from a table */
    uint64_t deferred;   /* calls left to libsodium (no table, or not accepted here) */
    uint64_t built;      /* tables built */
    uint64_t evicted;    /* tables dropped for another key's */
    uint64_t refused_keys; /* keys a table was not built for (libsodium's key checks) */
} keyed_counts;

void keyed_stats(keyed_counts *out);

/* Test hook: the encoding of [s]B + [k](-A) for A's encoding, computed as the check
 * computes it; 0 on success, -1 if A is refused as a key or s or k is not below L. */
int keyed_combination(unsigned char out[32], const unsigned char s[32],
                      const unsigned char k[32], const unsigned char pk[32]);

#define KEYED_TABLES 64
#define KEYED_BUILD_AFTER 3

#endif
