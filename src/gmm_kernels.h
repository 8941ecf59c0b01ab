/* Row kernels of the E-step: in-place softmax of one row of K log-densities.
 *
 * Kept in plain C so that the compiler can vectorise them at -O3 for the
 * baseline x86-64 target; the Cython core (src/_core.pyx) calls them per row.
 * Knows nothing of Python, numpy, gmmext or speaker.
 */
#ifndef GMMEXT_KERNELS_H
#define GMMEXT_KERNELS_H

#include <math.h>
#include <stddef.h>

/* row[k] <- exp(row[k] - max) / sum_j exp(row[j] - max); returns log sum_j exp(row[j]).
 * A row whose entries are all -inf returns -inf and is left as zeros. */
static inline double gmmx_softmax_d(double *restrict row, ptrdiff_t K)
{
    double m = -INFINITY, s = 0.0;
    ptrdiff_t k;
    for (k = 0; k < K; ++k)
        m = row[k] > m ? row[k] : m;
    if (!(m > -INFINITY)) {
        for (k = 0; k < K; ++k) row[k] = 0.0;
        return m;
    }
    for (k = 0; k < K; ++k)
        row[k] = exp(row[k] - m);
    for (k = 0; k < K; ++k)
        s += row[k];
    double inv = 1.0 / s;
    for (k = 0; k < K; ++k)
        row[k] *= inv;
    return m + log(s);
}

static inline double gmmx_softmax_f(float *restrict row, ptrdiff_t K)
{
    float m = -INFINITY;
    double s = 0.0;
    ptrdiff_t k;
    for (k = 0; k < K; ++k)
        m = row[k] > m ? row[k] : m;
    if (!(m > -INFINITY)) {
        for (k = 0; k < K; ++k) row[k] = 0.0f;
        return (double)m;
    }
    for (k = 0; k < K; ++k)
        row[k] = expf(row[k] - m);
    for (k = 0; k < K; ++k)
        s += row[k];
    float inv = (float)(1.0 / s);
    for (k = 0; k < K; ++k)
        row[k] *= inv;
    return (double)m + log(s);
}

#endif
