/* gcomp's float32 math, shared by the kernel libraries: branch-free approximations of exp, tanh,
 * sigmoid and friends. The LSTM's inference (gcomp_kernels.c) and training forward
 * (gcomp_backward_seq.c) both use these, so their outputs agree to the bit. Internal: static
 * inline functions, included by the .c files only. */
#ifndef GCOMP_MATH_H
#define GCOMP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float gk_bits_to_float(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline float gk_ubits_to_float(uint32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline uint32_t gk_float_to_ubits(float f)
{
    uint32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/* cond ? a : b, as bit masks. With plain ?: gcc (under its default -ftrapping-math) may move the
 * computation of an arm into a branch, and a loop with branches does not vectorize; masks keep
 * the transcendentals below branch-free. */
static inline float gk_select(int cond, float a, float b)
{
    const uint32_t m = 0u - (uint32_t)(cond != 0);
    return gk_ubits_to_float((gk_float_to_ubits(a) & m) | (gk_float_to_ubits(b) & ~m));
}

/* exp(x) in float32: Cephes' polynomial after x = n ln2 + r (within 3 ulps); inf above 88.72, 0
 * below -87.33 (no denormals), NaN stays NaN. */
static inline float gk_expf(float x)
{
    const float hi = 88.7228317f, lo = -87.3365479f;
    const float xc = gk_select(isgreater(x, hi), hi, gk_select(isless(x, lo), lo, x));
    const float t = xc * 1.44269504088896341f;
    /* n = round(t): adding 1.5 * 2^23 leaves it in the low mantissa bits (no float-to-int
     * conversion, which could trap); clamped in integers, whatever a NaN left there */
    int32_t n = (int32_t)(gk_float_to_ubits(t + 12582912.0f) - 0x4b400000u);
    float fn, r, r2, p;
    n = n < -126 ? -126 : n;
    n = n > 127 ? 127 : n; /* x in (88.03, 88.72]: r up to ln 2, error still below 4e-7 */
    fn = (float)n;
    r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    r2 = r * r;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    p = p * gk_bits_to_float((n + 127) << 23);
    return gk_select(isgreater(x, hi), HUGE_VALF, gk_select(isless(x, lo), 0.0f, p));
}

/* exp(x) - 1, accurate near 0 (Taylor series on (-0.5, 0.5)). */
static inline float gk_expm1f(float x)
{
    const float e = gk_expf(x) - 1.0f;
    float q = 1.0f / 40320.0f;
    q = q * x + 1.0f / 5040.0f;
    q = q * x + 1.0f / 720.0f;
    q = q * x + 1.0f / 120.0f;
    q = q * x + 1.0f / 24.0f;
    q = q * x + 1.0f / 6.0f;
    q = q * x + 0.5f;
    q = q * x * x + x;
    return gk_select(isless(fabsf(x), 0.5f), q, e);
}

/* log(x) for normal x > 0 (the callers only pass values in [1, 2]): Cephes' logf. */
static inline float gk_logf(float x)
{
    const uint32_t bits = gk_float_to_ubits(x);
    const float e0 = (float)(int32_t)((bits >> 23) & 0xffu) - 126.0f;
    const float m0 = gk_ubits_to_float((bits & 0x807fffffu) | 0x3f000000u); /* [0.5, 1) */
    const int small = isless(m0, 0.707106781186547524f);
    const float e = gk_select(small, e0 - 1.0f, e0);
    const float m = gk_select(small, m0 + m0 - 1.0f, m0 - 1.0f);
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return m + y + 0.693359375f * e;
}

/* log(1 + t) for t in [0, 1], accurate for tiny t: log(u) t / (u - 1) with u = 1 + t rounded. */
static inline float gk_log1pf01(float t)
{
    const float u = 1.0f + t;
    const float d = u - 1.0f;
    const float l = gk_logf(u) * (t / gk_select(d == 0.0f, 1.0f, d));
    return gk_select(d == 0.0f, t, l);
}

/* softplus(x) = log(1 + exp(x)) = log1p(exp(-|x|)) + max(x, 0). */
static inline float gk_softplusf(float x)
{
    return gk_log1pf01(gk_expf(-fabsf(x))) + gk_select(isgreater(x, 0.0f), x, 0.0f);
}

/* tanh: a rational minimax approximation (odd degree 13 over even degree 6, as in Eigen) on
 * [-7.9, 7.9], x itself below 4e-4: relative error below 5e-7 (a few float32 ulps), one division. */
static inline float gk_tanhf(float x)
{
    const float lim = 7.90531110763549805f;
    const float xc = gk_select(isgreater(x, lim), lim, gk_select(isless(x, -lim), -lim, x));
    const float x2 = xc * xc;
    float p = -2.76076847742355e-16f, q = 1.19825839466702e-06f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return gk_select(isless(fabsf(x), 4e-4f), x, xc * p / q);
}

/* 1 / (1 + exp(-x)) with x clamped to [-88, 88], where exp stays finite (no inf / inf, even
 * under -ffast-math); beyond, the clamped values are 1 and 6e-39 anyway. */
static inline float gk_sigmoidf(float x)
{
    const float xc = gk_select(isgreater(x, 88.0f), 88.0f, gk_select(isless(x, -88.0f), -88.0f, x));
    return 1.0f / (1.0f + gk_expf(-xc));
}

static inline float gk_hard_sigmoidf(float x)
{
    float v = x / 6.0f + 0.5f;
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}

static inline float gk_reluf(float x) { return gk_select(isless(x, 0.0f), 0.0f, x); }

#endif
