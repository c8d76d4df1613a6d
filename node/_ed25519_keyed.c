/*
 * Ed25519 verification for public keys that sign again and again, from a table of each
 * key's multiples.
 *
 * Why: every node checks every transaction's signature once, and that check is ~30% of a
 * node's CPU (docs/benchmarks.md). libsodium computes R' = [h](-A) + [S]B with ~253 point
 * doublings shared by both scalars, and decodes A (a field exponentiation) every time.
 * The keys that sign are few and sign thousands of times (an organisation's keys, its
 * devices), so for a key with KEYED_BUILD_AFTER signatures libsodium accepted, this module
 * keeps a table of j * 256^i * (-A) (i < 32, 1 <= j <= 8), as for the base point B, and
 * computes the same R' with ~128 additions of table points and 4 doublings, and no
 * decoding of A.
 *
 * Why the verdicts cannot differ from libsodium's (node/_sigcheck.c): the check is the same
 * equation on the same inputs. libsodium (crypto_sign_ed25519_verify_detached, 1.0.18 and
 * later) refuses S >= L, an R whose encoding is one of seven small-order encodings (the
 * sign bit ignored), an A that is not canonical (y >= p) or is one of those encodings or
 * does not decode; it then takes h = SHA-512(R || A || M) mod L, computes
 * R' = [h](-A) + [S]B and accepts iff R' encodes to exactly the 32 bytes of R. Those are
 * mathematical facts about the inputs: any correct computation of the point gives the same
 * bytes. This module applies the same refusals first and then computes R' its own way.
 * And it only ever *accepts*: when anything here does not pass (a refusal, an R' that
 * differs, a key without a table), the caller asks libsodium, so no valid signature can be
 * refused because of this code.
 *
 * What it costs at worst: a table is built (~1.7 libsodium checks) only for a key with
 * KEYED_BUILD_AFTER valid signatures, and once the 64 tables are taken only for a key that
 * signs more often than the least used of them (the cache below), so neither many honest
 * devices signing in turn nor a flood of fresh keys has tables built and dropped for
 * nothing; a bad signature under a key with a table is computed here and then by
 * libsodium (~1.4x). The worst a flood can do is take tables from keys that sign less
 * often than it does: never a verdict. tests/unit/test_keyed_sigcheck.py checks
 * it against libsodium on valid, forged, non-canonical, small-order and mixed-order input.
 *
 * Field elements are 5 limbs of 51 bits (unsigned __int128 products); points are in
 * extended twisted Edwards coordinates with the complete a = -1 formulas (Hisil, Wong,
 * Carter, Dawson 2008), so no input needs a special case. Everything here handles public
 * data only (signatures, keys, messages), so it is variable-time.
 */
#include "_ed25519_keyed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__SIZEOF_INT128__) || !defined(__BYTE_ORDER__) || \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define KEYED_UNAVAILABLE 1
#endif

#ifndef KEYED_UNAVAILABLE

typedef unsigned __int128 u128;
typedef uint64_t fe[5];

#define MASK51 ((uint64_t)0x7ffffffffffff)

static uint64_t load64(const unsigned char *s) {
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

static void store64(unsigned char *s, uint64_t v) { memcpy(s, &v, 8); }

/* The low 255 bits of ``s`` (the sign bit of an encoded point is not part of y). */
static void fe_frombytes(fe h, const unsigned char s[32]) {
    uint64_t w0 = load64(s), w1 = load64(s + 8), w2 = load64(s + 16), w3 = load64(s + 24);
    h[0] = w0 & MASK51;
    h[1] = ((w0 >> 51) | (w1 << 13)) & MASK51;
    h[2] = ((w1 >> 38) | (w2 << 26)) & MASK51;
    h[3] = ((w2 >> 25) | (w3 << 39)) & MASK51;
    h[4] = (w3 >> 12) & MASK51;
}

static void fe_copy(fe h, const fe f) { memcpy(h, f, sizeof(fe)); }

static void fe_zero(fe h) { memset(h, 0, sizeof(fe)); }

static void fe_one(fe h) {
    fe_zero(h);
    h[0] = 1;
}

/* Limbs back below 2^51 (the first up to 2^51 + 19 * 2^13) for any limbs below 2^63. */
static inline void fe_carry(fe h) {
    uint64_t c;
    c = h[0] >> 51; h[0] &= MASK51; h[1] += c;
    c = h[1] >> 51; h[1] &= MASK51; h[2] += c;
    c = h[2] >> 51; h[2] &= MASK51; h[3] += c;
    c = h[3] >> 51; h[3] &= MASK51; h[4] += c;
    c = h[4] >> 51; h[4] &= MASK51; h[0] += 19 * c;
}

/* f + g, not carried: for carried inputs the limbs stay below 2^52.01. */
static void fe_add(fe h, const fe f, const fe g) {
    for (int i = 0; i < 5; i++) {
        h[i] = f[i] + g[i];
    }
}

/* f - g, carried, for g's limbs below 2^53 - 76 (4p's limbs are added first). */
static void fe_sub(fe h, const fe f, const fe g) {
    h[0] = (f[0] + ((uint64_t)1 << 53) - 76) - g[0];
    h[1] = (f[1] + ((uint64_t)1 << 53) - 4) - g[1];
    h[2] = (f[2] + ((uint64_t)1 << 53) - 4) - g[2];
    h[3] = (f[3] + ((uint64_t)1 << 53) - 4) - g[3];
    h[4] = (f[4] + ((uint64_t)1 << 53) - 4) - g[4];
    fe_carry(h);
}

static void fe_neg(fe h, const fe f) {
    fe z;
    fe_zero(z);
    fe_sub(h, z, f);
}

/* The product's five sums, reduced to limbs below 2^51 (the second below 2^51 + 2^16).
 * Inputs may have limbs up to 2^54: each sum is then below 2^115. */
static inline __attribute__((always_inline)) void fe_reduce_wide(fe h, u128 r0, u128 r1, u128 r2, u128 r3, u128 r4) {
    r1 += (uint64_t)(r0 >> 51);
    r2 += (uint64_t)(r1 >> 51);
    r3 += (uint64_t)(r2 >> 51);
    r4 += (uint64_t)(r3 >> 51);
    u128 t = (u128)(uint64_t)(r4 >> 51) * 19 + ((uint64_t)r0 & MASK51);
    h[0] = (uint64_t)t & MASK51;
    h[1] = ((uint64_t)r1 & MASK51) + (uint64_t)(t >> 51);
    h[2] = (uint64_t)r2 & MASK51;
    h[3] = (uint64_t)r3 & MASK51;
    h[4] = (uint64_t)r4 & MASK51;
}

static void fe_mul(fe h, const fe f, const fe g) {
    uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
    uint64_t g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], g4 = g[4];
    uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    u128 r0 = (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 + (u128)f3 * g2_19 +
              (u128)f4 * g1_19;
    u128 r1 = (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 + (u128)f3 * g3_19 +
              (u128)f4 * g2_19;
    u128 r2 = (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 + (u128)f3 * g4_19 +
              (u128)f4 * g3_19;
    u128 r3 = (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 + (u128)f3 * g0 +
              (u128)f4 * g4_19;
    u128 r4 = (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 + (u128)f3 * g1 +
              (u128)f4 * g0;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static void fe_sq(fe h, const fe f) {
    uint64_t f0 = f[0], f1 = f[1], f2 = f[2], f3 = f[3], f4 = f[4];
    uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1, f2_2 = 2 * f2, f3_2 = 2 * f3;
    uint64_t f3_19 = 19 * f3, f4_19 = 19 * f4;
    u128 r0 = (u128)f0 * f0 + (u128)f1_2 * f4_19 + (u128)f2_2 * f3_19;
    u128 r1 = (u128)f0_2 * f1 + (u128)f2_2 * f4_19 + (u128)f3 * f3_19;
    u128 r2 = (u128)f0_2 * f2 + (u128)f1 * f1 + (u128)f3_2 * f4_19;
    u128 r3 = (u128)f0_2 * f3 + (u128)f1_2 * f2 + (u128)f4 * f4_19;
    u128 r4 = (u128)f0_2 * f4 + (u128)f1_2 * f3 + (u128)f2 * f2;
    fe_reduce_wide(h, r0, r1, r2, r3, r4);
}

static void fe_sq_times(fe h, const fe f, int n) {
    fe_sq(h, f);
    for (int i = 1; i < n; i++) {
        fe_sq(h, h);
    }
}

/* The unique encoding of f: fully reduced below p, little-endian. */
static void fe_tobytes(unsigned char s[32], const fe f) {
    fe t;
    fe_copy(t, f);
    fe_carry(t);
    fe_carry(t);
    /* t < 2^255 + 19 now; q = 1 iff t >= p. */
    uint64_t q = (t[0] + 19) >> 51;
    q = (t[1] + q) >> 51;
    q = (t[2] + q) >> 51;
    q = (t[3] + q) >> 51;
    q = (t[4] + q) >> 51;
    t[0] += 19 * q;
    t[1] += t[0] >> 51; t[0] &= MASK51;
    t[2] += t[1] >> 51; t[1] &= MASK51;
    t[3] += t[2] >> 51; t[2] &= MASK51;
    t[4] += t[3] >> 51; t[3] &= MASK51;
    t[4] &= MASK51; /* minus q * 2^255 */
    store64(s, t[0] | (t[1] << 51));
    store64(s + 8, (t[1] >> 13) | (t[2] << 38));
    store64(s + 16, (t[2] >> 26) | (t[3] << 25));
    store64(s + 24, (t[3] >> 39) | (t[4] << 12));
}

static int fe_isnegative(const fe f) {
    unsigned char s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

static int fe_iszero(const fe f) {
    unsigned char s[32];
    fe_tobytes(s, f);
    unsigned char any = 0;
    for (int i = 0; i < 32; i++) {
        any |= s[i];
    }
    return any == 0;
}

/* z^(2^250 - 1), and z^11 on the side (both exponent chains below start with it). */
static void fe_pow_2_250_1(fe out, fe z11, const fe z) {
    fe z2, z9, t, z5_0, z10_0, z20_0, z50_0, z100_0;
    fe_sq(z2, z);                    /* 2 */
    fe_sq_times(t, z2, 2);           /* 8 */
    fe_mul(z9, t, z);                /* 9 */
    fe_mul(z11, z9, z2);             /* 11 */
    fe_sq(t, z11);                   /* 22 */
    fe_mul(z5_0, t, z9);             /* 2^5 - 1 */
    fe_sq_times(t, z5_0, 5);
    fe_mul(z10_0, t, z5_0);          /* 2^10 - 1 */
    fe_sq_times(t, z10_0, 10);
    fe_mul(z20_0, t, z10_0);         /* 2^20 - 1 */
    fe_sq_times(t, z20_0, 20);
    fe_mul(t, t, z20_0);             /* 2^40 - 1 */
    fe_sq_times(t, t, 10);
    fe_mul(z50_0, t, z10_0);         /* 2^50 - 1 */
    fe_sq_times(t, z50_0, 50);
    fe_mul(z100_0, t, z50_0);        /* 2^100 - 1 */
    fe_sq_times(t, z100_0, 100);
    fe_mul(t, t, z100_0);            /* 2^200 - 1 */
    fe_sq_times(t, t, 50);
    fe_mul(out, t, z50_0);           /* 2^250 - 1 */
}

/* 1/z = z^(p - 2) = z^(2^255 - 21). */
static void fe_invert(fe out, const fe z) {
    fe t, z11;
    fe_pow_2_250_1(t, z11, z);
    fe_sq_times(t, t, 5);            /* 2^255 - 32 */
    fe_mul(out, t, z11);             /* 2^255 - 21 */
}

/* z^((p - 5) / 8) = z^(2^252 - 3), for square roots. */
static void fe_pow22523(fe out, const fe z) {
    fe t, z11;
    fe_pow_2_250_1(t, z11, z);
    fe_sq_times(t, t, 2);            /* 2^252 - 4 */
    fe_mul(out, t, z);               /* 2^252 - 3 */
}

/* Curve constants, as their encodings: d = -121665/121666, 2d, sqrt(-1), and the base
 * point's y = 4/5 (its x is the even root). */
static const unsigned char D_BYTES[32] = {
    0xa3, 0x78, 0x59, 0x13, 0xca, 0x4d, 0xeb, 0x75, 0xab, 0xd8, 0x41, 0x41, 0x4d, 0x0a, 0x70,
    0x00, 0x98, 0xe8, 0x79, 0x77, 0x79, 0x40, 0xc7, 0x8c, 0x73, 0xfe, 0x6f, 0x2b, 0xee, 0x6c,
    0x03, 0x52};
static const unsigned char D2_BYTES[32] = {
    0x59, 0xf1, 0xb2, 0x26, 0x94, 0x9b, 0xd6, 0xeb, 0x56, 0xb1, 0x83, 0x82, 0x9a, 0x14, 0xe0,
    0x00, 0x30, 0xd1, 0xf3, 0xee, 0xf2, 0x80, 0x8e, 0x19, 0xe7, 0xfc, 0xdf, 0x56, 0xdc, 0xd9,
    0x06, 0x24};
static const unsigned char SQRTM1_BYTES[32] = {
    0xb0, 0xa0, 0x0e, 0x4a, 0x27, 0x1b, 0xee, 0xc4, 0x78, 0xe4, 0x2f, 0xad, 0x06, 0x18, 0x43,
    0x2f, 0xa7, 0xd7, 0xfb, 0x3d, 0x99, 0x00, 0x4d, 0x2b, 0x0b, 0xdf, 0xc1, 0x4f, 0x80, 0x24,
    0x83, 0x2b};
static const unsigned char BASE_BYTES[32] = {
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66};

/* The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
static const unsigned char ORDER_BYTES[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x10};

/* The encodings of the points of order 1, 2, 4 and 8 that libsodium refuses as R or A,
 * compared with the sign bit cleared: y = 0, 1, the two y of order 8, p - 1, p, p + 1. */
static const unsigned char SMALL_ORDER[7][32] = {
    {0},
    {1},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
     0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
     0xfc, 0x05},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
     0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
     0x03, 0x7a},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0x7f},
    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0x7f},
    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0x7f},
};

static fe fe_d, fe_d2, fe_sqrtm1;

/* ---- scalar and encoding rules (libsodium's refusals) ---------------------------- */

/* s < L, both little-endian. */
static int scalar_is_canonical(const unsigned char s[32]) {
    for (int i = 31; i >= 0; i--) {
        if (s[i] != ORDER_BYTES[i]) {
            return s[i] < ORDER_BYTES[i];
        }
    }
    return 0; /* s == L */
}

static int has_small_order(const unsigned char s[32]) {
    for (int k = 0; k < 7; k++) {
        if (memcmp(s, SMALL_ORDER[k], 31) == 0 && (s[31] & 0x7f) == SMALL_ORDER[k][31]) {
            return 1;
        }
    }
    return 0;
}

/* y (the low 255 bits) below p = 2^255 - 19. */
static int point_is_canonical(const unsigned char s[32]) {
    if ((s[31] & 0x7f) != 0x7f) {
        return 1;
    }
    for (int i = 30; i > 0; i--) {
        if (s[i] != 0xff) {
            return 1;
        }
    }
    return s[0] < 0xed;
}

/* ---- points ---------------------------------------------------------------------- */

typedef struct { fe X, Y, Z, T; } ge_p3;      /* x = X/Z, y = Y/Z, xy = T/Z */
typedef struct { fe X, Y, Z, T; } ge_p1p1;    /* x = X/Z, y = Y/T */
typedef struct { fe ypx, ymx, xy2d; } ge_niels; /* affine: y + x, y - x, 2dxy */
typedef struct { fe ypx, ymx, Z, t2d; } ge_cached;

typedef ge_niels table_row[8]; /* j * 256^i * P for j = 1..8 */
typedef table_row point_table[32];

static void ge_identity(ge_p3 *p) {
    fe_zero(p->X);
    fe_one(p->Y);
    fe_one(p->Z);
    fe_zero(p->T);
}

static void p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p) {
    fe_mul(r->X, p->X, p->T);
    fe_mul(r->Y, p->Y, p->Z);
    fe_mul(r->Z, p->Z, p->T);
    fe_mul(r->T, p->X, p->Y);
}

static void p3_dbl(ge_p1p1 *r, const ge_p3 *p) {
    fe xx, yy, b, a, aa;
    fe_sq(xx, p->X);
    fe_sq(yy, p->Y);
    fe_sq(b, p->Z);
    fe_add(b, b, b);                 /* 2 Z^2 */
    fe_add(a, p->X, p->Y);
    fe_sq(aa, a);                    /* (X + Y)^2 */
    fe_add(r->Y, yy, xx);
    fe_sub(r->Z, yy, xx);
    fe_sub(r->X, aa, r->Y);
    fe_sub(r->T, b, r->Z);
}

static void p3_to_cached(ge_cached *r, const ge_p3 *p) {
    fe_add(r->ypx, p->Y, p->X);
    fe_carry(r->ypx);
    fe_sub(r->ymx, p->Y, p->X);
    fe_copy(r->Z, p->Z);
    fe_mul(r->t2d, p->T, fe_d2);
}

static void p3_add_cached(ge_p1p1 *r, const ge_p3 *p, const ge_cached *q) {
    fe a, b, c, zz, d, ypx, ymx;
    fe_add(ypx, p->Y, p->X);
    fe_sub(ymx, p->Y, p->X);
    fe_mul(a, ypx, q->ypx);
    fe_mul(b, ymx, q->ymx);
    fe_mul(c, q->t2d, p->T);
    fe_mul(zz, p->Z, q->Z);
    fe_add(d, zz, zz);
    fe_sub(r->X, a, b);
    fe_add(r->Y, a, b);
    fe_add(r->Z, d, c);
    fe_sub(r->T, d, c);
}

/* p + q (negate: p - q) for an affine table point q. */
static void p3_madd(ge_p1p1 *r, const ge_p3 *p, const ge_niels *q, int negate) {
    fe a, b, c, d, ypx, ymx;
    fe_add(ypx, p->Y, p->X);
    fe_sub(ymx, p->Y, p->X);
    fe_mul(a, ypx, negate ? q->ymx : q->ypx);
    fe_mul(b, ymx, negate ? q->ypx : q->ymx);
    fe_mul(c, q->xy2d, p->T);
    fe_add(d, p->Z, p->Z);
    fe_sub(r->X, a, b);
    fe_add(r->Y, a, b);
    if (negate) {
        fe_sub(r->Z, d, c);
        fe_add(r->T, d, c);
    } else {
        fe_add(r->Z, d, c);
        fe_sub(r->T, d, c);
    }
}

/* The point of encoding s, with y < p required of the caller; -1 if y has no x. As
 * libsodium's decoding: x from the square root of (y^2 - 1) / (d y^2 + 1), its sign from
 * the top bit (an x of 0 with the bit set is kept as 0: such points are small-order and
 * refused before this is reached). */
static int ge_frombytes(ge_p3 *h, const unsigned char s[32]) {
    fe u, v, v3, vxx, check;
    fe_frombytes(h->Y, s);
    fe_one(h->Z);
    fe_sq(u, h->Y);
    fe_mul(v, u, fe_d);
    fe_sub(u, u, h->Z);              /* y^2 - 1 */
    fe_add(v, v, h->Z);
    fe_carry(v);                     /* d y^2 + 1 */
    fe_sq(v3, v);
    fe_mul(v3, v3, v);               /* v^3 */
    fe_sq(h->X, v3);
    fe_mul(h->X, h->X, v);
    fe_mul(h->X, h->X, u);           /* u v^7 */
    fe_pow22523(h->X, h->X);
    fe_mul(h->X, h->X, v3);
    fe_mul(h->X, h->X, u);           /* u v^3 (u v^7)^((p - 5) / 8) */
    fe_sq(vxx, h->X);
    fe_mul(vxx, vxx, v);
    fe_sub(check, vxx, u);
    if (!fe_iszero(check)) {
        fe_add(check, vxx, u);
        if (!fe_iszero(check)) {
            return -1;
        }
        fe_mul(h->X, h->X, fe_sqrtm1);
    }
    if (fe_isnegative(h->X) != (s[31] >> 7)) {
        fe_neg(h->X, h->X);
    }
    fe_mul(h->T, h->X, h->Y);
    return 0;
}

static void ge_tobytes(unsigned char s[32], const ge_p3 *p) {
    fe recip, x, y;
    fe_invert(recip, p->Z);
    fe_mul(x, p->X, recip);
    fe_mul(y, p->Y, recip);
    fe_tobytes(s, y);
    s[31] ^= (unsigned char)(fe_isnegative(x) << 7);
}

/* table[i][j - 1] = j * 256^i * P, affine. 256 points made in extended coordinates, then
 * made affine together with one inversion (Montgomery's trick). 0, or -1 without memory. */
static int build_table(point_table table, const ge_p3 *point) {
    ge_p3 *pts = malloc(256 * sizeof(ge_p3));
    fe *prefix = malloc(256 * sizeof(fe));
    if (pts == NULL || prefix == NULL) {
        free(pts);
        free(prefix);
        return -1;
    }
    ge_p3 base = *point;
    ge_p1p1 t;
    ge_cached cb;
    for (int i = 0; i < 32; i++) {
        ge_p3 *row = pts + 8 * i;
        row[0] = base;
        p3_to_cached(&cb, &base);
        p3_dbl(&t, &base);
        p1p1_to_p3(&row[1], &t);
        for (int j = 2; j < 8; j++) {
            p3_add_cached(&t, &row[j - 1], &cb);
            p1p1_to_p3(&row[j], &t);
        }
        if (i < 31) { /* 256 * base = 32 * (8 * base) */
            base = row[7];
            for (int k = 0; k < 5; k++) {
                p3_dbl(&t, &base);
                p1p1_to_p3(&base, &t);
            }
        }
    }
    fe_copy(prefix[0], pts[0].Z);
    for (int n = 1; n < 256; n++) {
        fe_mul(prefix[n], prefix[n - 1], pts[n].Z);
    }
    fe inv, zinv, x, y, xy;
    fe_invert(inv, prefix[255]);     /* 1 / (Z_0 ... Z_255) */
    for (int n = 255; n >= 0; n--) {
        if (n > 0) {
            fe_mul(zinv, inv, prefix[n - 1]);
            fe_mul(inv, inv, pts[n].Z);
        } else {
            fe_copy(zinv, inv);
        }
        ge_niels *out = &table[n / 8][n % 8];
        fe_mul(x, pts[n].X, zinv);
        fe_mul(y, pts[n].Y, zinv);
        fe_add(out->ypx, y, x);
        fe_carry(out->ypx);
        fe_sub(out->ymx, y, x);
        fe_mul(xy, x, y);
        fe_mul(out->xy2d, xy, fe_d2);
    }
    free(pts);
    free(prefix);
    return 0;
}

/* Signed base-16 digits of a scalar below 2^255: sum e[i] 16^i, each e[i] in [-8, 8]. */
static void recode(signed char e[64], const unsigned char a[32]) {
    for (int i = 0; i < 32; i++) {
        e[2 * i] = (signed char)(a[i] & 15);
        e[2 * i + 1] = (signed char)(a[i] >> 4);
    }
    signed char carry = 0;
    for (int i = 0; i < 63; i++) {
        e[i] = (signed char)(e[i] + carry);
        carry = (signed char)((e[i] + 8) >> 4);
        e[i] = (signed char)(e[i] - carry * 16);
    }
    e[63] = (signed char)(e[63] + carry);
}

static void add_digit(ge_p3 *p, const table_row row, signed char digit) {
    ge_p1p1 t;
    if (digit > 0) {
        p3_madd(&t, p, &row[digit - 1], 0);
    } else if (digit < 0) {
        p3_madd(&t, p, &row[-digit - 1], 1);
    } else {
        return;
    }
    p1p1_to_p3(p, &t);
}

static point_table *base_table = NULL;

/* [s]B + [k]P from P's table: the odd digits' points, times 16, plus the even digits'. */
static void combination(ge_p3 *r, const unsigned char s[32], const unsigned char k[32],
                        point_table *ptable) {
    signed char es[64], ek[64];
    recode(es, s);
    recode(ek, k);
    ge_identity(r);
    for (int i = 1; i < 64; i += 2) {
        add_digit(r, (*base_table)[i / 2], es[i]);
        add_digit(r, (*ptable)[i / 2], ek[i]);
    }
    ge_p1p1 t;
    for (int n = 0; n < 4; n++) {
        p3_dbl(&t, r);
        p1p1_to_p3(r, &t);
    }
    for (int i = 0; i < 64; i += 2) {
        add_digit(r, (*base_table)[i / 2], es[i]);
        add_digit(r, (*ptable)[i / 2], ek[i]);
    }
}

/* -A's table, or NULL if libsodium would refuse A as a key (or without memory). */
static point_table *negated_key_table(const unsigned char pk[32]) {
    ge_p3 a;
    if (!point_is_canonical(pk) || has_small_order(pk) || ge_frombytes(&a, pk) != 0) {
        return NULL;
    }
    fe_neg(a.X, a.X);
    fe_neg(a.T, a.T);
    point_table *table = malloc(sizeof(point_table));
    if (table != NULL && build_table(*table, &a) != 0) {
        free(table);
        table = NULL;
    }
    return table;
}

/* ---- the cache of key tables ----------------------------------------------------- */

/* Which keys hold the 64 tables: the most frequent signers. Each key without a table has a
 * count of its valid signatures (in one of SEEN_SLOTS slots, by its first bytes); each
 * table a count of its uses, started from its key's count. A key gets a table once its
 * count reaches KEYED_BUILD_AFTER and, when every table is taken, only if it exceeds the
 * least used table's count, which it then replaces. Every count is halved each
 * HALVE_EVERY events, so a key that stopped signing loses its table to a new hot one.
 * Why not "least recently used": 200 devices signing in turn made each table be built and
 * evicted before its next use, every check paying a third of a table build (1.25-1.5x
 * libsodium alone); with counts, 64 of them keep their tables and the rest go to
 * libsodium, and no table is built for nothing. */

typedef struct {
    unsigned char pk[32];
    point_table *table;
    uint32_t count; /* uses, aged: see above */
    int users;      /* checks computing from the table now: it is not freed under them */
} table_slot;

typedef struct {
    unsigned char pk[32];
    uint32_t count;
} seen_slot;

#define SEEN_SLOTS 1024
#define HALVE_EVERY 16384

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static table_slot slots[KEYED_TABLES];
static seen_slot seen[SEEN_SLOTS];
static uint32_t events; /* counted uses since the last halving */
static keyed_counts counts;
static keyed_sodium sodium;
static int sodium_bound = 0;

#define HASH_STATE_BYTES 512 /* libsodium's SHA-512 state is 208 bytes */

static table_slot *find_slot(const unsigned char pk[32]) {
    for (int i = 0; i < KEYED_TABLES; i++) {
        if (slots[i].table != NULL && memcmp(slots[i].pk, pk, 32) == 0) {
            return &slots[i];
        }
    }
    return NULL;
}

/* Under the lock: one more counted event; every count halved every HALVE_EVERY. */
static void count_event(void) {
    if (++events < HALVE_EVERY) {
        return;
    }
    events = 0;
    for (int i = 0; i < KEYED_TABLES; i++) {
        slots[i].count >>= 1;
    }
    for (int i = 0; i < SEEN_SLOTS; i++) {
        seen[i].count >>= 1;
    }
}

/* Under the lock: the slot a table with ``count`` would take: an empty idle one, else the
 * idle one with the lowest count if ``count`` exceeds it; NULL if none. */
static table_slot *slot_for(uint32_t count) {
    table_slot *victim = NULL;
    for (int i = 0; i < KEYED_TABLES; i++) {
        table_slot *s = &slots[i];
        if (s->users != 0) {
            continue;
        }
        if (s->table == NULL) {
            return s;
        }
        if (victim == NULL || s->count < victim->count) {
            victim = s;
        }
    }
    return victim != NULL && count > victim->count ? victim : NULL;
}

/* Under the lock: count one more valid signature of a key without a table; its count if it
 * has now earned a table (a slot is free, or it outcounts the least used table), else 0. */
static uint32_t count_use(const unsigned char pk[32]) {
    seen_slot *s = &seen[load64(pk) % SEEN_SLOTS];
    if (memcmp(s->pk, pk, 32) != 0) {
        memcpy(s->pk, pk, 32);
        s->count = 0;
    }
    if (s->count < UINT32_MAX) {
        s->count++;
    }
    count_event();
    if (s->count >= KEYED_BUILD_AFTER && slot_for(s->count) != NULL) {
        uint32_t earned = s->count;
        s->count = 0; /* one builder; a failed build starts the count again */
        return earned;
    }
    return 0;
}

/* Under the lock: keep ``table`` for ``pk`` (whose count is ``count``) in the slot it has
 * earned, if it still has one; else drop it. */
static void keep_table(const unsigned char pk[32], point_table *table, uint32_t count) {
    table_slot *slot = find_slot(pk) == NULL ? slot_for(count) : NULL;
    if (slot == NULL) {
        free(table); /* another thread built it, or took the slot, meanwhile */
        return;
    }
    if (slot->table != NULL) {
        free(slot->table);
        counts.evicted++;
    }
    memcpy(slot->pk, pk, 32);
    slot->table = table;
    slot->count = count;
    counts.built++;
}

static int accepts_with(const unsigned char *sig, const unsigned char *m, size_t mlen,
                        const unsigned char *pk, point_table *table) {
    /* SHA-512(R || A || M), incrementally: no copy of the message. */
    _Alignas(64) unsigned char state[HASH_STATE_BYTES];
    unsigned char hash[64], k[32], rcheck[32];
    if (sodium.init(state) != 0 || sodium.update(state, sig, 32) != 0 ||
        sodium.update(state, pk, 32) != 0 ||
        sodium.update(state, m, (unsigned long long)mlen) != 0 ||
        sodium.final(state, hash) != 0) {
        return 0;
    }
    sodium.reduce(k, hash);
    ge_p3 r;
    combination(&r, sig + 32, k, table);
    ge_tobytes(rcheck, &r);
    return memcmp(rcheck, sig, 32) == 0;
}

int keyed_init(const keyed_sodium *functions) {
    if (functions->statebytes() > HASH_STATE_BYTES) {
        return -1;
    }
    fe_frombytes(fe_d, D_BYTES);
    fe_frombytes(fe_d2, D2_BYTES);
    fe_frombytes(fe_sqrtm1, SQRTM1_BYTES);
    if (base_table == NULL) {
        ge_p3 b;
        if (ge_frombytes(&b, BASE_BYTES) != 0) {
            return -1;
        }
        point_table *table = malloc(sizeof(point_table));
        if (table == NULL || build_table(*table, &b) != 0) {
            free(table);
            return -1;
        }
        base_table = table;
    }
    sodium = *functions;
    sodium_bound = 1;
    return 0;
}

int keyed_check(const unsigned char *sig, const unsigned char *m, size_t mlen,
                const unsigned char *pk) {
    if (!sodium_bound) {
        return KEYED_NO_TABLE;
    }
    pthread_mutex_lock(&cache_lock);
    table_slot *slot = find_slot(pk);
    if (slot != NULL) {
        slot->users++;
        if (slot->count < UINT32_MAX) {
            slot->count++;
        }
        count_event();
    } else {
        counts.deferred++;
    }
    pthread_mutex_unlock(&cache_lock);
    if (slot == NULL) {
        return KEYED_NO_TABLE;
    }
    /* libsodium refuses these before its equation; so does the table path (and then
     * libsodium says so itself) */
    int ok = scalar_is_canonical(sig + 32) && !has_small_order(sig) &&
             accepts_with(sig, m, mlen, pk, slot->table);
    pthread_mutex_lock(&cache_lock);
    slot->users--;
    if (ok) {
        counts.accepted++;
    } else {
        counts.deferred++;
    }
    pthread_mutex_unlock(&cache_lock);
    return ok ? KEYED_ACCEPTED : KEYED_NOT_ACCEPTED;
}

void keyed_note_valid(const unsigned char *pk) {
    pthread_mutex_lock(&cache_lock);
    uint32_t earned = sodium_bound && find_slot(pk) == NULL ? count_use(pk) : 0;
    pthread_mutex_unlock(&cache_lock);
    if (earned == 0) {
        return;
    }
    point_table *table = negated_key_table(pk);
    pthread_mutex_lock(&cache_lock);
    if (table != NULL) {
        keep_table(pk, table, earned);
    } else {
        counts.refused_keys++; /* (a key libsodium just accepted a signature of: none) */
    }
    pthread_mutex_unlock(&cache_lock);
}

void keyed_reset(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < KEYED_TABLES; i++) {
        if (slots[i].users == 0) {
            free(slots[i].table);
            memset(&slots[i], 0, sizeof slots[i]);
        }
    }
    memset(seen, 0, sizeof seen);
    pthread_mutex_unlock(&cache_lock);
}

void keyed_stats(keyed_counts *out) {
    pthread_mutex_lock(&cache_lock);
    *out = counts;
    pthread_mutex_unlock(&cache_lock);
}

int keyed_combination(unsigned char out[32], const unsigned char s[32],
                      const unsigned char k[32], const unsigned char pk[32]) {
    if (base_table == NULL || !scalar_is_canonical(s) || !scalar_is_canonical(k)) {
        return -1; /* the digits of a scalar from 2^255 on would index past the tables */
    }
    point_table *table = negated_key_table(pk);
    if (table == NULL) {
        return -1;
    }
    ge_p3 r;
    combination(&r, s, k, table);
    ge_tobytes(out, &r);
    free(table);
    return 0;
}

#else /* KEYED_UNAVAILABLE: no 128-bit integers or not little-endian; libsodium checks all */

int keyed_init(const keyed_sodium *functions) {
    (void)functions;
    return -1;
}

int keyed_check(const unsigned char *sig, const unsigned char *m, size_t mlen,
                const unsigned char *pk) {
    (void)sig; (void)m; (void)mlen; (void)pk;
    return KEYED_NO_TABLE;
}

void keyed_note_valid(const unsigned char *pk) { (void)pk; }

void keyed_reset(void) {}

void keyed_stats(keyed_counts *out) { memset(out, 0, sizeof *out); }

int keyed_combination(unsigned char out[32], const unsigned char s[32],
                      const unsigned char k[32], const unsigned char pk[32]) {
    (void)out; (void)s; (void)k; (void)pk;
    return -1;
}

#endif
