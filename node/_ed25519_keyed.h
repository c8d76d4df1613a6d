/*
 * Ed25519 checks for a public key seen before, from a table of its multiples
 * (node/_ed25519_keyed.c). Used by node/_sigcheck.c only.
 */
#ifndef JANGBU_ED25519_KEYED_H
#define JANGBU_ED25519_KEYED_H

#include <stddef.h>
#include <stdint.h>

typedef int (*keyed_sha512_fn)(unsigned char *out, const unsigned char *in,
                               unsigned long long inlen);
typedef void (*keyed_reduce_fn)(unsigned char *r, const unsigned char *s);

/* Bind libsodium's SHA-512 and scalar reduction (its public API) and build the base
 * point's table. 0 on success, -1 if out of memory. */
int keyed_init(keyed_sha512_fn sha512, keyed_reduce_fn reduce);

/* 1 if (sig, m, pk) verifies under libsodium's rules, as computed from pk's table; 0 if
 * this module does not decide (no table for pk yet, or the signature did not pass here):
 * the caller then asks libsodium. This module never refuses a signature itself. */
int keyed_accepts(const unsigned char *sig, const unsigned char *m, size_t mlen,
                  const unsigned char *pk);

/* Drop every key's table and count (tests, and use_keyed_checks(False)). */
void keyed_reset(void);

typedef struct {
    uint64_t accepted;   /* signatures accepted from a table */
    uint64_t deferred;   /* calls left to libsodium (no table, or not accepted here) */
    uint64_t built;      /* tables built */
    uint64_t evicted;    /* tables dropped for another key's */
    uint64_t refused_keys; /* keys a table was not built for (libsodium's key checks) */
} keyed_counts;

void keyed_stats(keyed_counts *out);

/* Test hooks: the encoding of [s]B + [k](-A) for A's encoding (canonical, decodable),
 * computed as the check computes it; 0 on success, -1 if A is refused. */
int keyed_combination(unsigned char out[32], const unsigned char s[32],
                      const unsigned char k[32], const unsigned char pk[32]);

#define KEYED_TABLES 64
#define KEYED_BUILD_AFTER 3

#endif
