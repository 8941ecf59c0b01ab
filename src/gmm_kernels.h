/* Row kernels of the E-step: softmax of rows of K log-densities, with a fast exp.
 *
 * Kept in plain C so that gcc vectorises them; the Cython core (src/_core.pyx) calls them
 * once per chunk (or per row for the small top-C lists).  Knows nothing of Python, numpy,
 * gmmext or speaker.
 *
 * Fast exp.  glibc's exp is scalar (~5 ns, and much slower on arguments that underflow,
 * which most of an E-step's arguments do: it goes through errno/xflow handling).  Here
 * exp(x) for x <= 0 (all the E-step needs: x = L - max) is branch-free so that a loop of
 * it vectorises:
 *   n = round(x / ln 2) (the 1.5 * 2^52 "shifter" trick, which also leaves n in the low
 *   mantissa bits), r = x - n ln2 in two FMA steps (Cody-Waite, ln2 split in hi + lo),
 *   exp(r) by a polynomial on |r| <= ln2/2 (degree 11 for double, by Estrin's scheme; 5 for
 *   float, by Horner's rule), times 2^n built directly in the exponent field.
 * Arguments below -708.3 (double) / -87.3 (float), including -inf, give exactly 0: the
 * results they stand for (< 2.2e-308 / 1.2e-38, relative to the row maximum's 1) are below
 * the normal range, so rows lose nothing measurable.  NaN gives NaN.
 * Accuracy (tests/test_fast_exp.py, against numpy.exp on [-708, 0] / [-87, 0]):
 * double <= 2 ulp (relative error < 4.5e-16), float <= 2 ulp (< 2.4e-7).
 *
 * Portability: the build uses the baseline x86-64 target (no -march=native); on gcc/x86-64
 * every kernel is compiled three times with target_clones (AVX-512, AVX2+FMA, baseline SSE2)
 * and the loader picks the best one for the CPU it runs on.  GMMEXT_NO_CLONES disables that.
 */
#ifndef GMMEXT_KERNELS_H
#define GMMEXT_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(GMMEXT_NO_CLONES)
#define GMMX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GMMX_CLONES
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define GMMX_UNROLL _Pragma("GCC unroll 16")
#else
#define GMMX_UNROLL
#endif

/* "omp simd" is OpenMP 4.0 (201307); MSVC's /openmp is OpenMP 2.0 and would warn (C4068) on it */
#if defined(_OPENMP) && _OPENMP >= 201307 && !(defined(_MSC_VER) && !defined(__clang__))
#define GMMX_PRAGMA(x) _Pragma(#x)
#define GMMX_SIMD_MAX(v) GMMX_PRAGMA(omp simd reduction(max:v))
#define GMMX_SIMD _Pragma("omp simd")
#else
#define GMMX_SIMD_MAX(v)
#define GMMX_SIMD
#endif

/* ------------------------------------------------------------------ exp
 * One body for both types: T the float type, I / UI its same-width integers, MBITS its
 * mantissa bits, BIAS its exponent bias; the polynomial's coefficients (highest first) are
 * in gmmx_exp_poly_SFX, evaluated by gmmx_exp_poly_eval_SFX.
 * CLAMP 1: any x (clamped to [LO, HI] first); CLAMP 0 (the E-step's gmmx_expneg_SFX): x <= 0
 * or NaN only, two operations fewer; an x below LO (-inf included) computes garbage that the
 * final select replaces by 0 (the integer arithmetic is unsigned: no undefined behaviour). */
#define GMMX_EXP_BODY(T, SFX, I, UI, MBITS, BIAS, LO, HI, LOG2E, SHIFT, LN2_HI, LN2_LO, CLAMP) \
    T xc = x;                                                         \
    if (CLAMP) {                                                      \
        xc = xc < LO ? LO : xc;                                       \
        xc = xc > HI ? HI : xc;                                       \
    }                                                                 \
    T t = xc * LOG2E + SHIFT;          /* n = round(x / ln 2) in t's low mantissa bits */ \
    T n = t - SHIFT;                                                  \
    T r = xc - n * LN2_HI;             /* Cody-Waite: n * LN2_HI is exact */ \
    r = r - n * LN2_LO;                                               \
    T p = gmmx_exp_poly_eval_##SFX(r);                                \
    union { T v; I i; UI u; } u;                                      \
    u.v = t;                                                          \
    u.u = (u.u + (UI)BIAS) << MBITS;   /* 2^n */                      \
    T y = p * u.v;                                                    \
    return x < LO ? (T)0 : y;

/* double: degree 11, Taylor's degree 19 economised by Chebyshev polynomials on |r| <= ln2/2
 * (exact rational arithmetic, then rounded; the constant and linear terms stay 1): its own
 * relative error is below 1.6e-17, 0.07 ulp (the script is in docs/design.md) */
#define GMMX_LOG2E 1.4426950408889634074
#define GMMX_LN2_HI 6.93147180369123816490e-01 /* 0x3fe62e42fee00000: n * hi exact */
#define GMMX_LN2_LO 1.90821492927058770002e-10
#define GMMX_SHIFT_D 6755399441055744.0       /* 1.5 * 2^52 */
#define GMMX_EXP_MIN_D (-708.3)               /* 2^n stays normal: n >= -1022 */
static const double gmmx_exp_poly_d[12] = {
    2.5114870219497466e-08, 2.763264067543022e-07, 2.755722495611072e-06, 2.480148547921643e-05,
    0.00019841269909219843, 0.0013888888952318045, 0.008333333333309526, 0.04166666666648808,
    0.16666666666666702, 0.5000000000000019, 1.0, 1.0};

/* The terms of degree >= 2 by Estrin's scheme (pairs, then r^2, r^4, r^8), the last two by
 * Horner's rule (p = (h r + 1) r + 1, whose rounding sets the accuracy): the same 11
 * multiply-adds in a chain of 6 instead of 11, so that the vectorised loop is less bound by
 * their latency (the whole exp 4 % faster than by Horner's rule, AVX-512; the accuracy is
 * Horner's, 0.69 ulp measured). */
static inline double gmmx_exp_poly_eval_d(double r)
{
    const double *c = gmmx_exp_poly_d;   /* c[0] multiplies r^11, c[11] is the constant */
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double a0 = c[8] * r + c[9], a1 = c[6] * r + c[7], a2 = c[4] * r + c[5];
    double a3 = c[2] * r + c[3], a4 = c[0] * r + c[1];
    double h = a4 * r8 + ((a3 * r2 + a2) * r4 + (a1 * r2 + a0));
    return (h * r + c[10]) * r + c[11];
}

static inline double gmmx_exp_d(double x)
{ GMMX_EXP_BODY(double, d, int64_t, uint64_t, 52, 1023, GMMX_EXP_MIN_D, 709.0, GMMX_LOG2E,
                GMMX_SHIFT_D, GMMX_LN2_HI, GMMX_LN2_LO, 1) }
static inline double gmmx_expneg_d(double x)
{ GMMX_EXP_BODY(double, d, int64_t, uint64_t, 52, 1023, GMMX_EXP_MIN_D, 709.0, GMMX_LOG2E,
                GMMX_SHIFT_D, GMMX_LN2_HI, GMMX_LN2_LO, 0) }

/* float: degree 5, 1 + r + r^2 q(r) with q of degree 3 fitted for the least largest relative
 * error on |r| <= ln2/2 (1.05e-7 in exact arithmetic; the script is in docs/design.md), then
 * rounded to float: 1.48 ulp measured in float arithmetic on every float of [-87, 0] */
#define GMMX_LOG2E_F 1.44269504f
#define GMMX_LN2_HI_F 0.693359375f              /* 0x3f318000: n * hi exact */
#define GMMX_LN2_LO_F (-2.12194440e-4f)
#define GMMX_SHIFT_F 12582912.0f                 /* 1.5 * 2^23 */
#define GMMX_EXP_MIN_F (-87.3f)                  /* n >= -126 */
static const float gmmx_exp_poly_f[6] = {
    0.008312525227665901f, 0.041890114545822144f, 0.16667114198207855f, 0.499992311000824f, 1.0f, 1.0f};

static inline float gmmx_exp_poly_eval_f(float r)
{
    const float *c = gmmx_exp_poly_f;
    float p = c[0];
    GMMX_UNROLL
    for (int j = 1; j < 6; ++j) p = p * r + c[j];
    return p;
}

static inline float gmmx_exp_f(float x)
{ GMMX_EXP_BODY(float, f, int32_t, uint32_t, 23, 127, GMMX_EXP_MIN_F, 88.0f, GMMX_LOG2E_F,
                GMMX_SHIFT_F, GMMX_LN2_HI_F, GMMX_LN2_LO_F, 1) }
static inline float gmmx_expneg_f(float x)
{ GMMX_EXP_BODY(float, f, int32_t, uint32_t, 23, 127, GMMX_EXP_MIN_F, 88.0f, GMMX_LOG2E_F,
                GMMX_SHIFT_F, GMMX_LN2_HI_F, GMMX_LN2_LO_F, 0) }

/* out[i] = exp(in[i]) for n values (testing / general use): any x; neg: the E-step's
 * gmmx_expneg (x <= 0 or NaN only). */
GMMX_CLONES static void gmmx_exp_array_d(const double *restrict in, double *restrict out, ptrdiff_t n,
                                         int neg)
{
    if (neg) {
        GMMX_SIMD
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = gmmx_expneg_d(in[i]);
    } else {
        GMMX_SIMD
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = gmmx_exp_d(in[i]);
    }
}

GMMX_CLONES static void gmmx_exp_array_f(const float *restrict in, float *restrict out, ptrdiff_t n,
                                         int neg)
{
    if (neg) {
        GMMX_SIMD
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = gmmx_expneg_f(in[i]);
    } else {
        GMMX_SIMD
        for (ptrdiff_t i = 0; i < n; ++i) out[i] = gmmx_exp_f(in[i]);
    }
}

/* Sum of n values in 16 interleaved partial sums (vectorises without -ffast-math; the
 * order is fixed, so results do not depend on the CPU's vector width).  GMMX_PARTIALS is the
 * loop with the value of element i given by an expression (ELEM) that may also store it:
 * gmmx_sum_SFX adds x[i]; gmmx_expsum_SFX (one row of the E-step) turns x[i] into
 * exp(x[i] - m) and adds that, one pass instead of an exp pass and a sum pass, the same sum. */
#define GMMX_PARTIALS(T, ELEM)                                        \
    T part[16] = {0};                                                 \
    ptrdiff_t i = 0, j;                                               \
    for (; i + 16 <= n; i += 16)                                      \
        for (j = 0; j < 16; ++j) part[j] += ELEM(i + j);              \
    for (j = 0; i + j < n; ++j) part[j] += ELEM(i + j);               \
    for (j = 0; j < 8; ++j) part[j] += part[j + 8];                   \
    for (j = 0; j < 4; ++j) part[j] += part[j + 4];                   \
    return (part[0] + part[2]) + (part[1] + part[3]);

#define GMMX_ELEM_READ(i) x[i]
#define GMMX_ELEM_EXPNEG_d(i) (x[i] = gmmx_expneg_d(x[i] - m))
#define GMMX_ELEM_EXPNEG_f(i) (x[i] = gmmx_expneg_f(x[i] - m))

static inline double gmmx_sum_d(const double *restrict x, ptrdiff_t n) { GMMX_PARTIALS(double, GMMX_ELEM_READ) }
static inline float gmmx_sum_f(const float *restrict x, ptrdiff_t n) { GMMX_PARTIALS(float, GMMX_ELEM_READ) }
/* x[i] <- exp(x[i] - m) for i < n (x[i] <= m or NaN: gmmx_expneg_SFX); returns their sum */
static inline double gmmx_expsum_d(double *restrict x, ptrdiff_t n, double m) { GMMX_PARTIALS(double, GMMX_ELEM_EXPNEG_d) }
static inline float gmmx_expsum_f(float *restrict x, ptrdiff_t n, float m) { GMMX_PARTIALS(float, GMMX_ELEM_EXPNEG_f) }

/* ------------------------------------------------------------------ one row
 * T is double (suffix d) or float (f); SFX picks gmmx_expsum_SFX.  GMMX_DROP: responsibilities
 * at most this times their row's largest are the ones the sparse statistics leave out. */
#define GMMX_DROP 1e-15

/* One row's maximum and exponentials: row[k] <- exp(row[k] - max), *ll <- log sum_k exp(row[k])
 * (the input row's); returns the scale w / sum that makes the row its weighted
 * responsibilities.  A row whose entries are all -inf becomes zeros (*ll = -inf, scale 0). */
#define GMMX_ROW_EXP_BODY(T, SFX)                                     \
    T m = -INFINITY, s;                                               \
    ptrdiff_t k;                                                      \
    GMMX_SIMD_MAX(m)                                                  \
    for (k = 0; k < K; ++k)                                           \
        m = row[k] > m ? row[k] : m;                                  \
    if (!(m > -INFINITY)) {                                           \
        for (k = 0; k < K; ++k) row[k] = 0;                           \
        *ll = (double)m;                                              \
        return 0;                                                     \
    }                                                                 \
    s = gmmx_expsum_##SFX(row, K, m);                                 \
    *ll = (double)m + log((double)s);                                 \
    return (T)((double)w / (double)s);

static inline double gmmx_row_exp_d(double *restrict row, ptrdiff_t K, double w, double *ll)
{ GMMX_ROW_EXP_BODY(double, d) }
static inline float gmmx_row_exp_f(float *restrict row, ptrdiff_t K, float w, double *ll)
{ GMMX_ROW_EXP_BODY(float, f) }

/* gmmx_row_exp_SFX, then the scaling and, with count, the entries kept in the same pass: the
 * row's largest responsibility is the scale itself (its exponential is exp(0) = 1 exactly) */
#define GMMX_ROW_ESTEP_BODY(T, SFX)                                   \
    ptrdiff_t k, kept = 0;                                            \
    T scale = gmmx_row_exp_##SFX(row, K, w, ll);                      \
    if (count) {                                                      \
        T thr = (T)(scale * GMMX_DROP);                               \
        for (k = 0; k < K; ++k) {                                     \
            T v = row[k] * scale;                                     \
            row[k] = v;                                               \
            kept += v > thr;                                          \
        }                                                             \
        if (!(scale > 0)) kept = 0;                                   \
    } else {                                                          \
        GMMX_SIMD                                                     \
        for (k = 0; k < K; ++k)                                       \
            row[k] *= scale;                                          \
    }                                                                 \
    return kept;

GMMX_CLONES static ptrdiff_t gmmx_row_estep_d(double *restrict row, ptrdiff_t K, double w,
                                              int count, double *ll)
{ GMMX_ROW_ESTEP_BODY(double, d) }
GMMX_CLONES static ptrdiff_t gmmx_row_estep_f(float *restrict row, ptrdiff_t K, float w,
                                              int count, double *ll)
{ GMMX_ROW_ESTEP_BODY(float, f) }

/* gmmx_softmax_SFX(row, K, w): row[k] <- w * exp(row[k] - max) / sum_j exp(row[j] - max);
 * returns log sum_j exp(row[j]) in double.  A row whose entries are all -inf returns -inf and
 * is left as zeros.  The E-step's row kernel without the count. */
GMMX_CLONES static double gmmx_softmax_d(double *restrict row, ptrdiff_t K, double w)
{ double ll; gmmx_row_estep_d(row, K, w, 0, &ll); return ll; }
GMMX_CLONES static double gmmx_softmax_f(float *restrict row, ptrdiff_t K, float w)
{ double ll; gmmx_row_estep_f(row, K, w, 0, &ll); return ll; }

/* acc[k] += sum_i R[i, k] (column sums of a rows x K chunk): rows in blocks of 4 from the first,
 * acc[k] += ((r0 + r1) + (r2 + r3)) in double (one read and write of acc per 4 rows), the
 * rows left one by one.  The E-step kernel calls it on each block of 4 rows as they are done,
 * so that the sums are the same as one call on the chunk. */
#define GMMX_COLSUM_BODY(T)                                           \
    ptrdiff_t i = 0;                                                  \
    for (; i + 4 <= rows; i += 4) {                                   \
        const T *r0 = R + i * K, *r1 = r0 + K, *r2 = r1 + K, *r3 = r2 + K; \
        GMMX_SIMD                                                     \
        for (ptrdiff_t k = 0; k < K; ++k)                             \
            acc[k] += ((double)r0[k] + (double)r1[k]) + ((double)r2[k] + (double)r3[k]); \
    }                                                                 \
    for (; i < rows; ++i) {                                           \
        const T *r = R + i * K;                                       \
        GMMX_SIMD                                                     \
        for (ptrdiff_t k = 0; k < K; ++k) acc[k] += (double)r[k];     \
    }

GMMX_CLONES static void gmmx_colsum_d(const double *restrict R, ptrdiff_t rows, ptrdiff_t K, double *restrict acc)
{ GMMX_COLSUM_BODY(double) }
GMMX_CLONES static void gmmx_colsum_f(const float *restrict R, ptrdiff_t rows, ptrdiff_t K, double *restrict acc)
{ GMMX_COLSUM_BODY(float) }

/* ------------------------------------------------------------------ whole chunks
 * E-step of a chunk: L (rows, K) row-major weighted log-densities become responsibilities
 * times the frame weights (sw[i], or 1 when sw is NULL);
 * acc_scalar[0] += sum_i w_i log p(x_i) (frames of weight 0 excluded), acc_scalar[1] += sum_i w_i.
 * Per row, one pass for the maximum, one for the exponentials and their sum (gmmx_expsum_SFX),
 * then the scaling by w_i / sum and what the statistics want next while the rows are in L1:
 *   colsum != NULL: colsum[k] += r_ik, blocks of 4 rows from the chunk's first (the scaling of
 *     the 4 rows and their column sums in one pass, gmmx_scale_colsum4_SFX), the rows left one
 *     by one;
 *   count != 0: returns the number of entries above GMMX_DROP times their row's largest, else 0.
 * Results are those of gmmx_softmax_SFX per row followed by gmmx_colsum_SFX on the chunk, to
 * the bit.  (Skipping blocks of 16 whose exps are all 0, most of a float32 E-step's, was
 * measured slower: the branch is unpredictable.) */

/* rows r0..r3 (K each, consecutive) <- r_j * sc[j]; acc[k] += the 4 scaled values, as
 * gmmx_colsum_SFX adds a block of 4 */
#define GMMX_SCALE_COLSUM4_BODY(T)                                    \
    T *r0 = R, *r1 = r0 + K, *r2 = r1 + K, *r3 = r2 + K;              \
    const T s0 = sc[0], s1 = sc[1], s2 = sc[2], s3 = sc[3];           \
    GMMX_SIMD                                                         \
    for (ptrdiff_t k = 0; k < K; ++k) {                               \
        T v0 = r0[k] * s0, v1 = r1[k] * s1, v2 = r2[k] * s2, v3 = r3[k] * s3; \
        r0[k] = v0; r1[k] = v1; r2[k] = v2; r3[k] = v3;               \
        acc[k] += ((double)v0 + (double)v1) + ((double)v2 + (double)v3); \
    }

static inline void gmmx_scale_colsum4_d(double *restrict R, ptrdiff_t K, const double *sc,
                                        double *restrict acc)
{ GMMX_SCALE_COLSUM4_BODY(double) }
static inline void gmmx_scale_colsum4_f(float *restrict R, ptrdiff_t K, const float *sc,
                                        double *restrict acc)
{ GMMX_SCALE_COLSUM4_BODY(float) }

#define GMMX_ESTEP_BODY(T, SFX)                                       \
    double ll_sum = 0.0, w_sum = 0.0, ll, w;                          \
    ptrdiff_t kept = 0, i = 0, j, done;                               \
    T sc[4];                                                          \
    if (colsum && !count) {                                           \
        for (; i + 4 <= rows; i += 4) {                               \
            for (j = 0; j < 4; ++j) {                                 \
                w = sw ? sw[i + j] : 1.0;                             \
                sc[j] = gmmx_row_exp_##SFX(L + (i + j) * K, K, (T)w, &ll); \
                if (w != 0.0) ll_sum += w * ll;                       \
                w_sum += w;                                           \
            }                                                         \
            gmmx_scale_colsum4_##SFX(L + i * K, K, sc, colsum);       \
        }                                                             \
    }                                                                 \
    done = i;                                                         \
    for (; i < rows; ++i) {                                           \
        w = sw ? sw[i] : 1.0;                                         \
        kept += gmmx_row_estep_##SFX(L + i * K, K, (T)w, count, &ll); \
        if (w != 0.0) ll_sum += w * ll;                               \
        w_sum += w;                                                   \
        if (colsum && (i + 1 - done == 4 || i + 1 == rows)) {         \
            gmmx_colsum_##SFX(L + done * K, i + 1 - done, K, colsum); \
            done = i + 1;                                             \
        }                                                             \
    }                                                                 \
    acc_scalar[0] += ll_sum;                                          \
    acc_scalar[1] += w_sum;                                           \
    return kept;

GMMX_CLONES static ptrdiff_t gmmx_estep_chunk_d(double *restrict L, ptrdiff_t rows, ptrdiff_t K,
                                                const double *sw, double *acc_scalar,
                                                double *restrict colsum, int count)
{ GMMX_ESTEP_BODY(double, d) }
GMMX_CLONES static ptrdiff_t gmmx_estep_chunk_f(float *restrict L, ptrdiff_t rows, ptrdiff_t K,
                                                const double *sw, double *acc_scalar,
                                                double *restrict colsum, int count)
{ GMMX_ESTEP_BODY(float, f) }

/* acc[j] += S[j] for n values (float statistics into float64 accumulators). */
GMMX_CLONES static void gmmx_add_f(double *restrict acc, const float *restrict S, ptrdiff_t n)
{
    GMMX_SIMD
    for (ptrdiff_t j = 0; j < n; ++j) acc[j] += (double)S[j];
}

/* acc[j] = S[j] for n values (a segment's first chunk: acc need not be initialised). */
GMMX_CLONES static void gmmx_store_f(double *restrict acc, const float *restrict S, ptrdiff_t n)
{
    GMMX_SIMD
    for (ptrdiff_t j = 0; j < n; ++j) acc[j] = (double)S[j];
}

/* A segment's last chunk: acc (K x D2, float64) = (store ? 0 : acc) + S, then made plain
 * statistics about 0 from statistics about `shift` (D2 = 2D: [sum r y, sum r y^2]; D2 = D:
 * first order only; n (K,) the segment's occupancies), in one pass: acc is written once,
 * each row while it is in L1.  The arithmetic is _unshift_rows' (src/_core.pyx), operation
 * for operation, and kept unfused (no FMA contraction), so the bits are those of storing,
 * adding and unshifting in three passes. */
#if defined(__GNUC__) && !defined(__clang__)
#define GMMX_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define GMMX_NO_CONTRACT
#endif
GMMX_CLONES GMMX_NO_CONTRACT
static void gmmx_add_unshift_f(double *restrict acc, const float *restrict S,
                               const double *restrict n, const double *restrict shift,
                               ptrdiff_t K, ptrdiff_t D, ptrdiff_t D2, int store)
{
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    for (ptrdiff_t k = 0; k < K; ++k) {
        double *restrict a = acc + k * D2;
        const float *restrict s = S + k * D2;
        const double nk = n[k];
        if (D2 == 2 * D) {
            if (store) {
                GMMX_SIMD
                for (ptrdiff_t d = 0; d < D; ++d) {
                    double s1 = (double)s[d], s2 = (double)s[D + d];
                    a[D + d] = s2 + (2.0 * s1 * shift[d] + nk * shift[d] * shift[d]);
                    a[d] = s1 + nk * shift[d];
                }
            } else {
                GMMX_SIMD
                for (ptrdiff_t d = 0; d < D; ++d) {
                    double s1 = a[d] + (double)s[d], s2 = a[D + d] + (double)s[D + d];
                    a[D + d] = s2 + (2.0 * s1 * shift[d] + nk * shift[d] * shift[d]);
                    a[d] = s1 + nk * shift[d];
                }
            }
        } else if (store) {
            GMMX_SIMD
            for (ptrdiff_t d = 0; d < D; ++d) a[d] = (double)s[d] + nk * shift[d];
        } else {
            GMMX_SIMD
            for (ptrdiff_t d = 0; d < D; ++d) a[d] = (a[d] + (double)s[d]) + nk * shift[d];
        }
    }
}

/* ------------------------------------------------------------------ sparse statistics
 * In most E-steps a frame's responsibility is concentrated on a few components and the
 * rest are below 1e-15 of the frame's largest one (with K = 256 and separated clusters,
 * typically 97% of them).  For such chunks the statistics R^T [x, x^2] are cheaper as a
 * sum over the kept (frame, component) pairs than as a dense gemm; entries below
 * GMMX_DROP times the row's largest responsibility are then left out of acc_n and acc_s
 * alike (so every mean stays a weighted average of its frames).  The mass left out is
 * < K * 1e-15 of each frame's weight: below the rounding of the dense sums themselves. */

/* Finding the kept entries of a row: a vectorised pass writes keep[b] = (r[k0 + b] > thr) for a
 * block of GMMX_KEEP_BLOCK entries (one byte each), then the block is read 8 bytes at a time as
 * one uint64_t, and a non-zero word's kept entries are visited in order.  (Building a bit mask
 * entry by entry, as before, compiled to a scalar compare-shift-or per entry: 40 % of this
 * kernel's time.)  Little-endian targets (x86, ARM: every wheel) find the next kept byte by
 * counting trailing zero bits; others test the word's 8 bytes in order: the same order. */
#define GMMX_KEEP_BLOCK 64

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline int gmmx_ctz64(uint64_t m) { unsigned long i; _BitScanForward64(&i, m); return (int)i; }
#define GMMX_LITTLE_ENDIAN 1
#else
static inline int gmmx_ctz64(uint64_t m) { return __builtin_ctzll(m); }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define GMMX_LITTLE_ENDIAN 1
#else
#define GMMX_LITTLE_ENDIAN 0
#endif
#endif

/* keep[b] <- r[b] > thr for b < n (n <= GMMX_KEEP_BLOCK), 0 for n <= b < GMMX_KEEP_BLOCK */
#define GMMX_KEEP_FLAGS(T)                                            \
    static inline void gmmx_keep_flags_##T(const T *restrict r, ptrdiff_t n, T thr, \
                                           unsigned char *restrict keep) \
    {                                                                 \
        if (n == GMMX_KEEP_BLOCK) {                                   \
            GMMX_SIMD                                                 \
            for (int b = 0; b < GMMX_KEEP_BLOCK; ++b) keep[b] = r[b] > thr; \
            return;                                                   \
        }                                                             \
        memset(keep, 0, GMMX_KEEP_BLOCK);                             \
        for (ptrdiff_t b = 0; b < n; ++b) keep[b] = r[b] > thr;       \
    }
GMMX_KEEP_FLAGS(double)
GMMX_KEEP_FLAGS(float)

/* for each kept b of the 8 flags at keep + w8 (in increasing b): the statements given last,
 * with k = k0 + w8 + b */
#if GMMX_LITTLE_ENDIAN
#define GMMX_FOR_KEPT8(keep, w8, k0, ...)                             \
    {                                                                 \
        uint64_t w_;                                                  \
        memcpy(&w_, (keep) + (w8), 8);                                \
        while (w_) {                                                  \
            ptrdiff_t k = (k0) + (w8) + (gmmx_ctz64(w_) >> 3);        \
            w_ &= w_ - 1;                                             \
            __VA_ARGS__                                               \
        }                                                             \
    }
#else
#define GMMX_FOR_KEPT8(keep, w8, k0, ...)                             \
    {                                                                 \
        uint64_t w_;                                                  \
        memcpy(&w_, (keep) + (w8), 8);                                \
        if (w_)                                                       \
            for (int b_ = 0; b_ < 8; ++b_)                            \
                if ((keep)[(w8) + b_]) {                              \
                    ptrdiff_t k = (k0) + (w8) + b_;                   \
                    __VA_ARGS__                                       \
                }                                                     \
    }
#endif

/* acc_n[k] += r_ik and a[k, :D2] += r_ik * xx[i, :D2] for the kept entries, xx having rows of
 * ldx values (2D: [x, x^2]; D2 = 2D for both orders, D for the first order only);
 * a has the type TA (double for double data; float for float data, summed over one chunk in
 * float like the dense sgemm path, then added to the float64 accumulators). */
#define GMMX_SPARSE_BODY(T, TA)                                       \
    for (ptrdiff_t i = 0; i < rows; ++i) {                            \
        const T *r = R + i * K;                                       \
        const T *x = xx + i * ldx;                                    \
        T m = 0;                                                      \
        GMMX_SIMD_MAX(m)                                              \
        for (ptrdiff_t k = 0; k < K; ++k) m = r[k] > m ? r[k] : m;    \
        if (!(m > 0)) continue;                                       \
        T thr = (T)(m * GMMX_DROP);                                   \
        unsigned char keep[GMMX_KEEP_BLOCK];                          \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += GMMX_KEEP_BLOCK) {       \
            ptrdiff_t n = K - k0 < GMMX_KEEP_BLOCK ? K - k0 : GMMX_KEEP_BLOCK; \
            gmmx_keep_flags_##T(r + k0, n, thr, keep);                \
            for (int w8 = 0; w8 < GMMX_KEEP_BLOCK; w8 += 8)           \
                GMMX_FOR_KEPT8(keep, w8, k0, {                        \
                    TA v = (TA)r[k];                                  \
                    TA *restrict a = acc + k * D2;                    \
                    acc_n[k] += (double)r[k];                         \
                    for (ptrdiff_t j = 0; j < D2; ++j)                \
                        a[j] += v * (TA)x[j];                         \
                })                                                    \
        }                                                             \
    }

GMMX_CLONES static void gmmx_sparse_stats_d(const double *restrict R, const double *restrict xx,
                                            ptrdiff_t rows, ptrdiff_t K, ptrdiff_t ldx, ptrdiff_t D2,
                                            double *restrict acc_n, double *restrict acc_s)
{
    double *restrict acc = acc_s;
    GMMX_SPARSE_BODY(double, double)
}

/* S (K x D2 float) <- the chunk's sums (zeroed here); acc_n (float64) += the kept entries. */
GMMX_CLONES static void gmmx_sparse_stats_f(const float *restrict R, const float *restrict xx,
                                            ptrdiff_t rows, ptrdiff_t K, ptrdiff_t ldx, ptrdiff_t D2,
                                            double *restrict acc_n, float *restrict S)
{
    float *restrict acc = S;
    memset(S, 0, sizeof(float) * (size_t)(K * D2));
    GMMX_SPARSE_BODY(float, float)
}

/* ------------------------------------------------------------------ top-C over a panel of models
 * (PW: the panel width of src/gmm_gemm.h's products, which compute L.)
 * Top-C log-sum-exp of a chunk of `rows` frames under PW models at once (L's rows PW apart), one model per lane
 * (src/_topc_shared.pxi).  For frame i and model j, with r = pos[i * C + c] (c < C) the
 * frame's (frame, component) pairs:
 *     v_c = (L[r * PW + j] + qv[r]) + G[comp[r] * ldg + j],   m = max_c v_c,
 *     t = sum_c exp(v_c - m) (c in order, the core's fast exp; 0 terms when m = -inf),
 *     msum[j] += m, prod[j] *= t (float64), and prod[j] is folded into msum[j] (log) once it
 * passes 1e250.  The state (msum, prod) is carried from chunk to chunk, so the total
 * msum + log(prod) does not depend on how the frames were cut; every lane runs the same
 * instructions, so a model's total depends neither on the other models nor on its lane. */
#include "gmm_gemm.h"

#define GMMX_PANEL_LSE_BODY(T, SFX, PW)                                              \
    for (ptrdiff_t i = 0; i < rows; ++i) {                                           \
        const int64_t *pi = pos + i * C;                                             \
        T m[PW], ref[PW], t[PW];                                                     \
        for (int j = 0; j < PW; ++j) m[j] = -INFINITY;                               \
        for (ptrdiff_t c = 0; c < C; ++c) {                                          \
            ptrdiff_t r = pi[c];                                                     \
            const T *Lr = L + r * PW, *g = G + (ptrdiff_t)comp[r] * ldg;             \
            T q = qv[r];                                                             \
            GMMX_SIMD                                                                \
            for (int j = 0; j < PW; ++j) {                                           \
                T v = (Lr[j] + q) + g[j];                                            \
                m[j] = v > m[j] ? v : m[j];                                          \
            }                                                                        \
        }                                                                            \
        GMMX_SIMD                                                                    \
        for (int j = 0; j < PW; ++j) {                                               \
            ref[j] = m[j] > -INFINITY ? m[j] : (T)0;                                 \
            t[j] = 0;                                                                \
        }                                                                            \
        for (ptrdiff_t c = 0; c < C; ++c) {                                          \
            ptrdiff_t r = pi[c];                                                     \
            const T *Lr = L + r * PW, *g = G + (ptrdiff_t)comp[r] * ldg;             \
            T q = qv[r];                                                             \
            for (int j = 0; j < PW; ++j)                                             \
                t[j] = t[j] + gmmx_exp_##SFX(((Lr[j] + q) + g[j]) - ref[j]);         \
        }                                                                            \
        GMMX_SIMD                                                                    \
        for (int j = 0; j < PW; ++j) {                                               \
            msum[j] += (double)m[j];                                                 \
            prod[j] *= (double)t[j];                                                 \
        }                                                                            \
        for (int j = 0; j < PW; ++j)                                                 \
            if (prod[j] > 1e250) {                                                   \
                msum[j] += log(prod[j]);                                             \
                prod[j] = 1.0;                                                       \
            }                                                                        \
    }

/* NL lanes: a whole panel (GMMX_PW_T) or, for a last panel of at most 16 models, 16 */
#define GMMX_DEFINE_PANEL_LSE(NAME, T, SFX, NL)                                      \
    GMMX_CLONES static void NAME(const T *restrict L, const T *restrict qv,          \
                                 const int32_t *restrict comp, const T *restrict G,  \
                                 ptrdiff_t ldg, const int64_t *restrict pos, ptrdiff_t rows, \
                                 ptrdiff_t C, double *restrict msum, double *restrict prod) \
    { GMMX_PANEL_LSE_BODY(T, SFX, NL) }
GMMX_DEFINE_PANEL_LSE(gmmx_panel_lse_f, float, f, GMMX_PW_f)
GMMX_DEFINE_PANEL_LSE(gmmx_panel_lse16_f, float, f, 16)
GMMX_DEFINE_PANEL_LSE(gmmx_panel_lse_d, double, d, GMMX_PW_d)
GMMX_DEFINE_PANEL_LSE(gmmx_panel_lse16_d, double, d, 16)

/* ------------------------------------------------------------------ centred quadratic form
 * ||(x - mu) C||^2 in float64, C (D, D) row-major upper-triangular (a precision's Cholesky
 * factor, precision = C C^T): y_j = sum_{d <= j} (x_d - mu_d) C[d, j].  No cancellation: the
 * frame is centred on the component before the product.  work: 2D doubles of scratch.  The
 * float32 full-covariance E-step recomputes with it the log-densities that matter
 * (src/_core.pyx, _refine_full). */
GMMX_CLONES static double gmmx_centred_quad(const double *restrict x, const double *restrict mu,
                                            const double *restrict C, ptrdiff_t D,
                                            double *restrict work)
{
    double *restrict yc = work, *restrict y = work + D, ss = 0.0;
    ptrdiff_t d, j;
    for (d = 0; d < D; ++d) {
        yc[d] = x[d] - mu[d];
        y[d] = 0.0;
    }
    for (d = 0; d < D; ++d) {
        const double a = yc[d];
        const double *restrict row = C + d * D;
        GMMX_SIMD
        for (j = d; j < D; ++j) y[j] += a * row[j];
    }
    for (d = 0; d < D; ++d) ss += y[d] * y[d];
    return ss;
}

#endif
