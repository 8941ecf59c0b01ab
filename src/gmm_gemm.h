/* Deterministic matrix products of the core: C = A B with every element summed in one fixed order.
 *
 * Why not BLAS.  An optimised BLAS computes an element of A B with an instruction sequence
 * that depends on where the element falls in its kernel's register tiles and on how the
 * call is cut (matrix shape, leading dimensions, the number of BLAS threads, the kernel the
 * library picked for the CPU): OpenBLAS's Haswell sgemm gives other bits for row i of A B
 * than for the same row computed alone, and its multi-threaded driver cuts the matrix into
 * other tiles than the single-threaded one.  Results of the core would then depend on the
 * chunk size, on the other models scored alongside, on the BLAS thread count and its
 * kernel.  These kernels compute every element the same way whatever the shapes:
 *
 *     s_b = fma(A[i, p1-1], B[p1-1, j], ... fma(A[i, p0], B[p0, j], 0))   for each block
 *           [p0, p1) of GMMX_KB terms at fixed positions,
 *     C[i, j] = ((s_0 + s_1) + s_2) + ...
 *
 * i.e. one accumulator per element, the summed dimension in order, one fused multiply-add
 * per term, the blocks' sums added in order (a two-level sum, as accurate as BLAS's).  Vector lanes run along j (columns of B): each lane is one
 * element and runs the same instructions as every other lane, and a product is exact in
 * an FMA, so the result does not depend on the vector width either: the AVX-512, AVX2+FMA
 * and portable (fma()) versions give the same bits.  The exception is an x86-64 CPU
 * without FMA (before 2013): there the portable version multiplies and adds (two
 * roundings), still in the same order everywhere, so that machine is deterministic too,
 * with its own bits.  The instruction set is chosen once per process (gmmx_isa()).
 *
 * Layout.  B is used in "panels" of GMMX_PW_T columns (256 bytes: 64 float or 32 double),
 * each panel k x PW contiguous row by row, columns past n zero (gmmx_pack_T); a panel stays
 * in cache while all row blocks of A pass over it.  The micro-kernel holds GMMX_MR rows x
 * (AVX-512) one panel or (AVX2) a quarter panel of accumulators in registers over the whole
 * summed dimension.  A is read in place with any strides (ars, acs), C written with any
 * strides (crs, ccs).  Knows nothing of Python, numpy, gmmext or speaker.
 */
#ifndef GMMEXT_GEMM_H
#define GMMEXT_GEMM_H

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define GMMX_PANEL_BYTES 256
#define GMMX_PW_f 64
#define GMMX_PW_d 32
#define GMMX_MR 6
#define GMMX_KB 128   /* terms per block of the summed dimension (see GMMX_MK_BODY) */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(GMMEXT_NO_SIMD_GEMM)
#define GMMX_X86 1
#include <immintrin.h>
#define GMMX_T_AVX512 __attribute__((target("avx512f")))
#define GMMX_T_AVX2 __attribute__((target("avx2,fma")))
#endif

#if defined(__GNUC__)
#define GMMX_UNROLL_ALL _Pragma("GCC unroll 32")
#else
#define GMMX_UNROLL_ALL
#endif

/* instruction sets: 0 = best available (see gmmx_isa), 1 = portable C, 2 = AVX2+FMA, 3 = AVX-512 */
enum { GMMX_ISA_AUTO = 0, GMMX_ISA_PORTABLE = 1, GMMX_ISA_AVX2 = 2, GMMX_ISA_AVX512 = 3 };

/* The instruction sets this CPU runs: bit i set for GMMX_ISA i. */
static inline int gmmx_isa_mask(void)
{
    static int cached = 0;
    if (cached) return cached;
    int mask = 1 << GMMX_ISA_PORTABLE;
#ifdef GMMX_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        mask |= 1 << GMMX_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f"))
        mask |= 1 << GMMX_ISA_AVX512;
#endif
    cached = mask;
    return mask;
}

/* The best instruction set of this CPU (computed once; a race only writes the same value). */
static inline int gmmx_isa(void)
{
    static int best = 0;
    if (best == 0) {
        int m = gmmx_isa_mask(), b = GMMX_ISA_PORTABLE;
        if (m & (1 << GMMX_ISA_AVX2)) b = GMMX_ISA_AVX2;
        if (m & (1 << GMMX_ISA_AVX512)) b = GMMX_ISA_AVX512;
        best = b;
    }
    return best;
}

/* ------------------------------------------------------------------ packing
 * Bp <- B (k x n, element (p, j) at B[p * brs + j * bcs]) as ceil(n / PW) panels of k x PW,
 * zero past column n.  Bp holds gmmx_packed_size(k, n, PW) values. */
static inline ptrdiff_t gmmx_packed_size(ptrdiff_t k, ptrdiff_t n, ptrdiff_t pw)
{
    return ((n + pw - 1) / pw) * pw * k;
}

#define GMMX_PACK_BODY(T, PW)                                                        \
    ptrdiff_t np = (n + PW - 1) / PW;                                                \
    for (ptrdiff_t q = 0; q < np; ++q) {                                             \
        ptrdiff_t j0 = q * PW, w = n - j0 < PW ? n - j0 : PW;                        \
        T *dst = Bp + q * k * PW;                                                    \
        for (ptrdiff_t p = 0; p < k; ++p) {                                          \
            const T *src = B + p * brs + j0 * bcs;                                   \
            T *d = dst + p * PW;                                                     \
            if (bcs == 1)                                                            \
                memcpy(d, src, (size_t)w * sizeof(T));                               \
            else                                                                     \
                for (ptrdiff_t j = 0; j < w; ++j) d[j] = src[j * bcs];               \
            for (ptrdiff_t j = w; j < PW; ++j) d[j] = 0;                             \
        }                                                                            \
    }

static inline void gmmx_pack_f(ptrdiff_t k, ptrdiff_t n, const float *B, ptrdiff_t brs,
                               ptrdiff_t bcs, float *Bp)
{ GMMX_PACK_BODY(float, GMMX_PW_f) }
static inline void gmmx_pack_d(ptrdiff_t k, ptrdiff_t n, const double *B, ptrdiff_t brs,
                               ptrdiff_t bcs, double *Bp)
{ GMMX_PACK_BODY(double, GMMX_PW_d) }

/* ------------------------------------------------------------------ micro-kernels
 * out (mr x w, row stride ldo; w rounded up to NR * W) <- A[0:mr, :] @ one panel Bp (k rows
 * ldb apart), A's row r at A + r * ars, its elements acs apart, mr <= MR.  Rows mr..MR-1 of the register
 * block repeat row mr - 1 (computed, not stored).  The summed dimension is taken in blocks of
 * GMMX_KB terms at fixed positions (0..KB-1, KB..2KB-1, ...): each block summed by FMAs in
 * order in a register, the block sums added in order in `out` (a two-level sum: float32
 * sums of thousands of terms keep the accuracy of BLAS's blocked ones).  Every instance
 * (vector width W, NR vectors per row, MR rows) runs the same operations on each element. */
#define GMMX_MK_BODY(T, VT, W, NR, MR, ZERO, LOADU, SET1, FMA, ADD, STOREU)          \
    const T *a[MR];                                                                  \
    GMMX_UNROLL_ALL                                                                  \
    for (int r = 0; r < MR; ++r) a[r] = A + (r < mr ? r : mr - 1) * ars;             \
    for (ptrdiff_t s0 = 0; s0 < w; s0 += NR * W) {                                   \
        ptrdiff_t p0 = 0;                                                            \
        do {                                                                         \
            ptrdiff_t p1 = p0 + GMMX_KB < k ? p0 + GMMX_KB : k;                      \
            VT c[MR][NR];                                                            \
            GMMX_UNROLL_ALL                                                          \
            for (int r = 0; r < MR; ++r)                                             \
                GMMX_UNROLL_ALL                                                      \
                for (int j = 0; j < NR; ++j) c[r][j] = ZERO;                         \
            const T *b = Bp + s0 + p0 * ldb;                                         \
            for (ptrdiff_t p = p0; p < p1; ++p, b += ldb) {                          \
                VT bv[NR];                                                           \
                GMMX_UNROLL_ALL                                                      \
                for (int j = 0; j < NR; ++j) bv[j] = LOADU(b + j * W);               \
                GMMX_UNROLL_ALL                                                      \
                for (int r = 0; r < MR; ++r) {                                       \
                    VT x = SET1(a[r][p * acs]);                                      \
                    GMMX_UNROLL_ALL                                                  \
                    for (int j = 0; j < NR; ++j) c[r][j] = FMA(x, bv[j], c[r][j]);   \
                }                                                                    \
            }                                                                        \
            for (int r = 0; r < mr; ++r)                                             \
                GMMX_UNROLL_ALL                                                      \
                for (int j = 0; j < NR; ++j) {                                       \
                    T *o = out + r * ldo + s0 + j * W;                               \
                    STOREU(o, p0 == 0 ? c[r][j] : ADD(LOADU(o), c[r][j]));           \
                }                                                                    \
            p0 = p1;                                                                 \
        } while (p0 < k);                                                            \
    }

#define GMMX_MK_ARGS(T) (ptrdiff_t k, const T *restrict A, ptrdiff_t ars, ptrdiff_t acs,       \
                         ptrdiff_t mr, const T *restrict Bp, ptrdiff_t ldb, ptrdiff_t w,       \
                         T *restrict out, ptrdiff_t ldo)

/* portable: one element per "lane"; fma() where the compiler says it is fast (one
 * instruction: every FMA CPU), else multiply then add (x86-64 without FMA) */
#if defined(__FP_FAST_FMA)
#define GMMX_MADD_d(x, y, z) fma((x), (y), (z))
#else
#define GMMX_MADD_d(x, y, z) ((x) * (y) + (z))
#endif
#if defined(__FP_FAST_FMAF)
#define GMMX_MADD_f(x, y, z) fmaf((x), (y), (z))
#else
#define GMMX_MADD_f(x, y, z) ((x) * (y) + (z))
#endif
#define GMMX_SLOAD(p) (*(p))
#define GMMX_SSET1(x) (x)
#define GMMX_SSTORE(p, v) (*(p) = (v))
#define GMMX_SADD(x, y) ((x) + (y))

/* the four micro-kernels of one instruction set: NAME_6w (6 rows, NR vectors), NAME_6n (6 rows,
 * one vector: a narrow last panel), NAME_2w and NAME_2n (1 or 2 rows left) */
#define GMMX_MK_SET(TARGET, NAME, T, VT, W, NR, ZERO, LOADU, SET1, FMA, ADD, STOREU)      \
    TARGET static inline void NAME##_6w GMMX_MK_ARGS(T)                                \
    { GMMX_MK_BODY(T, VT, W, NR, GMMX_MR, ZERO, LOADU, SET1, FMA, ADD, STOREU) }         \
    TARGET static inline void NAME##_6n GMMX_MK_ARGS(T)                                \
    { GMMX_MK_BODY(T, VT, W, 1, GMMX_MR, ZERO, LOADU, SET1, FMA, ADD, STOREU) }          \
    TARGET static inline void NAME##_2w GMMX_MK_ARGS(T)                                \
    { GMMX_MK_BODY(T, VT, W, NR, 2, ZERO, LOADU, SET1, FMA, ADD, STOREU) }               \
    TARGET static inline void NAME##_2n GMMX_MK_ARGS(T)                                \
    { GMMX_MK_BODY(T, VT, W, 1, 2, ZERO, LOADU, SET1, FMA, ADD, STOREU) }

#define GMMX_T_NONE
GMMX_MK_SET(GMMX_T_NONE, gmmx_mk_f_portable, float, float, 1, 8, 0.0f, GMMX_SLOAD, GMMX_SSET1,
            GMMX_MADD_f, GMMX_SADD, GMMX_SSTORE)
GMMX_MK_SET(GMMX_T_NONE, gmmx_mk_d_portable, double, double, 1, 8, 0.0, GMMX_SLOAD, GMMX_SSET1,
            GMMX_MADD_d, GMMX_SADD, GMMX_SSTORE)

#ifdef GMMX_X86
/* one x86 micro-kernel: NAME on vectors VT of W elements, intrinsics _mm<BITS>_*_<S> */
#define GMMX_MK_X86(TARGET, NAME, T, VT, W, NR, BITS, S)                             \
    GMMX_MK_SET(TARGET, NAME, T, VT, W, NR, _mm##BITS##_setzero_##S(), _mm##BITS##_loadu_##S, \
                _mm##BITS##_set1_##S, _mm##BITS##_fmadd_##S, _mm##BITS##_add_##S, _mm##BITS##_storeu_##S)
GMMX_MK_X86(GMMX_T_AVX2, gmmx_mk_f_avx2, float, __m256, 8, 2, 256, ps)
GMMX_MK_X86(GMMX_T_AVX2, gmmx_mk_d_avx2, double, __m256d, 4, 2, 256, pd)
GMMX_MK_X86(GMMX_T_AVX512, gmmx_mk_f_avx512, float, __m512, 16, 4, 512, ps)
GMMX_MK_X86(GMMX_T_AVX512, gmmx_mk_d_avx512, double, __m512d, 8, 4, 512, pd)
#endif

/* ------------------------------------------------------------------ the product
 * C (m x n, element (i, j) at C[i * crs + j * ccs]) <- A (m x k, (i, p) at A[i * ars + p * acs])
 * @ B, B given packed in panels of pb <= PW columns (Bp, see gmmx_pack_T: pb = PW; a stack of
 * at most 16 models: pb = 16).  Panels outer, blocks of GMMX_MR rows inner. */
/* the wide kernels (NR vectors, NWIDE lanes) for more than one vector's worth of columns in a
 * panel they tile exactly; the narrow ones (one vector, NW lanes) otherwise */
#define GMMX_MK_PICK(MK, mr, wide)                                                   \
    ((mr) > 2 ? ((wide) ? MK##_6w : MK##_6n) : ((wide) ? MK##_2w : MK##_2n))
#define GMMX_GEMM_BODY(T, PW, MK, NW, NWIDE)                                         \
    T tile[GMMX_MR * PW];                                                            \
    if (pb > PW) pb = PW;                                                            \
    int wide_ok = pb % (NWIDE) == 0;                                                 \
    ptrdiff_t np = (n + pb - 1) / pb;                                                \
    for (ptrdiff_t q = 0; q < np; ++q) {                                             \
        const T *bp = Bp + q * k * pb;                                               \
        ptrdiff_t j0 = q * pb, w = n - j0 < pb ? n - j0 : pb;                        \
        for (ptrdiff_t i0 = 0; i0 < m; i0 += GMMX_MR) {                              \
            ptrdiff_t mr = m - i0 < GMMX_MR ? m - i0 : GMMX_MR;                      \
            const T *a = A + i0 * ars;                                               \
            int wide = wide_ok && w > (NW);                                          \
            if (ccs == 1 && w == pb) {                                               \
                GMMX_MK_PICK(MK, mr, wide)(k, a, ars, acs, mr, bp, pb, w, C + i0 * crs + j0, crs); \
            } else {                                                                 \
                GMMX_MK_PICK(MK, mr, wide)(k, a, ars, acs, mr, bp, pb, w, tile, PW); \
                for (ptrdiff_t r = 0; r < mr; ++r)                                   \
                    for (ptrdiff_t j = 0; j < w; ++j)                                \
                        C[(i0 + r) * crs + (j0 + j) * ccs] = tile[r * PW + j];       \
            }                                                                        \
        }                                                                            \
    }

#define GMMX_GEMM_ARGS(T) (ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *A, ptrdiff_t ars,   \
                           ptrdiff_t acs, const T *Bp, ptrdiff_t pb, T *C, ptrdiff_t crs,      \
                           ptrdiff_t ccs)

/* (NW: lanes of the narrow kernels, one vector; NWIDE: of the wide ones, NR vectors) */
static void gmmx_gemm_f_portable GMMX_GEMM_ARGS(float) { GMMX_GEMM_BODY(float, GMMX_PW_f, gmmx_mk_f_portable, 1, 8) }
static void gmmx_gemm_d_portable GMMX_GEMM_ARGS(double) { GMMX_GEMM_BODY(double, GMMX_PW_d, gmmx_mk_d_portable, 1, 8) }
#ifdef GMMX_X86
GMMX_T_AVX2 static void gmmx_gemm_f_avx2 GMMX_GEMM_ARGS(float) { GMMX_GEMM_BODY(float, GMMX_PW_f, gmmx_mk_f_avx2, 8, 16) }
GMMX_T_AVX2 static void gmmx_gemm_d_avx2 GMMX_GEMM_ARGS(double) { GMMX_GEMM_BODY(double, GMMX_PW_d, gmmx_mk_d_avx2, 4, 8) }
GMMX_T_AVX512 static void gmmx_gemm_f_avx512 GMMX_GEMM_ARGS(float) { GMMX_GEMM_BODY(float, GMMX_PW_f, gmmx_mk_f_avx512, 16, 64) }
GMMX_T_AVX512 static void gmmx_gemm_d_avx512 GMMX_GEMM_ARGS(double) { GMMX_GEMM_BODY(double, GMMX_PW_d, gmmx_mk_d_avx512, 8, 32) }
#endif

/* C <- A @ B (B packed) with instruction set `isa` (GMMX_ISA_AUTO: the best; one this CPU
 * lacks falls back to the portable version). */
#define GMMX_GEMM_DISPATCH(SFX)                                                      \
    int m_ = gmmx_isa_mask();                                                        \
    if (isa == GMMX_ISA_AUTO) isa = gmmx_isa();                                      \
    else if (!(m_ & (1 << isa))) isa = GMMX_ISA_PORTABLE;                            \
    switch (isa) {                                                                   \
    GMMX_GEMM_CASES(SFX)                                                             \
    default: gmmx_gemm_##SFX##_portable(m, n, k, A, ars, acs, Bp, pb, C, crs, ccs);      \
    }
#ifdef GMMX_X86
#define GMMX_GEMM_CASES(SFX)                                                         \
    case GMMX_ISA_AVX512: gmmx_gemm_##SFX##_avx512(m, n, k, A, ars, acs, Bp, pb, C, crs, ccs); return; \
    case GMMX_ISA_AVX2: gmmx_gemm_##SFX##_avx2(m, n, k, A, ars, acs, Bp, pb, C, crs, ccs); return;
#else
#define GMMX_GEMM_CASES(SFX)
#endif

#define GMMX_DEFINE_GEMM_ISA(T, SFX)                                                 \
    static void gmmx_gemm_isa_##SFX(int isa, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *A, \
                                    ptrdiff_t ars, ptrdiff_t acs, const T *Bp, ptrdiff_t pb,  \
                                    T *C, ptrdiff_t crs, ptrdiff_t ccs)                      \
    { GMMX_GEMM_DISPATCH(SFX) }                                                      \
    static inline void gmmx_gemm_##SFX(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *A,   \
                                       ptrdiff_t ars, ptrdiff_t acs, const T *Bp, ptrdiff_t pb, \
                                       T *C, ptrdiff_t crs, ptrdiff_t ccs)                   \
    { gmmx_gemm_isa_##SFX(GMMX_ISA_AUTO, m, n, k, A, ars, acs, Bp, pb, C, crs, ccs); }
GMMX_DEFINE_GEMM_ISA(float, f)
GMMX_DEFINE_GEMM_ISA(double, d)

/* ------------------------------------------------------------------ any operands
 * C (m x n) <- A (m x k) @ B (k x n), all three with any strides (elements), B packed into
 * `work` (gmmx_matmul_work(m, n, k) values).  When that wastes fewer lanes, the product is
 * computed as C^T = B^T A^T instead (same bits: a product is exact in an FMA and the order
 * of the summed dimension is kept). */
static inline ptrdiff_t gmmx_matmul_work(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, ptrdiff_t pw)
{
    return gmmx_packed_size(k, m > n ? m : n, pw);
}

static inline int gmmx_transpose_pays(ptrdiff_t m, ptrdiff_t n, ptrdiff_t pw)
{
    ptrdiff_t direct = ((m + GMMX_MR - 1) / GMMX_MR) * GMMX_MR * (((n + pw - 1) / pw) * pw);
    ptrdiff_t swapped = ((n + GMMX_MR - 1) / GMMX_MR) * GMMX_MR * (((m + pw - 1) / pw) * pw);
    return swapped < direct;
}

#define GMMX_MATMUL_BODY(SFX, PW)                                                    \
    if (m <= 0 || n <= 0) return;                                                    \
    if (gmmx_transpose_pays(m, n, PW)) {                                             \
        gmmx_pack_##SFX(k, m, A, acs, ars, work);                                    \
        gmmx_gemm_##SFX(n, m, k, B, bcs, brs, work, PW, C, ccs, crs);                \
    } else {                                                                         \
        gmmx_pack_##SFX(k, n, B, brs, bcs, work);                                    \
        gmmx_gemm_##SFX(m, n, k, A, ars, acs, work, PW, C, crs, ccs);                \
    }

static inline void gmmx_matmul_f(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                 const float *A, ptrdiff_t ars, ptrdiff_t acs,
                                 const float *B, ptrdiff_t brs, ptrdiff_t bcs,
                                 float *C, ptrdiff_t crs, ptrdiff_t ccs, float *work)
{ GMMX_MATMUL_BODY(f, GMMX_PW_f) }
static inline void gmmx_matmul_d(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                 const double *A, ptrdiff_t ars, ptrdiff_t acs,
                                 const double *B, ptrdiff_t brs, ptrdiff_t bcs,
                                 double *C, ptrdiff_t crs, ptrdiff_t ccs, double *work)
{ GMMX_MATMUL_BODY(d, GMMX_PW_d) }

#endif
