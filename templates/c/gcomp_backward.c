/* gcomp C kernels for training: implementations of gcomp_backward.h. C99 (also C11), float32, only
 * libc, libm and gcomp_kernels.c (gk_matmul, gk_transpose), no allocation (fixed-size chunks on the
 * stack), deterministic: every output element is computed in an order fixed by the sizes alone,
 * whatever the thread count. With OpenMP (-fopenmp) the elementwise kernels, the merges into
 * full-shape gradients, pooling (per sample) and the embedding scatter (per block of table rows)
 * are shared among threads; reductions into broadcast inputs run serially. */
#include "gcomp_backward.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define GK_PRAGMA(x) _Pragma(#x)
#else
#define GK_PRAGMA(x)
#endif

#define GK_PAR_MIN 65536L /* elements below which threads cost more than they save */

static long gk_minl(long a, long b) { return a < b ? a : b; }
static long gk_maxl(long a, long b) { return a > b ? a : b; }

static int gk_threads(void)
{
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- activations --------------------------------------------------------------------------- */

static inline float gk_sigmoid_b(float x) { return 1.0f / (1.0f + expf(-x)); }

/* log(1 + exp(x)), as NumPy's logaddexp(x, 0) */
static inline float gk_softplus_b(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }

/* cond ? a : b as bit masks: gcc (under its default -ftrapping-math) does not if-convert an arm
 * that computes, and a loop with branches does not vectorize. */
static inline float gk_select_b(int cond, float a, float b)
{
    const uint32_t m = 0u - (uint32_t)(cond != 0);
    uint32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    ia = (ia & m) | (ib & ~m);
    memcpy(&a, &ia, sizeof a);
    return a;
}

static inline float gk_hard_sigmoid_b(float x)
{
    float v = x / 6.0f + 0.5f;
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}

/* An elementwise activation's gradient on n values (act is neither softmax nor log_softmax). */
static void gk_activation_backward_span(int act, const float *x, const float *y, const float *gy, float *gx,
                                        long n)
{
    const float selu_scale = 1.0507009873554804934193349852946f;
    const float selu_scale_alpha = (float)(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717);
    long i;
    switch (act) {
    case GK_RELU:
        for (i = 0; i < n; ++i) {
            const float g = gy[i];
            gx[i] = x[i] > 0.0f ? g : 0.0f;
        }
        break;
    case GK_RELU6:
        for (i = 0; i < n; ++i) {
            const float g = gy[i], v = x[i];
            gx[i] = (v > 0.0f) & (v < 6.0f) ? g : 0.0f;
        }
        break;
    case GK_LEAKY_RELU:
        for (i = 0; i < n; ++i) {
            const float g = gy[i];
            gx[i] = gk_select_b(x[i] >= 0.0f, g, g * 0.2f);
        }
        break;
    case GK_SIGMOID:
        for (i = 0; i < n; ++i) gx[i] = ((1.0f - y[i]) * y[i]) * gy[i];
        break;
    case GK_TANH:
        for (i = 0; i < n; ++i) gx[i] = (1.0f - y[i] * y[i]) * gy[i];
        break;
    case GK_ELU:
        for (i = 0; i < n; ++i) {
            const float g = gy[i], neg = g * (y[i] + 1.0f);
            gx[i] = gk_select_b(x[i] >= 0.0f, g, neg);
        }
        break;
    case GK_SELU:
        for (i = 0; i < n; ++i) {
            const float g = gy[i], pos = g * selu_scale, neg = g * (y[i] + selu_scale_alpha);
            gx[i] = gk_select_b(x[i] >= 0.0f, pos, neg);
        }
        break;
    case GK_SOFTPLUS:
        for (i = 0; i < n; ++i) gx[i] = gy[i] * gk_sigmoid_b(x[i]);
        break;
    case GK_SOFTSIGN:
        for (i = 0; i < n; ++i) {
            const float d = 1.0f + fabsf(x[i]);
            gx[i] = gy[i] / (d * d);
        }
        break;
    case GK_SILU:
        for (i = 0; i < n; ++i) {
            const float s = gk_sigmoid_b(x[i]);
            gx[i] = gy[i] * (y[i] + s * (1.0f - y[i]));
        }
        break;
    case GK_GELU: /* Phi(x) + x phi(x), in double as the forward's erf */
        for (i = 0; i < n; ++i) {
            const double xd = (double)x[i];
            const double cdf = 0.5 * erfc(-xd * 0.70710678118654752440);
            const double pdf = exp(-0.5 * xd * xd) * 0.39894228040143267794;
            gx[i] = (float)((double)gy[i] * (cdf + xd * pdf));
        }
        break;
    case GK_HARD_SIGMOID:
        for (i = 0; i < n; ++i) {
            const float g = gy[i] / 6.0f, v = x[i];
            gx[i] = gk_select_b((v > -3.0f) & (v < 3.0f), g, 0.0f);
        }
        break;
    case GK_HARD_SILU:
        for (i = 0; i < n; ++i) {
            const float v = x[i], slope = v / 6.0f;
            const float d = gk_hard_sigmoid_b(v) + ((v > -3.0f) & (v < 3.0f) ? slope : 0.0f);
            gx[i] = d * gy[i];
        }
        break;
    case GK_MISH:
        for (i = 0; i < n; ++i) {
            const float t = tanhf(gk_softplus_b(x[i]));
            gx[i] = gy[i] * (t + x[i] * (1.0f - t * t) * gk_sigmoid_b(x[i]));
        }
        break;
    case GK_EXPONENTIAL:
        for (i = 0; i < n; ++i) gx[i] = gy[i] * y[i];
        break;
    default: /* GK_LINEAR */
        if (gx != gy) memmove(gx, gy, (size_t)n * sizeof *gx);
        break;
    }
}

/* Softmax: gx = y (gy - sum(gy y)); log-softmax: gx = gy - exp(y) sum(gy). Sums in double over 8
 * interleaved partial sums, combined in a fixed order. gx may be gy: the sum is taken first. */
static void gk_softmax_row_backward(const float *y, const float *gy, float *gx, long n, int log_form)
{
    enum { LANES = 8 };
    double acc[LANES], sum = 0.0;
    const long body = n / LANES * LANES;
    long j;
    int l;
    float s;
    for (l = 0; l < LANES; ++l) acc[l] = 0.0;
    for (j = 0; j < body; j += LANES)
        for (l = 0; l < LANES; ++l) acc[l] += log_form ? (double)gy[j + l] : (double)(gy[j + l] * y[j + l]);
    for (l = 0; l < LANES; ++l) sum += acc[l];
    for (j = body; j < n; ++j) sum += log_form ? (double)gy[j] : (double)(gy[j] * y[j]);
    s = (float)sum;
    if (log_form)
        for (j = 0; j < n; ++j) gx[j] = gy[j] - expf(y[j]) * s;
    else
        for (j = 0; j < n; ++j) gx[j] = gy[j] * y[j] - y[j] * s;
}

void gk_keras_relu_backward(const float *x, const float *gy, float *gx, long n, float negative_slope, float max_value,
                            float threshold)
{
    long i;
    if (negative_slope != 0.0f && max_value < 0.0f && threshold == 0.0f) { /* leaky_relu */
        for (i = 0; i < n; ++i) gx[i] = gk_select_b(x[i] >= 0.0f, gy[i], gy[i] * negative_slope);
        return;
    }
    for (i = 0; i < n; ++i) {
        const float v = x[i], g = gy[i];
        const int passes = v > threshold && (max_value < 0.0f || v < max_value);
        float d = passes ? g : 0.0f;
        if (negative_slope != 0.0f && v < threshold) d += g * negative_slope;
        gx[i] = d;
    }
}

void gk_activation_backward(int act, const float *x, const float *y, const float *gy, float *gx, long rows,
                            long row_len)
{
    enum { CHUNK = 8192 };
    const long n = rows * row_len;
    long i;
    if (rows <= 0 || row_len <= 0) return;
    if (act == GK_SOFTMAX || act == GK_LOG_SOFTMAX) {
        GK_PRAGMA(omp parallel for schedule(static) if (n >= GK_PAR_MIN && rows > 1 && !omp_in_parallel()))
        for (i = 0; i < rows; ++i)
            gk_softmax_row_backward(y + i * row_len, gy + i * row_len, gx + i * row_len, row_len,
                                    act == GK_LOG_SOFTMAX);
        return;
    }
    if (act == GK_LINEAR) {
        if (gx != gy) memmove(gx, gy, (size_t)n * sizeof *gx);
        return;
    }
    GK_PRAGMA(omp parallel for schedule(static) if (n >= GK_PAR_MIN && !omp_in_parallel()))
    for (i = 0; i < (n + CHUNK - 1) / CHUNK; ++i) {
        const long at = i * CHUNK;
        gk_activation_backward_span(act, x ? x + at : NULL, y ? y + at : NULL, gy + at, gx + at,
                                    gk_minl(CHUNK, n - at));
    }
}

/* ---- dense --------------------------------------------------------------------------------- */

long gk_dense_backward_scratch(long rows, long in_dim, long units)
{
    return gk_maxl(rows, units) * in_dim;
}

/* gb (units) = sums of the rows of gy (rows, units), rows added in order; column blocks may go to
 * different threads. */
static void gk_column_sums(const float *gy, float *gb, long rows, long units)
{
    enum { CB = 256 };
    const long blocks = (units + CB - 1) / CB;
    long b;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * units >= GK_PAR_MIN && blocks > 1 && !omp_in_parallel()))
    for (b = 0; b < blocks; ++b) {
        const long c0 = b * CB, cn = gk_minl(CB, units - c0);
        float *restrict out = gb + c0;
        long r, j;
        for (j = 0; j < cn; ++j) out[j] = 0.0f;
        for (r = 0; r < rows; ++r) {
            const float *restrict g = gy + r * units + c0;
            for (j = 0; j < cn; ++j) out[j] += g[j];
        }
    }
}

void gk_dense_backward(const float *x, const float *kernel, const float *gy, float *gx, float *gkernel,
                       float *gbias, long rows, long in_dim, long units, float *scratch)
{
    if (rows < 0 || in_dim < 0 || units < 0) return;
    if (gkernel) { /* x^T (in_dim, rows) @ gy (rows, units) */
        gk_transpose(x, scratch, rows, in_dim);
        gk_matmul(scratch, gy, NULL, gkernel, in_dim, rows, units);
    }
    if (gbias) gk_column_sums(gy, gbias, rows, units);
    if (gx) { /* gy (rows, units) @ kernel^T (units, in_dim) */
        gk_transpose(kernel, scratch, in_dim, units);
        gk_matmul(gy, scratch, NULL, gx, rows, units, in_dim);
    }
}

/* ---- embedding ----------------------------------------------------------------------------- */

/* Zero gtable, then add gy's rows in order to the rows of their indices; with threads, each thread
 * owns a block of table rows (it scans every index and takes those in its block): the sums per
 * row keep the order of the indices. */
#define GK_DEFINE_EMBEDDING_BACKWARD(NAME, T)                                                    \
    long NAME(const T *idx, long n, const float *gy, float *gtable, long input_dim, long dim)    \
    {                                                                                            \
        long i, part, parts = 1;                                                                 \
        long bad = -1;                                                                           \
        if (input_dim <= 0 || dim <= 0) {                                                        \
            for (i = 0; i < n; ++i)                                                              \
                if ((int64_t)idx[i] < 0 || (int64_t)idx[i] >= (int64_t)input_dim) return i;      \
            return -1;                                                                           \
        }                                                                                        \
        for (i = 0; i < n; ++i)                                                                  \
            if ((int64_t)idx[i] < 0 || (int64_t)idx[i] >= (int64_t)input_dim) {                  \
                bad = i;                                                                         \
                break;                                                                           \
            }                                                                                    \
        if ((input_dim + n) * dim >= 4 * GK_PAR_MIN) parts = gk_minl(gk_threads(), input_dim);    \
        GK_PRAGMA(omp parallel for schedule(static) num_threads(parts) if (parts > 1))           \
        for (part = 0; part < parts; ++part) {                                                   \
            const long r0 = part * input_dim / parts, r1 = (part + 1) * input_dim / parts;       \
            long k, j;                                                                           \
            memset(gtable + r0 * dim, 0, (size_t)((r1 - r0) * dim) * sizeof *gtable);            \
            if (bad >= 0) continue;                                                              \
            for (k = 0; k < n; ++k) {                                                            \
                const long r = (long)idx[k];                                                     \
                float *restrict dst;                                                             \
                const float *restrict src;                                                       \
                if (r < r0 || r >= r1) continue;                                                 \
                dst = gtable + r * dim;                                                          \
                src = gy + k * dim;                                                              \
                for (j = 0; j < dim; ++j) dst[j] += src[j];                                      \
            }                                                                                    \
        }                                                                                        \
        return bad;                                                                              \
    }

GK_DEFINE_EMBEDDING_BACKWARD(gk_embedding_backward_i32, int32_t)
GK_DEFINE_EMBEDDING_BACKWARD(gk_embedding_backward_i64, int64_t)

/* ---- broadcasting merges ------------------------------------------------------------------- */

enum { GK_MCHUNK = 256 };

/* Checks the dims and splits the output into rows (the product of out_dims[0 .. *split - 1]) of
 * `inner` values (the rest): the longest run of trailing dims along which every input is either
 * contiguous (has the output's dims) or constant (has 1s). Returns 0 or -1. */
static int gk_bcast_geometry(int count, const long *in_dims, const long *out_dims, int rank, long *rows,
                             long *inner, int *split)
{
    int i, d, s;
    long r = 1, w = 1;
    if (rank < 0 || rank > GK_MAX_RANK || count < 1) return -1;
    for (d = 0; d < rank; ++d) {
        if (out_dims[d] < 0) return -1;
        for (i = 0; i < count; ++i) {
            const long v = in_dims[i * rank + d];
            if (v != out_dims[d] && v != 1) return -1;
        }
    }
    for (s = rank; s > 0; --s) {
        const long od = out_dims[s - 1];
        int ok = 1;
        if (od != 1)
            for (i = 0; i < count && ok; ++i) {
                const long *dims = in_dims + i * rank;
                long p = 1;
                for (d = s; d < rank; ++d) p *= dims[d];
                ok = dims[s - 1] == 1 ? p == 1 : p == w;
            }
        if (!ok) break;
        w *= od;
    }
    for (d = 0; d < s; ++d) r *= out_dims[d];
    *rows = r;
    *inner = w;
    *split = s;
    return 0;
}

/* idx (split) = the multi-index of output row r */
static void gk_bcast_unravel(long r, const long *out_dims, int split, long *idx)
{
    int d;
    for (d = split - 1; d >= 0; --d) {
        idx[d] = r % out_dims[d];
        r /= out_dims[d];
    }
}

/* The offset in an input of dims `dims` of the output row at idx; *step = 1 if the input runs along
 * the row (0: constant along it). */
static long gk_bcast_locate(const long *dims, int rank, int split, const long *idx, long inner, long *step)
{
    long off = 0, stride = 1;
    int d;
    for (d = rank - 1; d >= split; --d) stride *= dims[d];
    *step = stride == inner && inner > 1 ? 1 : 0; /* inside the row: all the output's dims, or all 1 */
    for (; d >= 0; --d) {
        if (dims[d] != 1) off += idx[d] * stride;
        stride *= dims[d];
    }
    return off;
}

/* acc (n) = acc op x, x read with step 1 or 0 (a constant) */
static void gk_merge_apply(int op, float *restrict acc, const float *restrict x, long step, long n)
{
    long j;
    if (step) {
        switch (op) {
        case GK_SUBTRACT:
            for (j = 0; j < n; ++j) acc[j] -= x[j];
            break;
        case GK_MULTIPLY:
            for (j = 0; j < n; ++j) acc[j] *= x[j];
            break;
        case GK_MAXIMUM:
            for (j = 0; j < n; ++j) acc[j] = x[j] > acc[j] ? x[j] : acc[j];
            break;
        case GK_MINIMUM:
            for (j = 0; j < n; ++j) acc[j] = x[j] < acc[j] ? x[j] : acc[j];
            break;
        default:
            for (j = 0; j < n; ++j) acc[j] += x[j];
            break;
        }
    } else {
        const float v = x[0];
        switch (op) {
        case GK_SUBTRACT:
            for (j = 0; j < n; ++j) acc[j] -= v;
            break;
        case GK_MULTIPLY:
            for (j = 0; j < n; ++j) acc[j] *= v;
            break;
        case GK_MAXIMUM:
            for (j = 0; j < n; ++j) acc[j] = v > acc[j] ? v : acc[j];
            break;
        case GK_MINIMUM:
            for (j = 0; j < n; ++j) acc[j] = v < acc[j] ? v : acc[j];
            break;
        default:
            for (j = 0; j < n; ++j) acc[j] += v;
            break;
        }
    }
}

int gk_merge_broadcast(int op, int count, const float *const *xs, const long *in_dims, float *y,
                       const long *out_dims, int rank)
{
    long rows, inner, r;
    int split;
    if (gk_bcast_geometry(count, in_dims, out_dims, rank, &rows, &inner, &split) != 0) return -1;
    if (rows <= 0 || inner <= 0) return 0;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * inner >= GK_PAR_MIN && rows > 1 && !omp_in_parallel()))
    for (r = 0; r < rows; ++r) {
        float acc[GK_MCHUNK];
        long idx[GK_MAX_RANK + 1];
        long j0;
        gk_bcast_unravel(r, out_dims, split, idx);
        /* chunk by chunk, every input read before the chunk of y is written: y may be an input */
        for (j0 = 0; j0 < inner; j0 += GK_MCHUNK) {
            const long cn = gk_minl(GK_MCHUNK, inner - j0);
            long step, j;
            int i;
            const float *x0 = xs[0] + gk_bcast_locate(in_dims, rank, split, idx, inner, &step);
            if (step)
                for (j = 0; j < cn; ++j) acc[j] = x0[j0 + j];
            else
                for (j = 0; j < cn; ++j) acc[j] = x0[0];
            for (i = 1; i < count; ++i) {
                const float *xi = xs[i] + gk_bcast_locate(in_dims + i * rank, rank, split, idx, inner, &step);
                gk_merge_apply(op, acc, xi + step * j0, step, cn);
            }
            if (op == GK_AVERAGE) {
                const float fc = (float)count;
                for (j = 0; j < cn; ++j) acc[j] = acc[j] / fc;
            }
            memcpy(y + r * inner + j0, acc, (size_t)cn * sizeof *y);
        }
    }
    return 0;
}

/* g (n) = the gradient input i receives at values [j0, j0 + n) of the output row at idx (yr and
 * gyr point at the row's value j0). */
static void gk_merge_grad_chunk(int op, int count, int i, const float *const *xs, const long *in_dims,
                                int rank, int split, const long *idx, long inner, long j0, const float *yr,
                                const float *gyr, float *restrict g, long n)
{
    long j, step;
    int k;
    switch (op) {
    case GK_SUBTRACT:
        if (i == 0)
            memcpy(g, gyr, (size_t)n * sizeof *g);
        else
            for (j = 0; j < n; ++j) g[j] = -gyr[j];
        break;
    case GK_AVERAGE: {
        const float fc = (float)count;
        for (j = 0; j < n; ++j) g[j] = gyr[j] / fc;
        break;
    }
    case GK_MULTIPLY:
        memcpy(g, gyr, (size_t)n * sizeof *g);
        for (k = 0; k < count; ++k) {
            const float *xk;
            if (k == i) continue;
            xk = xs[k] + gk_bcast_locate(in_dims + k * rank, rank, split, idx, inner, &step);
            gk_merge_apply(GK_MULTIPLY, g, xk + step * j0, step, n);
        }
        break;
    case GK_MAXIMUM:
    case GK_MINIMUM: { /* gy where input i is the first input equal to y */
        const float *xi = xs[i] + gk_bcast_locate(in_dims + i * rank, rank, split, idx, inner, &step);
        if (step)
            for (j = 0; j < n; ++j) g[j] = xi[j0 + j] == yr[j] ? gyr[j] : 0.0f;
        else
            for (j = 0; j < n; ++j) g[j] = xi[0] == yr[j] ? gyr[j] : 0.0f;
        for (k = 0; k < i; ++k) {
            const float *xk = xs[k] + gk_bcast_locate(in_dims + k * rank, rank, split, idx, inner, &step);
            if (step)
                for (j = 0; j < n; ++j) g[j] = xk[j0 + j] == yr[j] ? 0.0f : g[j];
            else
                for (j = 0; j < n; ++j) g[j] = xk[0] == yr[j] ? 0.0f : g[j];
        }
        break;
    }
    default: /* GK_ADD */
        memcpy(g, gyr, (size_t)n * sizeof *g);
        break;
    }
}

int gk_merge_backward(int op, int count, const float *const *xs, const long *in_dims, const float *y,
                      const float *gy, float *const *gxs, const long *out_dims, int rank)
{
    long rows, inner, total;
    int split, i, d;
    if (gk_bcast_geometry(count, in_dims, out_dims, rank, &rows, &inner, &split) != 0) return -1;
    total = rows * inner;
    for (i = 0; i < count; ++i) {
        const long *dims = in_dims + i * rank;
        float *gx = gxs[i];
        long size = 1, r;
        if (gx == NULL) continue;
        for (d = 0; d < rank; ++d) size *= dims[d];
        if (total <= 0 || size != total) { /* broadcast: a sum over the output, row by row */
            if (size > 0) memset(gx, 0, (size_t)size * sizeof *gx);
            for (r = 0; r < rows && inner > 0; ++r) {
                float g[GK_MCHUNK];
                long idx[GK_MAX_RANK + 1], step, j0, j;
                float *dst;
                gk_bcast_unravel(r, out_dims, split, idx);
                dst = gx + gk_bcast_locate(dims, rank, split, idx, inner, &step);
                for (j0 = 0; j0 < inner; j0 += GK_MCHUNK) {
                    const long cn = gk_minl(GK_MCHUNK, inner - j0);
                    gk_merge_grad_chunk(op, count, i, xs, in_dims, rank, split, idx, inner, j0,
                                        y ? y + r * inner + j0 : NULL, gy + r * inner + j0, g, cn);
                    if (step) {
                        for (j = 0; j < cn; ++j) dst[j0 + j] += g[j];
                    } else {
                        float s = dst[0];
                        for (j = 0; j < cn; ++j) s += g[j];
                        dst[0] = s;
                    }
                }
            }
        } else { /* the output's shape: written row by row */
            GK_PRAGMA(omp parallel for schedule(static) if (total >= GK_PAR_MIN && rows > 1 && !omp_in_parallel()))
            for (r = 0; r < rows; ++r) {
                long idx[GK_MAX_RANK + 1], j0;
                gk_bcast_unravel(r, out_dims, split, idx);
                for (j0 = 0; j0 < inner; j0 += GK_MCHUNK) {
                    const long at = r * inner + j0;
                    gk_merge_grad_chunk(op, count, i, xs, in_dims, rank, split, idx, inner, j0,
                                        y ? y + at : NULL, gy + at, gx + at, gk_minl(GK_MCHUNK, inner - j0));
                }
            }
        }
    }
    return 0;
}

/* ---- concat -------------------------------------------------------------------------------- */

void gk_concat_backward(int count, const float *gy, const long *widths, float *const *gxs, long outer,
                        long inner)
{
    long total = 0, o, at;
    int i;
    for (i = 0; i < count; ++i) total += widths[i] * inner;
    for (o = 0; o < outer; ++o) {
        at = o * total;
        for (i = 0; i < count; ++i) {
            const long w = widths[i] * inner;
            if (gxs[i] && w > 0) memcpy(gxs[i] + o * w, gy + at, (size_t)w * sizeof *gy);
            at += w;
        }
    }
}

/* ---- pooling ------------------------------------------------------------------------------- */

void gk_pool2d_backward(int is_max, const float *x, const float *gy, float *gx, long batch, const long in[2],
                        long channels, const long pool[2], const long stride[2], const long pad_before[2],
                        const long out[2])
{
    enum { CHUNK = 64 };
    const long sample_in = in[0] * in[1] * channels, positions = out[0] * out[1];
    long s;
    if (batch <= 0 || sample_in <= 0) return;
    /* samples are independent: each thread owns whole samples of gx */
    GK_PRAGMA(omp parallel for schedule(static) if (batch > 1 && batch * positions * channels * pool[0] * pool[1] >= GK_PAR_MIN && !omp_in_parallel()))
    for (s = 0; s < batch; ++s) {
        const float *xs = x + s * sample_in;
        float *gxs = gx + s * sample_in;
        long o;
        memset(gxs, 0, (size_t)sample_in * sizeof *gxs);
        for (o = 0; o < positions; ++o) {
            const long h0 = (o / out[1]) * stride[0] - pad_before[0];
            const long w0 = (o % out[1]) * stride[1] - pad_before[1];
            const long a0 = gk_maxl(0, h0), a1 = gk_minl(in[0], h0 + pool[0]);
            const long b0 = gk_maxl(0, w0), b1 = gk_minl(in[1], w0 + pool[1]);
            const float *g = gy + (s * positions + o) * channels;
            long c0;
            for (c0 = 0; c0 < channels; c0 += CHUNK) {
                const long cn = gk_minl(CHUNK, channels - c0);
                float v[CHUNK];
                long i0, i1, c;
                if (!is_max) {
                    const long count = (a1 > a0 && b1 > b0) ? (a1 - a0) * (b1 - b0) : 0;
                    const float fc = (float)count;
                    if (count == 0) continue;
                    for (c = 0; c < cn; ++c) v[c] = g[c0 + c] / fc;
                    for (i0 = a0; i0 < a1; ++i0)
                        for (i1 = b0; i1 < b1; ++i1) {
                            float *restrict gp = gxs + (i0 * in[1] + i1) * channels + c0;
                            for (c = 0; c < cn; ++c) gp[c] += v[c];
                        }
                    continue;
                }
                /* the window's max (NaN if any value is NaN, as NumPy's), padding as -inf */
                for (c = 0; c < cn; ++c) v[c] = -HUGE_VALF;
                for (i0 = a0; i0 < a1; ++i0)
                    for (i1 = b0; i1 < b1; ++i1) {
                        const float *xp = xs + (i0 * in[1] + i1) * channels + c0;
                        for (c = 0; c < cn; ++c) v[c] = (xp[c] > v[c] || xp[c] != xp[c]) ? xp[c] : v[c];
                    }
                /* the first position in window order equal to it claims the gradient: v turns NaN */
                for (i0 = h0; i0 < h0 + pool[0]; ++i0)
                    for (i1 = w0; i1 < w0 + pool[1]; ++i1) {
                        if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1]) { /* padding: -inf */
                            for (c = 0; c < cn; ++c)
                                if (v[c] == -HUGE_VALF) v[c] = NAN;
                        } else {
                            const float *xp = xs + (i0 * in[1] + i1) * channels + c0;
                            float *gp = gxs + (i0 * in[1] + i1) * channels + c0;
                            for (c = 0; c < cn; ++c)
                                if (xp[c] == v[c]) {
                                    gp[c] += g[c0 + c];
                                    v[c] = NAN;
                                }
                        }
                    }
            }
        }
    }
}

void gk_global_pool_backward(int is_max, const float *x, const float *y, const float *gy, float *gx, long batch,
                             long spatial, long channels)
{
    enum { CHUNK = 64 };
    long s;
    if (batch <= 0 || spatial <= 0 || channels <= 0) return;
    GK_PRAGMA(omp parallel for schedule(static) if (batch > 1 && batch * spatial * channels >= GK_PAR_MIN && !omp_in_parallel()))
    for (s = 0; s < batch; ++s) {
        const float *g = gy + s * channels;
        float *gxs = gx + s * spatial * channels;
        long c0, p, c;
        if (!is_max) {
            const float fs = (float)spatial;
            for (c = 0; c < channels; ++c) gxs[c] = g[c] / fs;
            for (p = 1; p < spatial; ++p) memcpy(gxs + p * channels, gxs, (size_t)channels * sizeof *gxs);
            continue;
        }
        for (c0 = 0; c0 < channels; c0 += CHUNK) {
            const long cn = gk_minl(CHUNK, channels - c0);
            const float *xs = x + s * spatial * channels + c0;
            const float *ys = y + s * channels + c0;
            long count[CHUNK];
            float v[CHUNK];
            for (c = 0; c < cn; ++c) count[c] = 0;
            for (p = 0; p < spatial; ++p)
                for (c = 0; c < cn; ++c) count[c] += xs[p * channels + c] == ys[c];
            for (c = 0; c < cn; ++c) v[c] = g[c0 + c] / (float)count[c];
            for (p = 0; p < spatial; ++p) {
                float *restrict gp = gxs + p * channels + c0;
                for (c = 0; c < cn; ++c) gp[c] = xs[p * channels + c] == ys[c] ? v[c] : 0.0f;
            }
        }
    }
}

/* ---- dropout ------------------------------------------------------------------------------- */

void gk_dropout_backward(const float *gy, const float *mask, float *gx, long n)
{
    long i;
    GK_PRAGMA(omp parallel for schedule(static) if (n >= 4 * GK_PAR_MIN && !omp_in_parallel()))
    for (i = 0; i < n; ++i) gx[i] = gy[i] * mask[i];
}
