/* gcomp C kernels for training: gcomp_backward_seq.h's convolution backward, the LSTM's training
 * forward and backward, and the GRU (forward, with or without its cache, and backward). C99 (also
 * C11), float32, only libc, libm, gcomp_kernels.h (its blocked GEMM does every product) and
 * gcomp_backward.h (the activations' derivatives), no allocation, deterministic: every output
 * element is accumulated in an order fixed by the sizes alone, whatever the thread count. With
 * OpenMP the GEMMs share their blocks among threads, the copies, transposes and column sums split
 * their rows, and the LSTM's recurrence runs on slices of the batch, one per thread (its rows never
 * interact); without it all runs serially.
 *
 * Convolution: dW = patches^T gy and dX = col2im(gy W^T). Rank 1 at stride 1 (the common Conv1D)
 * needs no im2col: gy laid on the padded length grid (zero rows where no window sits) makes every
 * kernel offset q one GEMM over the whole batch, dW_q = Xp[shift q]^T G (x or the grid transposed
 * once, whichever is smaller, since the GEMM takes no transposed operand), and at dilation 1 the rows
 * of the im2col of that grid overlap (k F consecutive floats from each row), so dX is a single GEMM
 * on a view of it with the flipped kernel, with no col2im scatter. Other shapes: im2col of a group
 * of samples, dW^T += gy^T patches per group, and dcols = gy W^T gathered back per input position.
 *
 * LSTM: the training forward is gk_lstm's computation (one GEMM for every step's input projection,
 * per step one GEMM for h W_rec and a fused gate loop) that also keeps, per (sample, step) in x's
 * step order, the gates, c, act(c), the previous h and (only when an activation's derivative needs
 * its input) the gate pre-activations. The backward runs the fused gate derivatives and one small
 * GEMM per step (dh_prev = dz R^T), writing dz in x's step order, so that [dW; dR] = [x; h_prev]^T
 * dz and dx = dz W^T are one GEMM each over all steps and dx comes out in x's own order. */
#include "gcomp_backward_seq.h"
#include "gcomp_backward.h" /* the activations' derivatives (GRU) */
#include "gcomp_math.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifndef GK_PRAGMA
#ifdef _OPENMP
#define GK_PRAGMA(x) _Pragma(#x)
#else
#define GK_PRAGMA(x)
#endif
#endif

/* ---- helpers ---------------------------------------------------------------------------------- */

static long gk_bs_min(long a, long b) { return a < b ? a : b; }
static long gk_bs_max(long a, long b) { return a > b ? a : b; }
static long gk_bs_r16(long n) { return (gk_bs_max(n, 0) + 15) / 16 * 16; } /* 64-byte multiples */

static void gk_bs_zero(float *p, long n)
{
    if (p && n > 0) memset(p, 0, (size_t)n * sizeof *p);
}

/* y[j * ldy + i] = x[i * ldx + j] (i < rows, j < cols), in 32 x 32 blocks; row blocks shared among
 * threads when large. */
static void gk_bs_transpose(const float *x, long ldx, float *y, long ldy, long rows, long cols)
{
    enum { B = 32 };
    const long nb = (rows + B - 1) / B;
    long ib;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * cols >= 262144L && !omp_in_parallel()))
    for (ib = 0; ib < nb; ++ib) {
        const long i0 = ib * B, i1 = gk_bs_min(i0 + B, rows);
        long j0, i, j;
        for (j0 = 0; j0 < cols; j0 += B) {
            const long j1 = gk_bs_min(j0 + B, cols);
            for (j = j0; j < j1; ++j)
                for (i = i0; i < i1; ++i) y[j * ldy + i] = x[i * ldx + j];
        }
    }
}

/* g[j] = sum over r < rows of x[r * ldx + j] (j < n), summed in double in row order. */
static void gk_bs_colsum(const float *x, long ldx, long rows, long n, float *g)
{
    enum { CH = 64 };
    const long nc = (n + CH - 1) / CH;
    long cb;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * n >= 262144L && nc > 1 && !omp_in_parallel()))
    for (cb = 0; cb < nc; ++cb) {
        double acc[CH];
        const long j0 = cb * CH, jn = gk_bs_min(CH, n - j0);
        long r, j;
        for (j = 0; j < jn; ++j) acc[j] = 0.0;
        for (r = 0; r < rows; ++r) {
            const float *xr = x + r * ldx + j0;
            for (j = 0; j < jn; ++j) acc[j] += (double)xr[j];
        }
        for (j = 0; j < jn; ++j) g[j0 + j] = (float)acc[j];
    }
}

/* y[i] += x[i] */
static void gk_bs_add(float *y, const float *x, long n)
{
    enum { CHUNK = 8192 };
    const long nc = (n + CHUNK - 1) / CHUNK;
    long cb;
    GK_PRAGMA(omp parallel for schedule(static) if (n >= 262144L && !omp_in_parallel()))
    for (cb = 0; cb < nc; ++cb) {
        const long i0 = cb * CHUNK, i1 = gk_bs_min(n, i0 + CHUNK);
        long i;
        for (i = i0; i < i1; ++i) y[i] += x[i];
    }
}

/* ---- convolution backward --------------------------------------------------------------------- */

#ifndef GK_BS_GROUP_FLOATS
#define GK_BS_GROUP_FLOATS (1L << 22) /* im2col floats per sample group on the general path */
#endif

/* Samples per group on the general path: as many as keep a group's patches near
 * GK_BS_GROUP_FLOATS, at least one. group * rows <= gk_bs_group_rows_bound(batch, rows, kcols). */
static long gk_bs_conv_group(long batch, long rows, long kcols)
{
    const long budget = GK_BS_GROUP_FLOATS / gk_bs_max(1, kcols) / gk_bs_max(1, rows);
    return gk_bs_max(1, gk_bs_min(batch, budget));
}

static long gk_bs_group_rows_bound(long batch, long rows, long kcols)
{
    return gk_bs_max(rows, gk_bs_min(batch * rows, GK_BS_GROUP_FLOATS / gk_bs_max(1, kcols)));
}

/* Scratch of the general path's weight phase (patches, gy^T, dW^T and a partial dW^T) and input
 * phase (W^T, dcols) for `grows` patch rows per group. */
static long gk_bs_general_w(long grows, long kcols, long filters)
{
    return gk_bs_r16(grows * kcols) + gk_bs_r16(filters * grows) + 2 * gk_bs_r16(filters * kcols);
}

static long gk_bs_general_x(long grows, long kcols, long filters)
{
    return gk_bs_r16(filters * kcols) + gk_bs_r16(grows * kcols);
}

long gk_conv_backward_scratch(long batch, const long in[2], long channels, const long kernel[2],
                              long filters, const long out[2])
{
    const long rows = out[0] * out[1], kcols = kernel[0] * kernel[1] * channels;
    const long grows = gk_bs_group_rows_bound(batch, rows, kcols);
    const long gx = gk_bs_general_x(grows, kcols, filters);
    long need = gk_bs_max(gk_bs_general_w(grows, kcols, filters), gx);
    if (in[1] == 1 && out[1] == 1 && kernel[1] == 1) {
        /* the rank-1 stride-1 path, for a padded length up to max(in, out) + max(k - 1, in / 4) */
        const long lp = gk_bs_max(in[0], out[0]) + gk_bs_max(kernel[0] - 1, in[0] / 4);
        const long grid = gk_bs_r16((batch + 1) * lp * filters);
        const long rest = gk_bs_max(gk_bs_max(gk_bs_r16(channels * batch * lp),
                                              gk_bs_r16(kernel[0] * filters * channels)), gx);
        need = gk_bs_max(need, grid + rest);
    }
    return need + 16;
}

/* Patches of n samples: (n * out0 * out1, k0 * k1 * C), channels innermost, zeros where the
 * window leaves x (as gk_conv2d's). */
static void gk_bs_im2col(const float *x, long n, const long in[2], long channels, const long ks[2],
                         const long stride[2], const long dilation[2], const long pad[2],
                         const long out[2], float *patches)
{
    const long kcols = ks[0] * ks[1] * channels;
    const long per = out[0] * out[1], rows = n * per;
    const long run = ks[1] * channels;
    long r;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * kcols >= 65536L && !omp_in_parallel()))
    for (r = 0; r < rows; ++r) {
        const long s = r / per, o = r % per, o0 = o / out[1], o1 = o % out[1];
        const float *xs = x + s * in[0] * in[1] * channels;
        float *dst = patches + r * kcols;
        long a, b;
        for (a = 0; a < ks[0]; ++a, dst += run) {
            const long i0 = o0 * stride[0] - pad[0] + a * dilation[0];
            const long base = o1 * stride[1] - pad[1];
            const float *xrow = xs + gk_bs_max(0, gk_bs_min(i0, in[0] - 1)) * in[1] * channels;
            if (i0 < 0 || i0 >= in[0]) {
                memset(dst, 0, (size_t)run * sizeof *dst);
            } else if (dilation[1] == 1) {
                const long b0 = gk_bs_min(ks[1], gk_bs_max(0, -base));
                const long b1 = gk_bs_max(b0, gk_bs_min(ks[1], in[1] - base));
                if (b0 > 0) memset(dst, 0, (size_t)(b0 * channels) * sizeof *dst);
                if (b1 > b0)
                    memcpy(dst + b0 * channels, xrow + (base + b0) * channels,
                           (size_t)((b1 - b0) * channels) * sizeof *dst);
                if (b1 < ks[1])
                    memset(dst + b1 * channels, 0, (size_t)((ks[1] - b1) * channels) * sizeof *dst);
            } else {
                for (b = 0; b < ks[1]; ++b) {
                    const long i1 = base + b * dilation[1];
                    if (i1 < 0 || i1 >= in[1])
                        memset(dst + b * channels, 0, (size_t)channels * sizeof *dst);
                    else
                        memcpy(dst + b * channels, xrow + i1 * channels, (size_t)channels * sizeof *dst);
                }
            }
        }
    }
}

/* gx of n samples from their dcols (n * out0 * out1, k0 * k1 * C): each input position gathers the
 * rows of every window over it, kernel offsets in order (the reference's order of additions). */
static void gk_bs_col2im(const float *dcols, long n, const long in[2], long channels, const long ks[2],
                         const long stride[2], const long dilation[2], const long pad[2],
                         const long out[2], float *gx)
{
    const long kcols = ks[0] * ks[1] * channels;
    const long per = in[0] * in[1], total = n * per;
    long p;
    GK_PRAGMA(omp parallel for schedule(static) if (total * kcols >= 65536L && !omp_in_parallel()))
    for (p = 0; p < total; ++p) {
        const long s = p / per, i0 = (p % per) / in[1], i1 = (p % per) % in[1];
        float *dst = gx + p * channels;
        long a, b, c;
        memset(dst, 0, (size_t)channels * sizeof *dst);
        for (a = 0; a < ks[0]; ++a) {
            const long t0 = i0 + pad[0] - a * dilation[0];
            long o0;
            if (t0 < 0 || t0 % stride[0] != 0) continue;
            o0 = t0 / stride[0];
            if (o0 >= out[0]) continue;
            for (b = 0; b < ks[1]; ++b) {
                const long t1 = i1 + pad[1] - b * dilation[1];
                const float *src;
                long o1;
                if (t1 < 0 || t1 % stride[1] != 0) continue;
                o1 = t1 / stride[1];
                if (o1 >= out[1]) continue;
                src = dcols + ((s * out[0] + o0) * out[1] + o1) * kcols + (a * ks[1] + b) * channels;
                for (c = 0; c < channels; ++c) dst[c] += src[c];
            }
        }
    }
}

void gk_conv_backward(const float *x, const float *kernel, const float *gy, float *gx, float *gkernel,
                      float *gbias, long batch, const long in[2], long channels, const long kernel_size[2],
                      long filters, const long stride[2], const long dilation[2], const long pad_before[2],
                      const long out[2], float *scratch)
{
    const long *ks = kernel_size;
    const long rows = out[0] * out[1], kcols = ks[0] * ks[1] * channels, f = filters;
    const long xsize = in[0] * in[1] * channels;
    const long avail = gk_conv_backward_scratch(batch, in, channels, kernel_size, filters, out);
    /* rank 1 at stride 1: padded length lp, the grid's extra rows ext = (k - 1) d, pad after pa */
    const long ext = (ks[0] - 1) * dilation[0], lp = out[0] + ext;
    const long pb = pad_before[0], pa = lp - pb - in[0];
    const int fast = in[1] == 1 && out[1] == 1 && ks[1] == 1 && pad_before[1] == 0 && stride[0] == 1 &&
                     pb >= 0 && pa >= 0;
    int fast_w = fast && gkernel != NULL, fast_x = fast && gx != NULL && dilation[0] == 1;
    long grid = 0, group, s0;

    if (batch <= 0 || rows <= 0 || f <= 0 || kcols <= 0) {
        gk_bs_zero(gkernel, kcols * f);
        gk_bs_zero(gbias, f);
        gk_bs_zero(gx, batch * xsize);
        return;
    }
    if (gbias) gk_bs_colsum(gy, f, batch * rows, f, gbias);
    if (!gkernel && !gx) return;

    if (fast_w || fast_x) {
        const long w_need = fast_w ? gk_bs_r16(channels * batch * lp) :
                            gkernel ? gk_bs_general_w(gk_bs_conv_group(batch, rows, kcols) * rows, kcols, f) : 0;
        const long x_need = fast_x ? gk_bs_r16(ks[0] * f * channels) :
                            gx ? gk_bs_general_x(gk_bs_conv_group(batch, rows, kcols) * rows, kcols, f) : 0;
        grid = gk_bs_r16((batch * lp + ext) * f);
        if (grid + gk_bs_max(w_need, x_need) > avail) fast_w = fast_x = 0, grid = 0;
    }

    if (grid > 0) {
        /* G: ext zero rows, then per sample its out rows of gy and ext zero rows, F floats each */
        float *gg = scratch;
        long s;
        memset(gg, 0, (size_t)(ext * f) * sizeof *gg);
        GK_PRAGMA(omp parallel for schedule(static) if (batch * lp * f >= 262144L && !omp_in_parallel()))
        for (s = 0; s < batch; ++s) {
            float *dst = gg + (ext + s * lp) * f;
            memcpy(dst, gy + s * rows * f, (size_t)(rows * f) * sizeof *dst);
            if (ext > 0) memset(dst + rows * f, 0, (size_t)(ext * f) * sizeof *dst);
        }
    }

    /* ---- dW ---- */
    if (gkernel && fast_w && f < channels && pb == 0 && pa == 0 &&
        grid + gk_bs_r16(f * batch * lp) + gk_bs_r16(f * kcols) <= avail) {
        /* unpadded, fewer filters than channels: transpose the grid rather than x, read x in place;
         * dW_q^T (F, C) = G^T[:, r] x[q d + r] into dW^T (F, kcols), transposed at the end */
        const float *gg = scratch + ext * f;
        const long ld = batch * lp, r = ld - ext;
        float *gt = scratch + grid, *dwt = gt + gk_bs_r16(f * ld);
        long q;
        gk_bs_transpose(gg, f, gt, ld, r, f);
        for (q = 0; q < ks[0]; ++q)
            gk_matmul_strided(gt, ld, x + q * dilation[0] * channels, channels, NULL, dwt + q * channels, kcols, f,
                              r, channels);
        gk_bs_transpose(dwt, kcols, gkernel, f, f, kcols);
    } else if (gkernel && fast_w) {
        /* Xp^T (C, batch * lp): each sample's padded length as columns; dW_q = Xp^T[:, q d + r] G[r] */
        const float *gg = scratch + ext * f;
        float *xpt = scratch + grid;
        const long ld = batch * lp, r = ld - ext;
        long s, q;
        GK_PRAGMA(omp parallel for schedule(static) if (batch * xsize >= 262144L && !omp_in_parallel()))
        for (s = 0; s < batch; ++s) {
            long c;
            for (c = 0; c < channels; ++c) {
                float *row = xpt + c * ld + s * lp;
                if (pb > 0) memset(row, 0, (size_t)pb * sizeof *row);
                if (pa > 0) memset(row + pb + in[0], 0, (size_t)pa * sizeof *row);
            }
            gk_bs_transpose(x + s * xsize, channels, xpt + s * lp + pb, ld, in[0], channels);
        }
        for (q = 0; q < ks[0]; ++q)
            gk_matmul_strided(xpt + q * dilation[0], ld, gg, f, NULL, gkernel + q * channels * f, f, channels,
                              r, f);
    } else if (gkernel) {
        /* per group of samples: dW^T (F, kcols) += gy^T (F, rows) @ patches (rows, kcols) */
        const long gs = gk_bs_conv_group(batch, rows, kcols);
        float *cols = scratch + grid;
        float *gyt = cols + gk_bs_r16(gs * rows * kcols);
        float *dwt = gyt + gk_bs_r16(f * gs * rows);
        float *part = dwt + gk_bs_r16(f * kcols);
        for (s0 = 0; s0 < batch; s0 += gs) {
            const long n = gk_bs_min(gs, batch - s0);
            gk_bs_im2col(x + s0 * xsize, n, in, channels, ks, stride, dilation, pad_before, out, cols);
            gk_bs_transpose(gy + s0 * rows * f, f, gyt, n * rows, n * rows, f);
            gk_matmul(gyt, cols, NULL, s0 == 0 ? dwt : part, f, n * rows, kcols);
            if (s0 > 0) gk_bs_add(dwt, part, f * kcols);
        }
        gk_bs_transpose(dwt, kcols, gkernel, f, f, kcols);
    }

    /* ---- dX ---- */
    if (gx && fast_x) {
        /* dXp[s, j] = sum_q G[ext + s lp + j - q] W_q^T: the k F floats from row s lp + j of the
         * grid (an overlapping-rows view, lda = F) times the flipped kernel (k F, C) */
        const float *gg = scratch;
        float *wf = scratch + grid;
        long q, s;
        for (q = 0; q < ks[0]; ++q)
            gk_bs_transpose(kernel + (ks[0] - 1 - q) * channels * f, f, wf + q * f * channels, channels,
                            channels, f);
        if (pb == 0 && lp == in[0]) {
            gk_matmul_strided(gg, f, wf, channels, NULL, gx, channels, batch * in[0], ks[0] * f, channels);
        } else { /* padded: one GEMM per sample, samples shared among threads */
            GK_PRAGMA(omp parallel for schedule(static) if (batch > 1 && batch * xsize * ks[0] * f >= 200000L && !omp_in_parallel()))
            for (s = 0; s < batch; ++s)
                gk_matmul_strided(gg + (s * lp + pb) * f, f, wf, channels, NULL, gx + s * xsize, channels,
                                  in[0], ks[0] * f, channels);
        }
    } else if (gx) {
        /* per group: dcols = gy W^T (rows, kcols), gathered back over the windows */
        float *wt = scratch + grid;
        float *dcols = wt + gk_bs_r16(f * kcols);
        group = gk_bs_conv_group(batch, rows, kcols);
        gk_bs_transpose(kernel, f, wt, kcols, kcols, f);
        for (s0 = 0; s0 < batch; s0 += group) {
            const long n = gk_bs_min(group, batch - s0);
            gk_matmul(gy + s0 * rows * f, wt, NULL, dcols, n * rows, f, kcols);
            gk_bs_col2im(dcols, n, in, channels, ks, stride, dilation, pad_before, out, gx + s0 * xsize);
        }
    }
}

/* ---- LSTM: activations ------------------------------------------------------------------------ */
/* The forward's fused rows use gcomp_math.h's float32 approximations, as gk_lstm does, so that
 * gk_lstm_train's outputs are gk_lstm's to the bit. */


static int gk_bs_elementwise(int act) { return act != GK_SOFTMAX && act != GK_LOG_SOFTMAX; }

/* Whether the activation's derivative needs its input (else its output suffices). */
static int gk_bs_slope_needs_x(int act)
{
    return !(act == GK_LINEAR || act == GK_SIGMOID || act == GK_TANH || act == GK_EXPONENTIAL ||
             act == GK_SOFTMAX || act == GK_LOG_SOFTMAX);
}

static double gk_bs_sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* g = the vector-Jacobian product of activation `act` at x (its input; read only when
 * gk_bs_slope_needs_x) with output y, for the output gradient g (n values, in place); softmax and
 * log_softmax act on all n. The NumPy runtime's formulas (vjp.py). */
static void gk_bs_act_vjp(int act, const float *x, const float *y, float *g, long n)
{
    const double selu_alpha = 1.6732632423543772848170429916717;
    const double selu_scale = 1.0507009873554804934193349852946;
    long j;
    switch (act) {
    case GK_RELU:
        for (j = 0; j < n; ++j) g[j] = x[j] > 0.0f ? g[j] : 0.0f;
        break;
    case GK_RELU6:
        for (j = 0; j < n; ++j) g[j] = (x[j] > 0.0f && x[j] < 6.0f) ? g[j] : 0.0f;
        break;
    case GK_LEAKY_RELU:
        for (j = 0; j < n; ++j) g[j] = x[j] >= 0.0f ? g[j] : g[j] * 0.2f;
        break;
    case GK_SIGMOID:
        for (j = 0; j < n; ++j) g[j] = ((1.0f - y[j]) * y[j]) * g[j];
        break;
    case GK_TANH:
        for (j = 0; j < n; ++j) g[j] = (1.0f - y[j] * y[j]) * g[j];
        break;
    case GK_ELU:
        for (j = 0; j < n; ++j) g[j] = x[j] >= 0.0f ? g[j] : g[j] * (y[j] + 1.0f);
        break;
    case GK_SELU:
        for (j = 0; j < n; ++j)
            g[j] = x[j] >= 0.0f ? g[j] * (float)selu_scale : g[j] * (y[j] + (float)(selu_scale * selu_alpha));
        break;
    case GK_SOFTPLUS:
        for (j = 0; j < n; ++j) g[j] = g[j] * (float)gk_bs_sigmoid_d((double)x[j]);
        break;
    case GK_SOFTSIGN:
        for (j = 0; j < n; ++j) {
            float d = 1.0f + fabsf(x[j]);
            d *= d;
            g[j] = g[j] / d;
        }
        break;
    case GK_SILU:
        for (j = 0; j < n; ++j) {
            const float s = (float)gk_bs_sigmoid_d((double)x[j]);
            g[j] = g[j] * (y[j] + s * (1.0f - y[j]));
        }
        break;
    case GK_GELU:
        for (j = 0; j < n; ++j) {
            const double v = (double)x[j];
            const double cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
            const double pdf = exp(-0.5 * v * v) / sqrt(2.0 * 3.14159265358979323846);
            g[j] = (float)((double)g[j] * (cdf + v * pdf));
        }
        break;
    case GK_HARD_SIGMOID:
        for (j = 0; j < n; ++j) g[j] = (x[j] > -3.0f && x[j] < 3.0f) ? g[j] / 6.0f : 0.0f;
        break;
    case GK_HARD_SILU:
        for (j = 0; j < n; ++j) {
            float d = gk_hard_sigmoidf(x[j]);
            d += (x[j] > -3.0f && x[j] < 3.0f) ? x[j] / 6.0f : 0.0f;
            g[j] = d * g[j];
        }
        break;
    case GK_MISH:
        for (j = 0; j < n; ++j) {
            const double v = (double)x[j];
            const double sp = log1p(exp(-fabs(v))) + (v > 0.0 ? v : 0.0);
            const double t = tanh(sp);
            g[j] = (float)((double)g[j] * (t + v * (1.0 - t * t) * gk_bs_sigmoid_d(v)));
        }
        break;
    case GK_EXPONENTIAL:
        for (j = 0; j < n; ++j) g[j] = g[j] * y[j];
        break;
    case GK_SOFTMAX: { /* y (g - sum(g y)) */
        double s = 0.0;
        float sf;
        for (j = 0; j < n; ++j) s += (double)(g[j] * y[j]);
        sf = (float)s;
        for (j = 0; j < n; ++j) g[j] = g[j] * y[j] - y[j] * sf;
        break;
    }
    case GK_LOG_SOFTMAX: { /* g - exp(y) sum(g) */
        double s = 0.0;
        float sf;
        for (j = 0; j < n; ++j) s += (double)g[j];
        sf = (float)s;
        for (j = 0; j < n; ++j) g[j] = g[j] - (float)exp((double)y[j]) * sf;
        break;
    }
    default: /* GK_LINEAR */
        break;
    }
}

/* ---- LSTM: training forward ------------------------------------------------------------------- */

/* Cache layout, rows (sample, step) in x's step order: gates (4u), pre-activations (4u), c_t (u),
 * act(c_t) (u), h_{t-1} (u). Offsets in floats. */
struct gk_bs_lstm_layout {
    long gates, pre, c, ac, hprev;
};

static struct gk_bs_lstm_layout gk_bs_lstm_cache_layout(long batch, long steps, long units)
{
    struct gk_bs_lstm_layout l;
    const long n = batch * steps;
    l.gates = 0;
    l.pre = l.gates + n * 4 * units;
    l.c = l.pre + n * 4 * units;
    l.ac = l.c + n * units;
    l.hprev = l.ac + n * units;
    return l;
}

long gk_lstm_cache_size(long batch, long steps, long in_dim, long units)
{
    (void)in_dim;
    return gk_bs_max(1, 11 * batch * steps * units);
}

long gk_lstm_train_scratch(long batch, long steps, long in_dim, long units)
{
    (void)steps;
    (void)in_dim;
    return gk_bs_max(1, 6 * batch * units);
}

/* One row of one step, common activation pairs: gt holds x W + b and becomes the gates (+ rr, the
 * recurrent product, unless NULL at the first step); pt (or NULL) gets the pre-activations; c and h
 * advance; cs, as get c_t and act(c_t). The arithmetic of gk_lstm's fused rows. */
#define GK_BS_DEFINE_LSTM_ROW(NAME, ACT, REC)                                                    \
    static void NAME(float *restrict gt, const float *restrict rr, float *restrict pt,           \
                     float *restrict cr, float *restrict hr, float *restrict cs,                 \
                     float *restrict as, long u)                                                 \
    {                                                                                            \
        long j;                                                                                  \
        if (rr)                                                                                  \
            for (j = 0; j < 4 * u; ++j) gt[j] = gt[j] + rr[j];                                   \
        if (pt) memcpy(pt, gt, (size_t)(4 * u) * sizeof *pt);                                    \
        for (j = 0; j < u; ++j) {                                                                \
            const float gi = REC(gt[j]), gf = REC(gt[u + j]), gg = ACT(gt[2 * u + j]);           \
            const float go = REC(gt[3 * u + j]);                                                 \
            const float cn = gf * cr[j] + gi * gg;                                               \
            const float ac = ACT(cn);                                                            \
            gt[j] = gi;                                                                          \
            gt[u + j] = gf;                                                                      \
            gt[2 * u + j] = gg;                                                                  \
            gt[3 * u + j] = go;                                                                  \
            cr[j] = cn;                                                                          \
            cs[j] = cn;                                                                          \
            as[j] = ac;                                                                          \
            hr[j] = go * ac;                                                                     \
        }                                                                                        \
    }

GK_BS_DEFINE_LSTM_ROW(gk_bs_lstm_row_tanh_sigmoid, gk_tanhf, gk_sigmoidf)
GK_BS_DEFINE_LSTM_ROW(gk_bs_lstm_row_tanh_hard_sigmoid, gk_tanhf, gk_hard_sigmoidf)
GK_BS_DEFINE_LSTM_ROW(gk_bs_lstm_row_relu_sigmoid, gk_reluf, gk_sigmoidf)

/* The generic row, by gk_activation (softmax-like ones act on each gate's u values), as gk_lstm's. */
static void gk_bs_lstm_row(float *gt, const float *rr, float *pt, float *cr, float *hr, float *cs, float *as,
                           long u, int activation, int recurrent_activation)
{
    long j;
    if (rr)
        for (j = 0; j < 4 * u; ++j) gt[j] += rr[j];
    if (pt) memcpy(pt, gt, (size_t)(4 * u) * sizeof *pt);
    if (gk_bs_elementwise(recurrent_activation)) {
        gk_activation(recurrent_activation, gt, gt, 1, 2 * u);
    } else {
        gk_activation(recurrent_activation, gt, gt, 1, u);
        gk_activation(recurrent_activation, gt + u, gt + u, 1, u);
    }
    gk_activation(activation, gt + 2 * u, gt + 2 * u, 1, u);
    gk_activation(recurrent_activation, gt + 3 * u, gt + 3 * u, 1, u);
    for (j = 0; j < u; ++j) cr[j] = gt[u + j] * cr[j] + gt[j] * gt[2 * u + j];
    memcpy(cs, cr, (size_t)u * sizeof *cs);
    gk_activation(activation, cr, as, 1, u);
    for (j = 0; j < u; ++j) hr[j] = gt[3 * u + j] * as[j];
}

/* Threads for the recurrence: batch rows never interact (each row's h and c, and dh and dc, depend
 * only on that row), so each thread runs every step on its own slice of rows, GEMMs included,
 * without barriers. At least 4 rows per thread; 1 when small or already in a parallel region. */
static int gk_bs_lstm_threads(long batch, long steps, long units)
{
#ifdef _OPENMP
    if (batch >= 8 && batch * steps * units >= 65536L && !omp_in_parallel())
        return (int)gk_bs_min(omp_get_max_threads(), batch / 4);
#else
    (void)batch;
    (void)steps;
    (void)units;
#endif
    return 1;
}

/* The part of the slice [b0, b1) of a batch that a thread takes: rows [*r0, *r1). */
static void gk_bs_slice(long batch, long *r0, long *r1)
{
#ifdef _OPENMP
    const long nt = omp_get_num_threads(), id = omp_get_thread_num();
    *r0 = batch * id / nt;
    *r1 = batch * (id + 1) / nt;
#else
    *r0 = 0;
    *r1 = batch;
#endif
}

/* Every step of the recurrence for rows [b0, b1) (z = x W + b already in the cache's gate rows). */
static void gk_bs_lstm_forward_rows(long b0, long b1, const float *recurrent, float *y_seq, long steps, long u,
                                    int activation, int recurrent_activation, int go_backwards, float *cache,
                                    const struct gk_bs_lstm_layout *l, int store_pre, float *rr, float *hb,
                                    float *cb)
{
    const long g4 = 4 * u;
    long t, b;
    for (t = 0; t < steps; ++t) {
        const long ts = go_backwards ? steps - 1 - t : t; /* x's step processed now */
        if (t > 0) gk_matmul(hb + b0 * u, recurrent, NULL, rr + b0 * g4, b1 - b0, u, g4);
        for (b = b0; b < b1; ++b) {
            const long row = b * steps + ts;
            float *gt = cache + l->gates + row * g4;
            float *pt = store_pre ? cache + l->pre + row * g4 : NULL;
            float *cs = cache + l->c + row * u, *as = cache + l->ac + row * u;
            const float *rb = t > 0 ? rr + b * g4 : NULL;
            float *cr = cb + b * u, *hr = hb + b * u;
            memcpy(cache + l->hprev + row * u, hr, (size_t)u * sizeof *hr);
            if (activation == GK_TANH && recurrent_activation == GK_SIGMOID)
                gk_bs_lstm_row_tanh_sigmoid(gt, rb, pt, cr, hr, cs, as, u);
            else if (activation == GK_TANH && recurrent_activation == GK_HARD_SIGMOID)
                gk_bs_lstm_row_tanh_hard_sigmoid(gt, rb, pt, cr, hr, cs, as, u);
            else if (activation == GK_RELU && recurrent_activation == GK_SIGMOID)
                gk_bs_lstm_row_relu_sigmoid(gt, rb, pt, cr, hr, cs, as, u);
            else
                gk_bs_lstm_row(gt, rb, pt, cr, hr, cs, as, u, activation, recurrent_activation);
            if (y_seq) memcpy(y_seq + (b * steps + t) * u, hr, (size_t)u * sizeof *hr);
        }
    }
}

void gk_lstm_train(const float *x, const float *kernel, const float *recurrent, const float *bias,
                   float *y_seq, float *h, float *c, long batch, long steps, long in_dim, long units,
                   int activation, int recurrent_activation, int go_backwards, float *cache,
                   float *scratch)
{
    const long u = units, g4 = 4 * units, n = batch * steps;
    const struct gk_bs_lstm_layout l = gk_bs_lstm_cache_layout(batch, steps, units);
    const int store_pre = gk_bs_slope_needs_x(activation) || gk_bs_slope_needs_x(recurrent_activation);
    const int threads = gk_bs_lstm_threads(batch, steps, units);
    float *rr = scratch;              /* (batch, 4u): h_{t-1} @ recurrent */
    float *hb = scratch + batch * g4; /* h (batch, u) */
    float *cb = hb + batch * u;       /* c (batch, u) */
    if (batch <= 0 || u <= 0) return;
    memset(hb, 0, (size_t)(2 * batch * u) * sizeof *hb);
    if (steps > 0) gk_matmul(x, kernel, bias, cache + l.gates, n, in_dim, g4);
    if (threads > 1) {
        GK_PRAGMA(omp parallel num_threads(threads))
        {
            long b0, b1;
            gk_bs_slice(batch, &b0, &b1);
            gk_bs_lstm_forward_rows(b0, b1, recurrent, y_seq, steps, u, activation, recurrent_activation,
                                    go_backwards, cache, &l, store_pre, rr, hb, cb);
        }
    } else {
        gk_bs_lstm_forward_rows(0, batch, recurrent, y_seq, steps, u, activation, recurrent_activation,
                                go_backwards, cache, &l, store_pre, rr, hb, cb);
    }
    if (h) memcpy(h, hb, (size_t)(batch * u) * sizeof *h);
    if (c) memcpy(c, cb, (size_t)(batch * u) * sizeof *c);
}

/* ---- LSTM: backward --------------------------------------------------------------------------- */

long gk_lstm_backward_scratch(long batch, long steps, long in_dim, long units)
{
    const long u = units, g4 = 4 * units, n = batch * steps;
    return gk_bs_r16(n * g4) + 2 * gk_bs_r16(batch * u) + gk_bs_r16(u) + gk_bs_r16(g4 * u) +
           gk_bs_r16(g4 * in_dim) + gk_bs_r16((in_dim + u) * n) + gk_bs_r16((in_dim + u) * g4) + 16;
}

/* One row of one step backward for tanh / sigmoid: from dh (gradient reaching h_t, + gs, the
 * sequence output's, unless NULL) and dc (reaching c_t), dz (4u) = dL/d pre-activations, and dc
 * becomes the gradient reaching c_{t-1}. The NumPy runtime's order of operations. */
static void gk_bs_lstm_back_row_tanh_sigmoid(const float *restrict g, const float *restrict ac,
                                             const float *restrict cprev, const float *restrict gs,
                                             float *restrict dh, float *restrict dc, float *restrict dz,
                                             long u)
{
    long j;
    if (gs)
        for (j = 0; j < u; ++j) dh[j] += gs[j];
    for (j = 0; j < u; ++j) {
        const float gi = g[j], gf = g[u + j], gg = g[2 * u + j], go = g[3 * u + j], a = ac[j];
        const float dhv = dh[j];
        const float dcv = dc[j] + (dhv * go) * (1.0f - a * a);
        dz[j] = (dcv * gg) * (gi * (1.0f - gi));
        dz[u + j] = (dcv * cprev[j]) * (gf * (1.0f - gf));
        dz[2 * u + j] = (dcv * gi) * (1.0f - gg * gg);
        dz[3 * u + j] = (dhv * a) * (go * (1.0f - go));
        dc[j] = dcv * gf;
    }
}

/* The same for any activations, by gk_bs_act_vjp (pz: the pre-activations, or NULL when not kept;
 * cs: c_t). dz's o block serves as the temporary for act(c)'s vjp. */
static void gk_bs_lstm_back_row(const float *g, const float *pz, const float *cs, const float *ac,
                                const float *cprev, const float *gs, float *dh, float *dc, float *dz, long u,
                                int activation, int recurrent_activation)
{
    float *tmp = dz + 3 * u;
    long j;
    if (gs)
        for (j = 0; j < u; ++j) dh[j] += gs[j];
    for (j = 0; j < u; ++j) tmp[j] = dh[j] * g[3 * u + j];
    gk_bs_act_vjp(activation, cs, ac, tmp, u);
    for (j = 0; j < u; ++j) {
        dc[j] += tmp[j];
        dz[j] = dc[j] * g[2 * u + j];
        dz[u + j] = dc[j] * cprev[j];
        dz[2 * u + j] = dc[j] * g[j];
        dz[3 * u + j] = dh[j] * ac[j];
    }
    gk_bs_act_vjp(recurrent_activation, pz, g, dz, u);
    gk_bs_act_vjp(recurrent_activation, pz ? pz + u : NULL, g + u, dz + u, u);
    gk_bs_act_vjp(activation, pz ? pz + 2 * u : NULL, g + 2 * u, dz + 2 * u, u);
    gk_bs_act_vjp(recurrent_activation, pz ? pz + 3 * u : NULL, g + 3 * u, dz + 3 * u, u);
    for (j = 0; j < u; ++j) dc[j] *= g[u + j];
}

/* Every step backward for rows [b0, b1): dz rows, and dh, dc carried down to step 0. */
static void gk_bs_lstm_backward_rows(long b0, long b1, const float *cache, const struct gk_bs_lstm_layout *l,
                                     const float *g_y, int return_sequences, long steps, long u, int activation,
                                     int recurrent_activation, int go_backwards, int store_pre, const float *ut,
                                     const float *zero, float *dz, float *dh, float *dc)
{
    const long g4 = 4 * u;
    const int fused = activation == GK_TANH && recurrent_activation == GK_SIGMOID;
    long t, b;
    for (t = steps - 1; t >= 0; --t) {
        const long ts = go_backwards ? steps - 1 - t : t; /* x's step processed at t */
        const long tp = go_backwards ? ts + 1 : ts - 1;   /* the step processed before */
        for (b = b0; b < b1; ++b) {
            const long row = b * steps + ts;
            const float *gs = return_sequences && g_y ? g_y + (b * steps + t) * u : NULL;
            const float *cprev = t > 0 ? cache + l->c + (b * steps + tp) * u : zero;
            if (fused)
                gk_bs_lstm_back_row_tanh_sigmoid(cache + l->gates + row * g4, cache + l->ac + row * u, cprev, gs,
                                                 dh + b * u, dc + b * u, dz + row * g4, u);
            else
                gk_bs_lstm_back_row(cache + l->gates + row * g4, store_pre ? cache + l->pre + row * g4 : NULL,
                                    cache + l->c + row * u, cache + l->ac + row * u, cprev, gs, dh + b * u,
                                    dc + b * u, dz + row * g4, u, activation, recurrent_activation);
        }
        if (t > 0) /* dh_{t-1} = dz_t recurrent^T */
            gk_matmul_strided(dz + (b0 * steps + ts) * g4, steps * g4, ut, u, NULL, dh + b0 * u, u, b1 - b0, g4, u);
    }
}

void gk_lstm_backward(const float *x, const float *kernel, const float *recurrent, const float *cache,
                      const float *g_y, int return_sequences, const float *g_h, const float *g_c,
                      float *gx, float *gkernel, float *grecurrent, float *gbias, long batch, long steps,
                      long in_dim, long units, int activation, int recurrent_activation, int go_backwards,
                      float *scratch)
{
    const long u = units, g4 = 4 * units, n = batch * steps;
    const struct gk_bs_lstm_layout l = gk_bs_lstm_cache_layout(batch, steps, units);
    const int store_pre = gk_bs_slope_needs_x(activation) || gk_bs_slope_needs_x(recurrent_activation);
    const int threads = gk_bs_lstm_threads(batch, steps, units);
    float *dz = scratch;                       /* (batch, steps, 4u), x's step order */
    float *dh = dz + gk_bs_r16(n * g4);        /* (batch, u): gradient reaching h_t */
    float *dc = dh + gk_bs_r16(batch * u);     /* (batch, u): gradient reaching c_t */
    float *zero = dc + gk_bs_r16(batch * u);   /* u zeros: c_0 */
    float *ut = zero + gk_bs_r16(u);           /* recurrent^T (4u, u) */
    float *kt = ut + gk_bs_r16(g4 * u);        /* kernel^T (4u, in_dim) */
    float *tr = kt + gk_bs_r16(g4 * in_dim);   /* [x^T; h_prev^T] (in_dim + u, n), then [dW; dR] */
    long b;
    if (batch <= 0 || steps <= 0 || u <= 0) {
        gk_bs_zero(gkernel, in_dim * g4);
        gk_bs_zero(grecurrent, u * g4);
        gk_bs_zero(gbias, g4);
        gk_bs_zero(gx, n * in_dim);
        return;
    }
    if (!return_sequences && g_y)
        memcpy(dh, g_y, (size_t)(batch * u) * sizeof *dh);
    else
        memset(dh, 0, (size_t)(batch * u) * sizeof *dh);
    if (g_h)
        for (b = 0; b < batch * u; ++b) dh[b] += g_h[b];
    if (g_c)
        memcpy(dc, g_c, (size_t)(batch * u) * sizeof *dc);
    else
        memset(dc, 0, (size_t)(batch * u) * sizeof *dc);
    memset(zero, 0, (size_t)u * sizeof *zero);
    gk_bs_transpose(recurrent, g4, ut, u, u, g4);
    if (threads > 1) {
        GK_PRAGMA(omp parallel num_threads(threads))
        {
            long b0, b1;
            gk_bs_slice(batch, &b0, &b1);
            gk_bs_lstm_backward_rows(b0, b1, cache, &l, g_y, return_sequences, steps, u, activation,
                                     recurrent_activation, go_backwards, store_pre, ut, zero, dz, dh, dc);
        }
    } else {
        gk_bs_lstm_backward_rows(0, batch, cache, &l, g_y, return_sequences, steps, u, activation,
                                 recurrent_activation, go_backwards, store_pre, ut, zero, dz, dh, dc);
    }
    if (gbias) gk_bs_colsum(dz, g4, n, g4, gbias);
    if (gkernel && grecurrent) { /* one GEMM: [x^T; h_prev^T] (in_dim + u, n) @ dz */
        float *w = tr + gk_bs_r16((in_dim + u) * n);
        gk_bs_transpose(x, in_dim, tr, n, n, in_dim);
        gk_bs_transpose(cache + l.hprev, u, tr + in_dim * n, n, n, u);
        gk_matmul(tr, dz, NULL, w, in_dim + u, n, g4);
        memcpy(gkernel, w, (size_t)(in_dim * g4) * sizeof *w);
        memcpy(grecurrent, w + in_dim * g4, (size_t)(u * g4) * sizeof *w);
    } else if (gkernel) {
        gk_bs_transpose(x, in_dim, tr, n, n, in_dim);
        gk_matmul(tr, dz, NULL, gkernel, in_dim, n, g4);
    } else if (grecurrent) {
        gk_bs_transpose(cache + l.hprev, u, tr, n, n, u);
        gk_matmul(tr, dz, NULL, grecurrent, u, n, g4);
    }
    if (gx) {
        gk_bs_transpose(kernel, g4, kt, in_dim, in_dim, g4);
        gk_matmul(dz, kt, NULL, gx, n, g4, in_dim);
    }
}

/* ---- GRU ---------------------------------------------------------------------------------------- */
/* Keras's GRU (gates z, r, h): the input projection of every step is one GEMM; per step one GEMM for
 * h U (+ the recurrent bias; without reset_after only its z and r columns, then (r h) U_h), the gate
 * activations on (batch, u) blocks, h = z h + (1 - z) hh. The cache keeps, per step, eight (batch, u)
 * blocks: the fields below. The backward walks the steps back with one small GEMM per step
 * (dh_prev = dm U^T), then the weight gradients are one GEMM each over all steps. */

enum { GK_GRU_Z, GK_GRU_R, GK_GRU_HH, GK_GRU_PZ, GK_GRU_PR, GK_GRU_PH, GK_GRU_INNER, GK_GRU_HPREV, GK_GRU_FIELDS };

long gk_gru_cache_size(long batch, long steps, long in_dim, long units)
{
    (void)in_dim;
    return gk_bs_max(1, GK_GRU_FIELDS * batch * steps * units);
}

long gk_gru_scratch(long batch, long steps, long in_dim, long units)
{
    (void)in_dim;
    return gk_bs_max(1, batch * steps * 3 * units + (4 + GK_GRU_FIELDS) * batch * units);
}

void gk_gru(const float *x, const float *kernel, const float *recurrent, const float *bias, float *y_seq,
            float *h_out, long batch, long steps, long in_dim, long units, int activation, int recurrent_activation,
            int go_backwards, int reset_after, float *cache, float *scratch)
{
    const long u = units, bu = batch * units, n3 = 3 * units;
    const float *b_rec = bias && reset_after ? bias + n3 : NULL;
    float *xp = scratch, *m = xp + batch * steps * n3, *h = m + batch * n3, *blocks = h + bu;
    long t, n, j, i;
    gk_matmul(x, kernel, bias, xp, batch * steps, in_dim, n3); /* rows (sample, step) in x's order */
    gk_bs_zero(h, bu);
    for (t = 0; t < steps; ++t) {
        const long src = go_backwards ? steps - 1 - t : t;
        float *f[GK_GRU_FIELDS];
        for (j = 0; j < GK_GRU_FIELDS; ++j) f[j] = cache ? cache + (j * steps + t) * bu : blocks + j * bu;
        if (reset_after)
            gk_matmul(h, recurrent, b_rec, m, batch, u, n3);
        else
            gk_matmul_strided(h, u, recurrent, n3, NULL, m, n3, batch, u, 2 * u);
        for (n = 0; n < batch; ++n) {
            const float *xr = xp + (n * steps + src) * n3, *mr = m + n * n3;
            for (j = 0; j < u; ++j) {
                f[GK_GRU_PZ][n * u + j] = xr[j] + mr[j];
                f[GK_GRU_PR][n * u + j] = xr[u + j] + mr[u + j];
            }
        }
        memcpy(f[GK_GRU_HPREV], h, (size_t)bu * sizeof *h);
        gk_activation(recurrent_activation, f[GK_GRU_PZ], f[GK_GRU_Z], batch, u);
        gk_activation(recurrent_activation, f[GK_GRU_PR], f[GK_GRU_R], batch, u);
        if (reset_after) { /* the reset gate scales the recurrent projection */
            for (n = 0; n < batch; ++n) memcpy(f[GK_GRU_INNER] + n * u, m + n * n3 + 2 * u, (size_t)u * sizeof *m);
        } else { /* it scales h before the product: m's last block = (r h) U_h */
            for (i = 0; i < bu; ++i) f[GK_GRU_INNER][i] = f[GK_GRU_R][i] * h[i];
            gk_matmul_strided(f[GK_GRU_INNER], u, recurrent + 2 * u, n3, NULL, m + 2 * u, n3, batch, u, u);
        }
        for (n = 0; n < batch; ++n) {
            const float *xr = xp + (n * steps + src) * n3 + 2 * u, *mr = m + n * n3 + 2 * u;
            const float *rr = f[GK_GRU_R] + n * u;
            for (j = 0; j < u; ++j) f[GK_GRU_PH][n * u + j] = xr[j] + (reset_after ? rr[j] * mr[j] : mr[j]);
        }
        gk_activation(activation, f[GK_GRU_PH], f[GK_GRU_HH], batch, u);
        for (i = 0; i < bu; ++i) {
            const float z = f[GK_GRU_Z][i];
            h[i] = z * h[i] + (1.0f - z) * f[GK_GRU_HH][i];
        }
        if (y_seq)
            for (n = 0; n < batch; ++n) memcpy(y_seq + (n * steps + t) * u, h + n * u, (size_t)u * sizeof *h);
    }
    if (h_out) memcpy(h_out, h, (size_t)bu * sizeof *h);
}

long gk_gru_backward_scratch(long batch, long steps, long in_dim, long units)
{
    const long rows = batch * steps, u = units;
    return gk_bs_max(1, rows * (7 * u + gk_bs_max(in_dim, u)) + 3 * u * in_dim + 7 * u * u + 8 * batch * u);
}

void gk_gru_backward(const float *x, const float *kernel, const float *recurrent, const float *cache,
                     const float *g_y, int return_sequences, const float *g_h, float *gx, float *gkernel,
                     float *grecurrent, float *gbias, long batch, long steps, long in_dim, long units, int activation,
                     int recurrent_activation, int go_backwards, int reset_after, float *scratch)
{
    const long u = units, bu = batch * units, n3 = 3 * units, rows = batch * steps;
    const long w = reset_after ? n3 : 2 * u; /* the recurrent projection's width */
    float *dxp = scratch;                    /* (rows, 3u): d of the input projection, rows in x's order */
    float *dm = dxp + rows * n3;             /* (steps, batch, w): d of the recurrent projection */
    float *dinner = dm + rows * n3;          /* (steps, batch, u): d of (r h) U_h (without reset_after) */
    float *tr = dinner + rows * u;           /* a transposed operand: x, h_prev or r h */
    float *kt = tr + rows * gk_bs_max(in_dim, u), *ut = kt + n3 * in_dim, *uht = ut + n3 * u, *gt = uht + u * u;
    float *dh = gt + n3 * u, *dprev = dh + bu, *dhh = dprev + bu, *dph = dhh + bu, *dr = dph + bu, *dz = dr + bu;
    float *tmp = dz + bu, *drh = tmp + bu;
    long t, n, j, i;
    gk_bs_transpose(recurrent, n3, ut, u, u, n3);            /* U^T (3u, u): its first w rows serve dm */
    gk_bs_transpose(recurrent + 2 * u, n3, uht, u, u, u);    /* U_h^T */
    gk_bs_zero(dh, bu);
    if (g_h) gk_bs_add(dh, g_h, bu);
    if (g_y && !return_sequences) gk_bs_add(dh, g_y, bu);
    for (t = steps - 1; t >= 0; --t) {
        const long src = go_backwards ? steps - 1 - t : t;
        const float *f[GK_GRU_FIELDS];
        float *dmt = dm + t * batch * w;
        for (j = 0; j < GK_GRU_FIELDS; ++j) f[j] = cache + (j * steps + t) * bu;
        if (g_y && return_sequences)
            for (n = 0; n < batch; ++n)
                for (j = 0; j < u; ++j) dh[n * u + j] += g_y[(n * steps + t) * u + j];
        for (i = 0; i < bu; ++i) {
            dhh[i] = dh[i] * (1.0f - f[GK_GRU_Z][i]);
            dprev[i] = dh[i] * f[GK_GRU_Z][i];
            tmp[i] = dh[i] * (f[GK_GRU_HPREV][i] - f[GK_GRU_HH][i]); /* d z */
        }
        gk_activation_backward(activation, f[GK_GRU_PH], f[GK_GRU_HH], dhh, dph, batch, u);
        if (reset_after) {
            for (i = 0; i < bu; ++i) dr[i] = dph[i] * f[GK_GRU_INNER][i];
        } else {
            gk_matmul(dph, uht, NULL, drh, batch, u, u); /* d (r h) */
            memcpy(dinner + t * bu, dph, (size_t)bu * sizeof *dph);
            for (i = 0; i < bu; ++i) {
                dr[i] = drh[i] * f[GK_GRU_HPREV][i];
                dprev[i] += drh[i] * f[GK_GRU_R][i];
            }
        }
        gk_activation_backward(recurrent_activation, f[GK_GRU_PZ], f[GK_GRU_Z], tmp, dz, batch, u);
        gk_activation_backward(recurrent_activation, f[GK_GRU_PR], f[GK_GRU_R], dr, dr, batch, u);
        for (n = 0; n < batch; ++n) {
            float *xr = dxp + (n * steps + src) * n3, *mr = dmt + n * w;
            for (j = 0; j < u; ++j) {
                xr[j] = mr[j] = dz[n * u + j];
                xr[u + j] = mr[u + j] = dr[n * u + j];
                xr[2 * u + j] = dph[n * u + j];
                if (reset_after) mr[2 * u + j] = dph[n * u + j] * f[GK_GRU_R][n * u + j];
            }
        }
        gk_matmul(dmt, ut, NULL, dh, batch, w, u); /* dh_prev = dm U^T (+ the direct paths) */
        gk_bs_add(dh, dprev, bu);
    }
    if (gkernel) {
        gk_bs_transpose(x, in_dim, tr, rows, rows, in_dim);
        gk_matmul(tr, dxp, NULL, gkernel, in_dim, rows, n3);
    }
    if (gx) {
        gk_bs_transpose(kernel, n3, kt, in_dim, in_dim, n3);
        gk_matmul(dxp, kt, NULL, gx, rows, n3, in_dim);
    }
    if (grecurrent) {
        gk_bs_transpose(cache + GK_GRU_HPREV * rows * u, u, tr, rows, rows, u); /* h_prev^T (u, rows) */
        gk_matmul(tr, dm, NULL, gt, u, rows, w);
        for (i = 0; i < u; ++i) memcpy(grecurrent + i * n3, gt + i * w, (size_t)w * sizeof *gt);
        if (!reset_after) { /* U_h's gradient: (r h)^T d((r h) U_h) */
            gk_bs_transpose(cache + GK_GRU_INNER * rows * u, u, tr, rows, rows, u);
            gk_matmul(tr, dinner, NULL, gt, u, rows, u);
            for (i = 0; i < u; ++i) memcpy(grecurrent + i * n3 + 2 * u, gt + i * u, (size_t)u * sizeof *gt);
        }
    }
    if (gbias) {
        gk_bs_colsum(dxp, n3, rows, n3, gbias);
        if (reset_after) gk_bs_colsum(dm, n3, rows, n3, gbias + n3);
    }
}
