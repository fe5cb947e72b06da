/* gcomp C kernels for training: implementations of gcomp_train.h. C99 (also C11), float32, only
 * libc and libm, no allocation.
 *
 * Exactness: each function repeats the NumPy runtime's float32 operations in its order (a * b then
 * + c, never fused: floating-point contraction is switched off below, since GNU modes of gcc would
 * otherwise fuse across statements). Where NumPy reduces a float32 array (a row sum, a mean, a
 * norm) the sum here runs in double and is rounded once, and exp / log / log1p run in double and
 * are rounded to float32: the results then lie within about an ulp of NumPy's (whose own float32
 * sums and SIMD transcendentals are a few ulps from exact).
 *
 * Determinism: with OpenMP (-fopenmp) the losses' rows, the optimizer's elementwise passes and
 * dropout are shared among threads; every sum is split into blocks fixed by the sizes alone and
 * the blocks' partial sums are added in order, so results do not depend on the thread count. */
#include "gcomp_train.h"

#include <math.h>
#include <stddef.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifdef _OPENMP
#define GK_PRAGMA(x) _Pragma(#x)
#else
#define GK_PRAGMA(x)
#endif

/* Work below this many elements stays on one thread (OpenMP's start-up would cost more). */
#define GK_TRAIN_PARALLEL_MIN 32768L
/* Sums over more elements than GK_TRAIN_PARALLEL_MIN run in this many fixed blocks. */
#define GK_TRAIN_BLOCKS 64

/* ---- small helpers ----------------------------------------------------------------------- */

/* Keras's probability clip bounds in float32: float32(1e-7), float32(1 - 1e-7). */
#define GK_CLIP_LO ((float)1e-7)
#define GK_CLIP_HI ((float)(1.0 - 1e-7))

/* np.clip(x, lo, hi): NaN stays NaN. */
static float gk_clip(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* float32 of log / exp / log1p computed in double (one rounding). */
static float gk_flog(float x) { return (float)log((double)x); }
static float gk_fexp(float x) { return (float)exp((double)x); }

/* np.maximum(a, b): NaN if either is NaN. */
static float gk_fmax_nan(float a, float b)
{
    return (a >= b || a != a) ? a : b;
}

/* Sum of x[0..n) in double, sequential. */
static double gk_sum(const float *x, long n)
{
    double s = 0.0;
    long i;
    for (i = 0; i < n; ++i)
        s += (double)x[i];
    return s;
}

/* Sum of squares of x[0..n) in double (each square exact), in an order fixed by n alone. */
static double gk_sumsq(const float *x, long n)
{
    double part[GK_TRAIN_BLOCKS], s = 0.0;
    long b;
    if (n <= GK_TRAIN_PARALLEL_MIN) {
        long i;
        for (i = 0; i < n; ++i)
            s += (double)x[i] * (double)x[i];
        return s;
    }
    GK_PRAGMA(omp parallel for schedule(static))
    for (b = 0; b < GK_TRAIN_BLOCKS; ++b) {
        const long lo = n / GK_TRAIN_BLOCKS * b + (b < n % GK_TRAIN_BLOCKS ? b : n % GK_TRAIN_BLOCKS);
        const long len = n / GK_TRAIN_BLOCKS + (b < n % GK_TRAIN_BLOCKS ? 1 : 0);
        double acc = 0.0;
        long i;
        for (i = lo; i < lo + len; ++i)
            acc += (double)x[i] * (double)x[i];
        part[b] = acc;
    }
    for (b = 0; b < GK_TRAIN_BLOCKS; ++b)
        s += part[b];
    return s;
}

/* ---- losses ------------------------------------------------------------------------------- */

/* Max of a row, NaN if any value is NaN (np.max). */
static float gk_row_max(const float *p, long c)
{
    float mx = c > 0 ? p[0] : -HUGE_VALF;
    long j;
    for (j = 1; j < c && mx == mx; ++j)
        if (p[j] > mx || p[j] != p[j])
            mx = p[j];
    return mx;
}

/* float32 log(sum(exp(p - mx))) of a row (the log-softmax's normaliser). */
static float gk_row_lse(const float *p, long c, float mx)
{
    double se = 0.0;
    long j;
    for (j = 0; j < c; ++j) {
        const float shifted = p[j] - mx;
        se += exp((double)shifted);
    }
    return (float)log(se);
}

/* One row of `c` values: returns the per-sample loss (float32, as NumPy holds it) and, when grad
 * is not NULL, writes the row's gradient d per-sample / d p times dv. t: the target row (dense
 * losses), label: the class (sparse). */
static float gk_loss_row(int kind, int from_logits, const float *p, const float *t, long label, long c,
                         float dv, float *grad)
{
    const float one = 1.0f;
    const float nf = (float)c;
    double acc = 0.0;
    long j;

    switch (kind) {
    case GK_LOSS_MEAN_SQUARED_ERROR: {
        const float k = (float)(-2.0 / (double)c); /* dt.type(-2 / n) */
        for (j = 0; j < c; ++j) {
            const float d = t[j] - p[j];
            acc += (double)d * (double)d;
            if (grad != NULL) {
                const float local = d * k;
                grad[j] = local * dv;
            }
        }
        return (float)(acc / (double)c);
    }
    case GK_LOSS_MEAN_ABSOLUTE_ERROR:
        for (j = 0; j < c; ++j) {
            const float d = t[j] - p[j];
            acc += fabs((double)d);
            if (grad != NULL) {
                const float sign = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : (d == 0.0f ? 0.0f : d));
                const float local = -sign / nf;
                grad[j] = local * dv;
            }
        }
        return (float)(acc / (double)c);
    case GK_LOSS_BINARY_CROSSENTROPY:
        if (from_logits) { /* max(p, 0) - p t + log1p(exp(-|p|)); d/dp = (sigmoid(p) - t) / n */
            for (j = 0; j < c; ++j) {
                const float x = p[j];
                const float pos = gk_fmax_nan(x, 0.0f);
                const float xt = x * t[j];
                const float soft = (float)log1p(exp(-fabs((double)x)));
                float e = pos - xt;
                e = e + soft;
                acc += (double)e;
                if (grad != NULL) {
                    const float ex = gk_fexp(-fabsf(x));
                    const float den = one + ex;
                    const float sig = x >= 0.0f ? one / den : ex / den;
                    const float diff = sig - t[j];
                    const float local = diff / nf;
                    grad[j] = local * dv;
                }
            }
        } else { /* -(t log pc + (1 - t) log(1 - pc)), pc = clip(p); no gradient where clipped */
            for (j = 0; j < c; ++j) {
                const float x = p[j], tt = t[j];
                const float pc = gk_clip(x, GK_CLIP_LO, GK_CLIP_HI);
                const float omt = one - tt, omp = one - pc;
                const float b1 = tt * gk_flog(pc), b2 = omt * gk_flog(omp);
                const float bce = b1 + b2;
                acc += (double)(-bce);
                if (grad != NULL) {
                    if (x >= GK_CLIP_LO && x <= GK_CLIP_HI) {
                        const float q1 = tt / pc, q2 = omt / omp;
                        const float diff = q1 - q2;
                        const float local = -diff / nf;
                        grad[j] = local * dv;
                    } else {
                        grad[j] = 0.0f * dv;
                    }
                }
            }
        }
        return (float)(acc / (double)c);
    case GK_LOSS_CATEGORICAL_CROSSENTROPY:
        if (from_logits) { /* -sum(t log_softmax(p)); d/dp = softmax(p) sum(t) - t */
            const float mx = gk_row_max(p, c);
            const float lse = gk_row_lse(p, c, mx);
            for (j = 0; j < c; ++j) {
                const float shifted = p[j] - mx;
                const float ls = shifted - lse;
                acc += (double)t[j] * (double)ls;
            }
            if (grad != NULL) {
                const float st = (float)gk_sum(t, c);
                for (j = 0; j < c; ++j) {
                    const float shifted = p[j] - mx;
                    const float ls = shifted - lse;
                    const float e = gk_fexp(ls) * st;
                    const float local = e - t[j];
                    grad[j] = local * dv;
                }
            }
            return (float)(-acc);
        } else { /* q = p / sum(p), clipped; -sum(t log qc); d/dp = (gq - sum(gq q)) / s */
            const float s = (float)gk_sum(p, c);
            double sgq = 0.0;
            for (j = 0; j < c; ++j) {
                const float q = p[j] / s;
                const float qc = gk_clip(q, GK_CLIP_LO, GK_CLIP_HI);
                acc += (double)t[j] * (double)gk_flog(qc);
                if (grad != NULL) { /* gq = 0 where clipped (0 q still counts: NaN for q inf) */
                    const float gq = (q >= GK_CLIP_LO && q <= GK_CLIP_HI) ? -t[j] / qc : 0.0f;
                    sgq += (double)gq * (double)q;
                }
            }
            if (grad != NULL) {
                const float sg = (float)sgq;
                for (j = 0; j < c; ++j) {
                    const float q = p[j] / s;
                    const float qc = gk_clip(q, GK_CLIP_LO, GK_CLIP_HI);
                    const float gq = (q >= GK_CLIP_LO && q <= GK_CLIP_HI) ? -t[j] / qc : 0.0f;
                    const float diff = gq - sg;
                    const float local = diff / s;
                    grad[j] = local * dv;
                }
            }
            return (float)(-acc);
        }
    case GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
        if (from_logits) { /* -log_softmax(p)[label]; d/dp = softmax(p) - onehot */
            const float mx = gk_row_max(p, c);
            const float lse = gk_row_lse(p, c, mx);
            const float shifted = p[label] - mx;
            const float ls = shifted - lse;
            if (grad != NULL)
                for (j = 0; j < c; ++j) {
                    const float sj = p[j] - mx;
                    const float lj = sj - lse;
                    float local = gk_fexp(lj);
                    if (j == label)
                        local = local - one;
                    grad[j] = local * dv;
                }
            return -ls;
        } else { /* q = p / sum(p); -log(clip(q[label])) */
            const float s = (float)gk_sum(p, c);
            const float qy = p[label] / s;
            const float qc = gk_clip(qy, GK_CLIP_LO, GK_CLIP_HI);
            if (grad != NULL) {
                const float g = (qy >= GK_CLIP_LO && qy <= GK_CLIP_HI) ? -one / qc : 0.0f;
                const float gqy = g * qy;
                const float base = -gqy / s;
                for (j = 0; j < c; ++j)
                    grad[j] = base * dv;
                {
                    const float gs = g / s;
                    const float local = base + gs;
                    grad[label] = local * dv;
                }
            }
            return -gk_flog(qc);
        }
    default:
        return (float)NAN;
    }
}

/* The position NumPy's error names among n labels (its smallest if negative, else its largest if
 * >= classes; first occurrence), or -1 when all are in [0, classes). */
static long gk_bad_label(const int32_t *labels, long n, long classes)
{
    long i, at_min = 0, at_max = 0;
    if (n <= 0)
        return -1;
    for (i = 1; i < n; ++i) {
        if (labels[i] < labels[at_min])
            at_min = i;
        if (labels[i] > labels[at_max])
            at_max = i;
    }
    if (labels[at_min] < 0)
        return at_min;
    if ((long)labels[at_max] >= classes)
        return at_max;
    return -1;
}

long gk_loss(int kind, int from_logits, const float *pred, const void *target, const float *sample_weight,
             long batch, long inner, long classes, double loss_weight, int reduce_sum, float *loss, float *grad)
{
    const int sparse = kind == GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY;
    const int32_t *labels = sparse ? (const int32_t *)target : NULL;
    const float *dense = sparse ? NULL : (const float *)target;
    const long rows = batch * inner;
    const long nblocks = rows < GK_TRAIN_BLOCKS ? rows : GK_TRAIN_BLOCKS;
    double part[GK_TRAIN_BLOCKS], total = 0.0;
    float scale, divisor;
    long b;

    if (sparse) {
        const long bad = gk_bad_label(labels, rows, classes);
        if (bad >= 0)
            return bad;
    }
    if (rows <= 0) {
        if (loss != NULL)
            *loss = 0.0f;
        return -1;
    }
    /* d loss / d per-sample value: float32(weight) / float32(divisor), times the sample's weight */
    divisor = reduce_sum ? 1.0f : (float)rows;
    scale = (float)loss_weight / divisor;
    GK_PRAGMA(omp parallel for schedule(static) if (rows * classes > GK_TRAIN_PARALLEL_MIN))
    for (b = 0; b < nblocks; ++b) {
        const long lo = rows / nblocks * b + (b < rows % nblocks ? b : rows % nblocks);
        const long hi = lo + rows / nblocks + (b < rows % nblocks ? 1 : 0);
        double acc = 0.0;
        long r;
        for (r = lo; r < hi; ++r) {
            const float sw = sample_weight != NULL ? sample_weight[r / inner] : 1.0f;
            const float dv = sample_weight != NULL ? sw * scale : scale;
            const float per = gk_loss_row(kind, from_logits, pred + r * classes,
                                          sparse ? NULL : dense + r * classes, sparse ? (long)labels[r] : 0,
                                          classes, dv, grad != NULL ? grad + r * classes : NULL);
            const float weighted = sample_weight != NULL ? per * sw : per;
            acc += (double)weighted;
        }
        part[b] = acc;
    }
    for (b = 0; b < nblocks; ++b)
        total += part[b];
    if (loss != NULL)
        *loss = (float)total / divisor;
    return -1;
}

/* ---- optimizers --------------------------------------------------------------------------- */

void gk_optimizer_defaults(gk_optimizer *opt, int kind)
{
    opt->kind = kind;
    opt->learning_rate = kind == GK_OPT_SGD ? 0.01 : 0.001;
    opt->momentum = 0.0;
    opt->nesterov = 0;
    opt->rho = 0.9;
    opt->centered = 0;
    opt->epsilon = 1e-7;
    opt->beta_1 = 0.9;
    opt->beta_2 = 0.999;
    opt->amsgrad = 0;
    opt->initial_accumulator_value = 0.1;
    opt->weight_decay = kind == GK_OPT_ADAMW ? 0.004 : (double)NAN;
    opt->clipnorm = 0.0;
    opt->global_clipnorm = 0.0;
    opt->clipvalue = 0.0;
    opt->loss_scale_factor = (double)NAN;
}

long gk_optimizer_slot_count(const gk_optimizer *opt)
{
    switch (opt->kind) {
    case GK_OPT_SGD:
        return opt->momentum != 0.0 ? 1 : 0;
    case GK_OPT_RMSPROP:
        return 1 + (opt->momentum > 0.0 ? 1 : 0) + (opt->centered ? 1 : 0);
    case GK_OPT_ADAM:
    case GK_OPT_ADAMW:
        return 2 + (opt->amsgrad ? 1 : 0);
    case GK_OPT_ADAGRAD:
        return 1;
    default:
        return 0;
    }
}

void gk_optimizer_init_slots(const gk_optimizer *opt, float *slots, long n)
{
    const long count = gk_optimizer_slot_count(opt) * n;
    const float value = opt->kind == GK_OPT_ADAGRAD ? (float)opt->initial_accumulator_value : 0.0f;
    long i;
    for (i = 0; i < count; ++i)
        slots[i] = value;
}

/* g = unscaled and clipped gradients (Keras's order; in place). */
static void gk_prepare_gradients(const gk_optimizer *opt, float *g, long n, const long (*segments)[2],
                                 long num_segments)
{
    long i, s;
    if (!isnan(opt->loss_scale_factor)) {
        const float c = (float)opt->loss_scale_factor;
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i)
            g[i] = g[i] / c;
    }
    if (opt->clipnorm > 0.0) { /* per weight: g c / max(||g||, c) */
        const float c = (float)opt->clipnorm;
        for (s = 0; s < num_segments; ++s) {
            float *gs = g + segments[s][0];
            const long k = segments[s][1];
            float l2sum, l2norm, den;
            if (k <= 0)
                continue;
            l2sum = (float)gk_sumsq(gs, k);
            l2norm = l2sum > 0.0f ? sqrtf(l2sum) : l2sum;
            den = c > l2norm ? c : l2norm; /* Python's max(l2norm, c) */
            GK_PRAGMA(omp parallel for schedule(static) if (k > GK_TRAIN_PARALLEL_MIN))
            for (i = 0; i < k; ++i) {
                const float t = gs[i] * c;
                gs[i] = t / den;
            }
        }
    } else if (opt->global_clipnorm > 0.0) { /* g c min(1 / ||g||, 1 / c), NaN for a non-finite norm */
        const float c = (float)opt->global_clipnorm;
        const float inv_c = (float)(1.0 / opt->global_clipnorm);
        float sq = 0.0f, norm, inv_norm, scale;
        for (s = 0; s < num_segments; ++s)
            if (segments[s][1] > 0)
                sq = sq + (float)gk_sumsq(g + segments[s][0], segments[s][1]);
        norm = sqrtf(sq);
        inv_norm = 1.0f / norm;
        scale = c * (inv_c < inv_norm ? inv_c : inv_norm); /* Python's min(1 / norm, 1 / c) */
        scale = scale + (norm - norm);
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i)
            g[i] = g[i] * scale;
    } else if (opt->clipvalue > 0.0) {
        const float v = (float)opt->clipvalue, nv = -v;
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i)
            g[i] = gk_clip(g[i], nv, v);
    }
}

static void gk_sgd(const gk_optimizer *opt, float *w, const float *g, float *slots, long n)
{
    const float lr = (float)opt->learning_rate, mu = (float)opt->momentum;
    const int nesterov = opt->nesterov != 0;
    long i;
    if (gk_optimizer_slot_count(opt) == 0) {
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i) {
            const float t1 = g[i] * lr;
            w[i] = w[i] - t1;
        }
        return;
    }
    GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
    for (i = 0; i < n; ++i) {
        const float t1 = g[i] * lr;
        float m = slots[i] * mu;
        m = m - t1;
        slots[i] = m;
        if (nesterov) {
            float t2 = m * mu;
            t2 = t2 - t1;
            w[i] = w[i] + t2;
        } else {
            w[i] = w[i] + m;
        }
    }
}

static void gk_rmsprop(const gk_optimizer *opt, float *w, const float *g, float *slots, long n)
{
    const float lr = (float)opt->learning_rate, rho = (float)opt->rho;
    const float one_minus_rho = (float)(1.0 - opt->rho), eps = (float)opt->epsilon;
    const float momentum = (float)opt->momentum;
    const int use_momentum = opt->momentum > 0.0, centered = opt->centered != 0;
    float *vel = slots, *mom = slots + n, *avg = slots + (use_momentum ? 2 : 1) * n;
    long i;
    GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
    for (i = 0; i < n; ++i) {
        const float gi = g[i];
        float t1 = gi * gi, t2, v;
        t1 = t1 * one_minus_rho;
        v = vel[i] * rho;
        v = v + t1;
        vel[i] = v;
        if (centered) {
            float a = avg[i] * rho;
            t1 = gi * one_minus_rho;
            a = a + t1;
            avg[i] = a;
            t2 = a * a;
            t2 = v - t2;
            t2 = t2 + eps;
        } else {
            t2 = v + eps;
        }
        t2 = sqrtf(t2);
        t1 = gi * lr;
        t1 = t1 / t2;
        if (use_momentum) {
            float m = mom[i] * momentum;
            m = m + t1;
            mom[i] = m;
            w[i] = w[i] - m;
        } else {
            w[i] = w[i] - t1;
        }
    }
}

static void gk_adam(const gk_optimizer *opt, float *w, const float *g, float *slots, long n, long iterations)
{
    const float lr = (float)opt->learning_rate;
    const float step = (float)(iterations + 1);
    const float beta_1_power = powf((float)opt->beta_1, step);
    const float beta_2_power = powf((float)opt->beta_2, step);
    const float one = 1.0f;
    const float root = sqrtf(one - beta_2_power);
    const float lr_root = lr * root;
    const float alpha = lr_root / (one - beta_1_power);
    const float one_minus_b1 = (float)(1.0 - opt->beta_1), one_minus_b2 = (float)(1.0 - opt->beta_2);
    const float eps = (float)opt->epsilon;
    const int amsgrad = opt->amsgrad != 0;
    float *mom = slots, *vel = slots + n, *vhat = slots + 2 * n;
    long i;
    GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
    for (i = 0; i < n; ++i) {
        const float gi = g[i];
        float t1 = gi - mom[i], t2, m, v;
        t1 = t1 * one_minus_b1;
        m = mom[i] + t1;
        mom[i] = m;
        t1 = gi * gi;
        t1 = t1 - vel[i];
        t1 = t1 * one_minus_b2;
        v = vel[i] + t1;
        vel[i] = v;
        if (amsgrad) {
            v = gk_fmax_nan(vhat[i], v);
            vhat[i] = v;
        }
        t2 = sqrtf(v);
        t2 = t2 + eps;
        t1 = m * alpha;
        t1 = t1 / t2;
        w[i] = w[i] - t1;
    }
}

static void gk_adagrad(const gk_optimizer *opt, float *w, const float *g, float *slots, long n)
{
    const float lr = (float)opt->learning_rate, eps = (float)opt->epsilon;
    long i;
    GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
    for (i = 0; i < n; ++i) {
        const float gi = g[i];
        float t1 = gi * gi, t2, a;
        a = slots[i] + t1;
        slots[i] = a;
        t2 = a + eps;
        t2 = sqrtf(t2);
        t1 = gi * lr;
        t1 = t1 / t2;
        w[i] = w[i] - t1;
    }
}

void gk_optimizer_update(const gk_optimizer *opt, float *w, float *g, float *slots, long n,
                         const long (*segments)[2], long num_segments, const unsigned char *no_decay,
                         long *iterations)
{
    const long whole[1][2] = {{0L, n}};
    long s, i;
    if (segments == NULL || num_segments <= 0) {
        segments = whole;
        num_segments = 1;
    }
    gk_prepare_gradients(opt, g, n, segments, num_segments);
    if (!isnan(opt->weight_decay)) { /* w = w - w wd lr, before any update */
        const float wd = (float)opt->weight_decay, lr = (float)opt->learning_rate;
        for (s = 0; s < num_segments; ++s) {
            float *ws = w + segments[s][0];
            const long k = segments[s][1];
            if (no_decay != NULL && no_decay[s])
                continue;
            GK_PRAGMA(omp parallel for schedule(static) if (k > GK_TRAIN_PARALLEL_MIN))
            for (i = 0; i < k; ++i) {
                float t = ws[i] * wd;
                t = t * lr;
                ws[i] = ws[i] - t;
            }
        }
    }
    switch (opt->kind) {
    case GK_OPT_SGD:
        gk_sgd(opt, w, g, slots, n);
        break;
    case GK_OPT_RMSPROP:
        gk_rmsprop(opt, w, g, slots, n);
        break;
    case GK_OPT_ADAM:
    case GK_OPT_ADAMW:
        gk_adam(opt, w, g, slots, n, *iterations);
        break;
    case GK_OPT_ADAGRAD:
        gk_adagrad(opt, w, g, slots, n);
        break;
    default:
        break;
    }
    ++*iterations;
}

/* ---- dropout ------------------------------------------------------------------------------ */

uint64_t gk_splitmix64(uint64_t z)
{
    z += UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void gk_dropout(const float *x, float *y, float *mask, long n, double rate, uint64_t key, uint64_t *counter)
{
    const uint64_t base = key + *counter;
    long i;
    if (rate >= 1.0) {
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i) {
            y[i] = x[i] * 0.0f;
            if (mask != NULL)
                mask[i] = 0.0f;
        }
    } else {
        /* u = k 2^-24 >= rate  <=>  k >= ceil(rate 2^24) (exact: rate 2^24 is exact in double) */
        const uint64_t threshold = rate > 0.0 ? (uint64_t)ceil(rate * 16777216.0) : 0u;
        const float scale = (float)(1.0 / (1.0 - rate));
        GK_PRAGMA(omp parallel for schedule(static) if (n > GK_TRAIN_PARALLEL_MIN))
        for (i = 0; i < n; ++i) {
            const uint64_t k = gk_splitmix64(base + (uint64_t)i) >> 40;
            const float m = k >= threshold ? scale : 0.0f;
            y[i] = x[i] * m;
            if (mask != NULL)
                mask[i] = m;
        }
    }
    *counter += (uint64_t)(n > 0 ? n : 0);
}

float gk_penalty(const float *w, long n, double l1, double l2, double divisor)
{
    double absolute = 0.0, square = 0.0;
    float total = 0.0f;
    long i;
    if (divisor <= 0.0)
        return 0.0f;
    for (i = 0; i < n; ++i) {
        const double v = (double)w[i];
        absolute += v < 0.0 ? -v : v;
        square += v * v;
    }
    if (l1 != 0.0)
        total += (float)l1 * (float)absolute;
    if (l2 != 0.0)
        total += (float)l2 * (float)square;
    return divisor == 1.0 ? total : total / (float)divisor;
}

void gk_penalty_grad(const float *w, float *g, long n, double l1, double l2, double scale, double divisor)
{
    const float c1 = (float)scale * (float)l1, c2 = (float)scale * (float)l2;
    long i;
    for (i = 0; i < n; ++i) {
        const float sign = (float)((w[i] > 0.0f) - (w[i] < 0.0f));
        g[i] = c1 * sign + c2 * (w[i] * 2.0f);
        if (divisor != 1.0)
            g[i] /= (float)divisor;
    }
}

void gk_constrain(int kind, float *w, long outer, long reduced, long inner, double min_value, double max_value,
                  double rate)
{
    const float eps = 1e-7f, lo = (float)min_value, hi = (float)max_value, r = (float)rate;
    long o, k, i;
    if (kind == GK_CONSTRAINT_NON_NEG) {
        for (i = 0; i < outer * reduced * inner; ++i)
            w[i] = w[i] < 0.0f ? 0.0f : w[i];
        return;
    }
    for (o = 0; o < outer; ++o) {
        float *block = w + o * reduced * inner;
        for (i = 0; i < inner; ++i) {
            double acc = 0.0;
            float norm, desired;
            for (k = 0; k < reduced; ++k)
                acc += (double)block[k * inner + i] * (double)block[k * inner + i];
            norm = sqrtf((float)acc);
            if (kind == GK_CONSTRAINT_UNIT_NORM) {
                for (k = 0; k < reduced; ++k)
                    block[k * inner + i] /= eps + norm;
                continue;
            }
            desired = r * (norm < lo ? lo : norm > hi ? hi : norm);
            if (rate != 1.0)
                desired += (1.0f - r) * norm;
            desired /= eps + norm;
            for (k = 0; k < reduced; ++k)
                block[k * inner + i] *= desired;
        }
    }
}
