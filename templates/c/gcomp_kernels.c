/* gcomp C kernels: implementations of gcomp_kernels.h. C99 (also C11), float32, only libc and
 * libm, no allocation (the GEMM's packing buffers are fixed-size arrays on the stack: about
 * 170 KiB per thread for the AVX-512 tiles, 80 KiB for SSE2), deterministic: on a given CPU,
 * every output element is accumulated in an order fixed by the sizes alone, whatever the thread
 * count.
 *
 * Speed: gk_matmul is a cache-blocked GEMM (blocks of KC along k, row blocks of MC, packed
 * KC x NR panels of b) around an MR x NR register-tiled micro-kernel written for gcc's
 * auto-vectorizer (-O3: the accumulator tile stays in vector registers); the full 12 x 32 tiles
 * of AVX-512 are written with intrinsics (same arithmetic). On x86 with GCC or Clang a build for
 * a baseline without them (plain -O3: SSE2) also carries AVX2 and AVX-512 versions of the GEMM,
 * chosen at run time from the CPU's features, so -march=native is not needed for fast GEMMs (it
 * still speeds up the elementwise kernels). With OpenMP (-fopenmp) large products, convolutions,
 * LSTM batches, pooling and activations are cut into units that the threads take dynamically
 * (gk_run): inside a session (gk_session: a whole forward pass) by helpers that spin between the
 * kernels, else in one parallel region per kernel call; small ones run on the calling thread
 * (see gk_threads); without OpenMP all runs serially. Transcendentals of the activations are
 * branch-free polynomial approximations (a few float32 ulps), so whole rows vectorize too.
 * gk_conv2d reads the patches in place where it can (AVX-512, from x or a padded copy of it: see
 * gk_conv_implicit), else builds them (im2col) chunk by chunk, in L2, for the GEMM; a dense or
 * convolution's activation is applied to each unit of the output while it is in cache. gk_lstm
 * is one GEMM for every step's input projection, then per step a small GEMM and a fused gate
 * loop, batch rows in groups on their own threads. */
#include "gcomp_kernels.h"
#include "gcomp_math.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define GK_PRAGMA(x) _Pragma(#x)
#else
#define GK_PRAGMA(x)
#endif

/* ---- small helpers ----------------------------------------------------------------------- */

static long gk_minl(long a, long b) { return a < b ? a : b; }
static long gk_maxl(long a, long b) { return a > b ? a : b; }

/* ---- GEMM ---------------------------------------------------------------------------------- */

#ifndef GK_KC
#define GK_KC 192             /* k block: a packed KC x NR panel of b (24 KiB at NR = 32) stays in L1 */
#endif
#ifndef GK_PF
#define GK_PF 4               /* rows ahead to prefetch when b is read in place */
#endif

/* Register tile MR x NR of the build's own target (NR contiguous floats of c per row: whole
 * vectors), chosen so that the MR * NR / width accumulators, a row of b and the broadcasts fit the
 * vector registers. */
#ifndef GK_MR
#if defined(__AVX512F__)
#define GK_MR 12
#define GK_NR 32
#elif defined(__AVX__)
#define GK_MR 5               /* 6 leaves gcc too few registers for its broadcasts: it spills */
#define GK_NR 16
#else
#define GK_MR 6
#define GK_NR 8
#endif
#endif

/* On x86 with GCC or Clang, builds for an older baseline (plain -O3 is SSE2) also carry AVX2 and
 * AVX-512 GEMMs, chosen at run time from the CPU's features (-DGK_NO_DISPATCH: baseline only). */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(GK_NO_DISPATCH)
#if !defined(__AVX512F__)
#define GK_HAVE_AVX512 1
#endif
#if !defined(__AVX2__) || !defined(__FMA__)
#define GK_HAVE_AVX2 1
#endif
#endif

#if defined(__GNUC__)
#define GK_NOINLINE __attribute__((noinline)) /* one big inlined loop nest compiles worse */
#define GK_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define GK_NOINLINE
#define GK_PREFETCH(p) ((void)(p))
#endif

/* gcc must unroll the rows of a tile before vectorizing, or it may vectorize across the rows of a
 * narrow tile (with shuffles) instead of along them. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define GK_UNROLL_ROWS _Pragma("GCC unroll 16")
#else
#define GK_UNROLL_ROWS
#endif

static float *gk_align64(float *p)
{
    return p + ((64u - (unsigned)((uintptr_t)p % 64u)) % 64u) / sizeof *p;
}

/* A micro-kernel for tile height R and width W: c (mr, nr) (=|+=) a_panel (R, kc) @ b_panel
 * (kc, W) [+ bias (nr)], mr <= R, nr <= W, c = on the first k block, += after, the bias on the
 * last. Element (i, p) of a_panel is ap[i * A_RS + p * A_CS] (packed: A_RS = 1, A_CS = R; read in
 * place: lda, 1); b_panel rows are W floats `ldb` apart (packed: ldb = W; read in place, the rows
 * a few steps ahead are prefetched). The tile lives in acc[R][W], indexed only by constants so that
 * gcc keeps it in vector registers. ATTR: the function's target; FMA: its multiply-add. */
#define GK_DEFINE_MICRO(NAME, R, W, A_RS, A_CS, ATTR, FMA)                                       \
    static GK_NOINLINE ATTR void NAME(long kc, const float *restrict ap, long lda,               \
                                      const float *restrict bp, long ldb, float *restrict c,     \
                                      long ldc, long mr, long nr, int first,                     \
                                      const float *restrict bias)                                \
    {                                                                                            \
        float acc[R][W];                                                                         \
        long p;                                                                                  \
        int i, j;                                                                                \
        (void)lda;                                                                               \
        for (i = 0; i < R; ++i)                                                                  \
            for (j = 0; j < W; ++j) acc[i][j] = 0.0f;                                            \
        for (p = 0; p < kc; ++p) {                                                               \
            const float *restrict b = bp + p * ldb;                                              \
            const float *restrict a = ap + p * (A_CS);                                           \
            if (ldb != W) {                                                                      \
                const float *pf = bp + (p + GK_PF < kc ? p + GK_PF : p) * ldb;                   \
                for (j = 0; j < W; j += 16) GK_PREFETCH(pf + j);                                 \
            }                                                                                    \
            if ((R) >= 4) { /* a comes from L2: its lines a little ahead into L1 */             \
                if ((A_CS) == 1) {                                                               \
                    if ((p & 15) == 0)                                                           \
                        for (i = 0; i < R; ++i) GK_PREFETCH(ap + i * (A_RS) + p + 32);           \
                } else {                                                                         \
                    GK_PREFETCH(ap + (p + 16) * (A_CS));                                         \
                }                                                                                \
            }                                                                                    \
            GK_UNROLL_ROWS                                                                       \
            for (i = 0; i < R; ++i) {                                                            \
                const float ai = a[i * (A_RS)];                                                  \
                for (j = 0; j < W; ++j) acc[i][j] = FMA(ai, b[j], acc[i][j]);                    \
            }                                                                                    \
        }                                                                                        \
        if (mr == R && nr == W) {                                                                \
            for (i = 0; i < R; ++i) {                                                            \
                float *restrict ci = c + i * ldc;                                                \
                if (first)                                                                       \
                    for (j = 0; j < W; ++j) ci[j] = acc[i][j];                                   \
                else                                                                             \
                    for (j = 0; j < W; ++j) ci[j] += acc[i][j];                                  \
                if (bias)                                                                        \
                    for (j = 0; j < W; ++j) ci[j] += bias[j];                                    \
            }                                                                                    \
        } else { /* through a copy, so that acc itself is never indexed by variables */         \
            float tile[R][W];                                                                    \
            long ii, jj;                                                                         \
            for (i = 0; i < R; ++i)                                                              \
                for (j = 0; j < W; ++j) tile[i][j] = acc[i][j];                                  \
            for (ii = 0; ii < mr; ++ii) {                                                        \
                float *restrict ci = c + ii * ldc;                                               \
                if (first)                                                                       \
                    for (jj = 0; jj < nr; ++jj) ci[jj] = tile[ii][jj];                           \
                else                                                                             \
                    for (jj = 0; jj < nr; ++jj) ci[jj] += tile[ii][jj];                          \
                if (bias)                                                                        \
                    for (jj = 0; jj < nr; ++jj) ci[jj] += bias[jj];                              \
            }                                                                                    \
        }                                                                                        \
    }

/* The full 12 x 32 tile of the AVX-512 GEMMs (GK_MR = 12, GK_NR = 32), written with intrinsics:
 * gcc's vectorization of GK_DEFINE_MICRO keeps a pointer per row of a read in place, more than
 * the integer registers, and spills them in the inner loop (~10% slower); here the rows are three
 * pointers plus offsets 0, lda, 2 lda, 3 lda. The arithmetic is GK_DEFINE_MICRO's: per element,
 * fused multiply-adds in p order from 0, stored to c (first k block) or added to it, then + bias;
 * used only where GK_DEFINE_MICRO's multiply-add is a fused one too (partial tiles go there). */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(GK_NO_INTRINSICS) && \
    (defined(GK_HAVE_AVX512) || (defined(__AVX512F__) && defined(__FMA__) && GK_MR == 12 && GK_NR == 32))
#define GK_INTRIN_512 1
#include <immintrin.h>

#define GK_512_ATTR __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define GK_512_ROWS(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
/* element p of row I of an in-place a: rows 0-3, 4-7, 8-11 from a0, a4, a8, 0 to 3 lda further */
#define GK_512_R(I) ((I) < 4 ? a0 : (I) < 8 ? a4 : a8)
#define GK_512_DA(I)                                                                             \
    ((I) % 4 == 0 ? GK_512_R(I)[0] : (I) % 4 == 1 ? GK_512_R(I)[lda] : (I) % 4 == 2 ? GK_512_R(I)[l2] \
                                                                                  : GK_512_R(I)[l3])
#define GK_512_ZERO(I) __m512 c##I##0 = _mm512_setzero_ps(), c##I##1 = _mm512_setzero_ps();
#define GK_512_FMA(I)                                                                            \
    {                                                                                            \
        const __m512 av = _mm512_set1_ps(GK_512_A(I));                                           \
        c##I##0 = _mm512_fmadd_ps(av, b0, c##I##0);                                              \
        c##I##1 = _mm512_fmadd_ps(av, b1, c##I##1);                                              \
    }
#define GK_512_STORE(I)                                                                          \
    {                                                                                            \
        float *ci = c + (I) * ldc;                                                               \
        __m512 v0 = c##I##0, v1 = c##I##1;                                                       \
        if (!first) {                                                                            \
            v0 = _mm512_add_ps(_mm512_loadu_ps(ci), v0);                                         \
            v1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), v1);                                    \
        }                                                                                        \
        if (bias) {                                                                              \
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias));                                       \
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + 16));                                  \
        }                                                                                        \
        _mm512_storeu_ps(ci, v0);                                                                \
        _mm512_storeu_ps(ci + 16, v1);                                                           \
    }
#define GK_512_PREFETCH_B                                                                        \
    if (ldb != 32) {                                                                             \
        const float *pf = bp + (p + GK_PF < kc ? p + GK_PF : p) * ldb;                           \
        GK_PREFETCH(pf);                                                                         \
        GK_PREFETCH(pf + 16);                                                                    \
    }

/* a read in place: element (i, p) at ap[i * lda + p] */
static GK_NOINLINE GK_512_ATTR void gk_512_da(long kc, const float *restrict ap, long lda,
                                              const float *restrict bp, long ldb, float *restrict c,
                                              long ldc, int first, const float *restrict bias)
{
    const long l2 = 2 * lda, l3 = 3 * lda;
    const float *a0 = ap, *a4 = ap + 4 * lda, *a8 = ap + 8 * lda;
    long p;
    int i;
    GK_512_ROWS(GK_512_ZERO)
    for (p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_loadu_ps(bp + p * ldb), b1 = _mm512_loadu_ps(bp + p * ldb + 16);
        GK_512_PREFETCH_B
        if ((p & 15) == 0) /* a's rows come from L2: their next lines into L1 */
            for (i = 0; i < 12; ++i) GK_PREFETCH(ap + i * lda + p + 32);

#define GK_512_A(I) GK_512_DA(I)
        GK_512_ROWS(GK_512_FMA)
#undef GK_512_A
        ++a0;
        ++a4;
        ++a8;
    }
    GK_512_ROWS(GK_512_STORE)
}

/* a packed: element (i, p) at ap[p * 12 + i] */
static GK_NOINLINE GK_512_ATTR void gk_512_pk(long kc, const float *restrict ap, const float *restrict bp,
                                              long ldb, float *restrict c, long ldc, int first,
                                              const float *restrict bias)
{
    long p;
    GK_512_ROWS(GK_512_ZERO)
    for (p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_loadu_ps(bp + p * ldb), b1 = _mm512_loadu_ps(bp + p * ldb + 16);
        const float *restrict a = ap + p * 12;
        GK_512_PREFETCH_B
        GK_PREFETCH(a + 16 * 12);
#define GK_512_A(I) a[I]
        GK_512_ROWS(GK_512_FMA)
#undef GK_512_A
    }
    GK_512_ROWS(GK_512_STORE)
}

/* The same tile for the convolution's implicit patches (gk_conv_implicit): the k block is a list
 * of nseg runs, run s being sk[s] columns whose element (i, p) is sa[s][i * lda + p]; b packed
 * (32 floats a row, zero past nr, 64-byte aligned). Rows and columns may be partial: row i goes to
 * crow[i] unless NULL, columns below nr. Per element, exactly gk_512_da's arithmetic over the
 * concatenated runs. */
#define GK_512_STORE_ROW(I)                                                                      \
    if (crow[I]) {                                                                               \
        float *ci = crow[I];                                                                     \
        __m512 v0 = c##I##0, v1 = c##I##1;                                                       \
        if (!first) {                                                                            \
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), v0);                               \
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), v1);                          \
        }                                                                                        \
        if (bias) {                                                                              \
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias));                             \
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + 16));                        \
        }                                                                                        \
        _mm512_mask_storeu_ps(ci, m0, v0);                                                       \
        _mm512_mask_storeu_ps(ci + 16, m1, v1);                                                  \
    }

static GK_NOINLINE GK_512_ATTR void gk_512_seg(int nseg, const float *const *sa, const long *sk, long lda,
                                               long g4, long g8, const float *restrict bp, long ldb,
                                               float *const *crow, long nr, int first, const float *restrict bias)
{
    const long l2 = 2 * lda, l3 = 3 * lda;
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffffu : (1u << nr) - 1u);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffffu : nr > 16 ? (1u << (nr - 16)) - 1u : 0u);
    long p;
    int q, i;
    GK_512_ROWS(GK_512_ZERO)
    for (q = 0; q < nseg; ++q) {
        const float *a0 = sa[q], *a4 = sa[q] + g4, *a8 = sa[q] + g8;
        for (p = 0; p < sk[q]; ++p) {
            /* masked where nr < 32: b's row (read in place) may end there; the lanes are zeros
             * (a whole panel loads unmasked: masked loads cost 7% on the seed's residual convs) */
            const __m512 b0 = nr == 32 ? _mm512_loadu_ps(bp) : _mm512_maskz_loadu_ps(m0, bp);
            const __m512 b1 = nr == 32 ? _mm512_loadu_ps(bp + 16) : _mm512_maskz_loadu_ps(m1, bp + 16);
            GK_PREFETCH(bp + GK_PF * ldb); /* b's rows ahead (a prefetch never faults past its end) */
            if ((p & 15) == 0)
                for (i = 0; i < 4; ++i) {
                    GK_PREFETCH(a0 + i * lda + 32);
                    GK_PREFETCH(a4 + i * lda + 32);
                    GK_PREFETCH(a8 + i * lda + 32);
                }

#define GK_512_A(I) GK_512_DA(I)
            GK_512_ROWS(GK_512_FMA)
#undef GK_512_A
            ++a0;
            ++a4;
            ++a8;
            bp += ldb;
        }
    }
    GK_512_ROWS(GK_512_STORE_ROW)
}

/* GK_DEFINE_MICRO for the 12 x 32 tiles: full tiles by the kernels above. */
#define GK_DEFINE_MICRO_512(NAME, R, W, A_RS, A_CS, ATTR, FMA)                                   \
    GK_DEFINE_MICRO(NAME##_generic, R, W, A_RS, A_CS, ATTR, FMA)                                 \
    static ATTR void NAME(long kc, const float *restrict ap, long lda, const float *restrict bp, \
                          long ldb, float *restrict c, long ldc, long mr, long nr, int first,    \
                          const float *restrict bias)                                            \
    {                                                                                            \
        if (mr == 12 && nr == 32 && (A_CS) == 1)                                                 \
            gk_512_da(kc, ap, lda, bp, ldb, c, ldc, first, bias);                                \
        else if (mr == 12 && nr == 32)                                                           \
            gk_512_pk(kc, ap, bp, ldb, c, ldc, first, bias);                                     \
        else                                                                                     \
            NAME##_generic(kc, ap, lda, bp, ldb, c, ldc, mr, nr, first, bias);                   \
    }
#endif

/* A whole GEMM for one register tile MR x NR and target ATTR: its micro-kernels (heights 1, 2, 4,
 * 8 and MR; widths NR and NR / 2 for narrow panels; wide ones for blocks of at most 4 rows, whose
 * b is read in place: more accumulators to hide the FMA latency, longer runs of each row of b;
 * and ones reading a in place), the packing and gk_gemm_part_SFX, one unit of work:
 * y[i0:i1, j0:j1] of the product. Its rows are taken in blocks of at most MC = 16 MR; each block's
 * a is packed per k block (unless the unit has at most 4 NR columns: packing would cost more
 * than it saves), then every NR-wide panel of b is packed once (or read in place when the block
 * has a single row panel, so b is read exactly once) and swept by the row panels while it sits in
 * L1. The packing buffers are arrays on the stack (MC * KC + KC * NR floats). */
#define GK_DEFINE_GEMM(SFX, MR, NR, ATTR, FMA, FULL)                                             \
    GK_DEFINE_MICRO(gk_micro_1_##SFX, 1, NR, 1, 1, ATTR, FMA)                                    \
    GK_DEFINE_MICRO(gk_micro_2_##SFX, 2, NR, 1, 2, ATTR, FMA)                                    \
    GK_DEFINE_MICRO(gk_micro_4_##SFX, 4, NR, 1, 4, ATTR, FMA)                                    \
    GK_DEFINE_MICRO(gk_micro_8_##SFX, 8, NR, 1, 8, ATTR, FMA)                                    \
    FULL(gk_micro_mr_##SFX, MR, NR, 1, MR, ATTR, FMA)                                            \
    GK_DEFINE_MICRO(gk_micro_1h_##SFX, 1, NR / 2, 1, 1, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_2h_##SFX, 2, NR / 2, 1, 2, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_4h_##SFX, 4, NR / 2, 1, 4, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_8h_##SFX, 8, NR / 2, 1, 8, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_mrh_##SFX, MR, NR / 2, 1, MR, ATTR, FMA)                            \
    GK_DEFINE_MICRO(gk_micro_1w_##SFX, 1, 4 * NR, 1, 1, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_2w_##SFX, 2, 2 * NR, 1, 2, ATTR, FMA)                               \
    GK_DEFINE_MICRO(gk_micro_4w_##SFX, 4, 2 * NR, 1, 4, ATTR, FMA)                               \
    FULL(gk_micro_mr_da_##SFX, MR, NR, lda, 1, ATTR, FMA)                                        \
    GK_DEFINE_MICRO(gk_micro_mrh_da_##SFX, MR, NR / 2, lda, 1, ATTR, FMA)                        \
                                                                                                 \
    /* the tile height for a panel of mr rows: the smallest of 1, 2, 4, 8 (if < MR), MR >= mr */ \
    static ATTR long gk_tile_rows_##SFX(long mr)                                                 \
    {                                                                                            \
        if (mr <= 1) return 1;                                                                   \
        if (mr <= 2) return 2;                                                                   \
        if (mr <= 4) return 4;                                                                   \
        if ((MR) > 8 && mr <= 8) return 8;                                                       \
        return MR;                                                                               \
    }                                                                                            \
                                                                                                 \
    static ATTR void gk_micro_##SFX(long r, long w, long kc, const float *ap, const float *bp,   \
                                    long ldb, float *c, long ldc, long mr, long nr, int first,   \
                                    const float *bias)                                           \
    {                                                                                            \
        if (w == (NR)) {                                                                         \
            switch (r) {                                                                         \
            case 1: gk_micro_1_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;   \
            case 2: gk_micro_2_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;   \
            case 4: gk_micro_4_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;   \
            case 8: gk_micro_8_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;   \
            default: gk_micro_mr_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return; \
            }                                                                                    \
        }                                                                                        \
        switch (r) {                                                                             \
        case 1: gk_micro_1h_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;      \
        case 2: gk_micro_2h_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;      \
        case 4: gk_micro_4h_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;      \
        case 8: gk_micro_8h_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;      \
        default: gk_micro_mrh_##SFX(kc, ap, 0, bp, ldb, c, ldc, mr, nr, first, bias); return;    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* dst[p * r + i] = a[i * lda + p] for i < mr, zero for mr <= i < r (p < kc) */              \
    static ATTR void gk_pack_a_##SFX(const float *a, long lda, long mr, long kc, long r,         \
                                     float *dst)                                                 \
    {                                                                                            \
        long i, p;                                                                               \
        if (mr == (MR) && r == (MR)) {                                                           \
            for (p = 0; p < kc; ++p) {                                                           \
                int ii;                                                                          \
                for (ii = 0; ii < (MR); ++ii) dst[p * (MR) + ii] = a[ii * lda + p];              \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        for (i = 0; i < mr; ++i)                                                                 \
            for (p = 0; p < kc; ++p) dst[p * r + i] = a[i * lda + p];                            \
        for (; i < r; ++i)                                                                       \
            for (p = 0; p < kc; ++p) dst[p * r + i] = 0.0f;                                      \
    }                                                                                            \
                                                                                                 \
    /* dst[p * w + j] = b[p * ldb + j] for j < nr, zero for nr <= j < w (p < kc) */              \
    static ATTR void gk_pack_b_##SFX(const float *b, long ldb, long kc, long nr, long w,         \
                                     float *dst)                                                 \
    {                                                                                            \
        long p, j;                                                                               \
        if (nr == (NR)) {                                                                        \
            for (p = 0; p < kc; ++p) {                                                           \
                const float *restrict bp = b + p * ldb;                                          \
                float *restrict d = dst + p * (NR);                                              \
                int jj;                                                                          \
                for (jj = 0; jj < (NR); ++jj) d[jj] = bp[jj];                                    \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        for (p = 0; p < kc; ++p) {                                                               \
            for (j = 0; j < nr; ++j) dst[p * w + j] = b[p * ldb + j];                            \
            for (; j < w; ++j) dst[p * w + j] = 0.0f;                                            \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    static ATTR void gk_gemm_part_##SFX(const float *a, long lda, const float *b, long ldb,      \
                                        const float *bias, float *y, long ldy, long i0, long i1, \
                                        long j0, long j1, long k)                                \
    {                                                                                            \
        float apack_raw[16 * (MR) * GK_KC + 16];                                                 \
        float bpack_raw[GK_KC * (NR) + 16];                                                      \
        /* 64-byte aligned: whole-vector loads of b panels never straddle cache lines */         \
        float *const apack = gk_align64(apack_raw);                                              \
        float *const bpack = gk_align64(bpack_raw);                                              \
        const int direct_a = j1 - j0 <= 4 * (NR);                                                \
        long ic, pc, ir, jr;                                                                     \
        for (ic = i0; ic < i1; ic += 16 * (MR)) {                                                \
            const long mc = gk_minl(16 * (MR), i1 - ic);                                         \
            const int direct_b = mc <= (MR);                                                     \
            for (pc = 0; pc < k; pc += GK_KC) {                                                  \
                const long kc = gk_minl(GK_KC, k - pc);                                          \
                const int first = pc == 0;                                                       \
                const float *bias_k = pc + kc >= k ? bias : NULL;                                \
                for (ir = 0; ir < mc; ir += (MR)) {                                              \
                    const long mr = gk_minl(MR, mc - ir);                                        \
                    if (!direct_a || mr < (MR))                                                  \
                        gk_pack_a_##SFX(a + (ic + ir) * lda + pc, lda, mr, kc,                   \
                                        gk_tile_rows_##SFX(mr), apack + ir * kc);                \
                }                                                                                \
                jr = j0;                                                                         \
                if (mc <= 4) { /* whole wide panels straight from b */                           \
                    const long r = gk_tile_rows_##SFX(mc), ww = r == 1 ? 4 * (NR) : 2 * (NR);    \
                    for (; jr + ww <= j1; jr += ww) {                                            \
                        const float *bp = b + pc * ldb + jr;                                     \
                        float *yp = y + ic * ldy + jr;                                           \
                        const float *bj = bias_k ? bias_k + jr : NULL;                           \
                        if (r == 1)                                                              \
                            gk_micro_1w_##SFX(kc, apack, 0, bp, ldb, yp, ldy, mc, ww, first, bj);\
                        else if (r == 2)                                                         \
                            gk_micro_2w_##SFX(kc, apack, 0, bp, ldb, yp, ldy, mc, ww, first, bj);\
                        else                                                                     \
                            gk_micro_4w_##SFX(kc, apack, 0, bp, ldb, yp, ldy, mc, ww, first, bj);\
                    }                                                                            \
                }                                                                                \
                for (; jr < j1; jr += (NR)) {                                                    \
                    const long nr = gk_minl(NR, j1 - jr);                                        \
                    const long w = nr <= (NR) / 2 ? (NR) / 2 : (NR);                             \
                    const float *bp = b + pc * ldb + jr;                                         \
                    long bld = ldb;                                                              \
                    if (!direct_b || nr < w) {                                                   \
                        gk_pack_b_##SFX(bp, ldb, kc, nr, w, bpack);                              \
                        bp = bpack;                                                              \
                        bld = w;                                                                 \
                    }                                                                            \
                    for (ir = 0; ir < mc; ir += (MR)) {                                          \
                        const long mr = gk_minl(MR, mc - ir);                                    \
                        float *yp = y + (ic + ir) * ldy + jr;                                    \
                        const float *bj = bias_k ? bias_k + jr : NULL;                           \
                        if (direct_a && mr == (MR)) {                                            \
                            const float *ap = a + (ic + ir) * lda + pc;                          \
                            if (w == (NR))                                                       \
                                gk_micro_mr_da_##SFX(kc, ap, lda, bp, bld, yp, ldy, mr, nr,      \
                                                     first, bj);                                 \
                            else                                                                 \
                                gk_micro_mrh_da_##SFX(kc, ap, lda, bp, bld, yp, ldy, mr, nr,     \
                                                      first, bj);                                \
                        } else {                                                                 \
                            gk_micro_##SFX(gk_tile_rows_##SFX(mr), w, kc, apack + ir * kc, bp,   \
                                           bld, yp, ldy, mr, nr, first, bj);                     \
                        }                                                                        \
                    }                                                                            \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }

/* Fused multiply-add where the build's target has it in hardware (gcc vectorizes fmaf into
 * vfmadd); elsewhere a plain multiply-add, never a slow software fma. */
#ifdef FP_FAST_FMAF
#define GK_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define GK_FMA(a, b, c) ((a) * (b) + (c))
#endif
#define GK_HW_FMA(a, b, c) fmaf((a), (b), (c)) /* in functions targeting FMA hardware */
#define GK_NO_ATTR

#ifdef GK_INTRIN_512
#define GK_MICRO_512 GK_DEFINE_MICRO_512
#else
#define GK_MICRO_512 GK_DEFINE_MICRO
#endif
#if defined(GK_INTRIN_512) && !defined(GK_HAVE_AVX512)
GK_DEFINE_GEMM(base, GK_MR, GK_NR, GK_NO_ATTR, GK_FMA, GK_DEFINE_MICRO_512)
#else
GK_DEFINE_GEMM(base, GK_MR, GK_NR, GK_NO_ATTR, GK_FMA, GK_DEFINE_MICRO)
#endif
#ifdef GK_HAVE_AVX2
GK_DEFINE_GEMM(avx2, 5, 16, __attribute__((target("avx2,fma"))), GK_HW_FMA, GK_DEFINE_MICRO)
#endif
#ifdef GK_HAVE_AVX512
GK_DEFINE_GEMM(avx512, 12, 32, __attribute__((target("avx512f,avx512vl,avx2,fma"))), GK_HW_FMA, GK_MICRO_512)
#endif

typedef void (*gk_gemm_part_fn)(const float *, long, const float *, long, const float *, float *,
                                long, long, long, long, long, long);

/* The GEMM for this CPU: its unit of work and register tile. */
static gk_gemm_part_fn gk_gemm_impl(long *mr, long *nr)
{
#ifdef GK_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        *mr = 12;
        *nr = 32;
        return gk_gemm_part_avx512;
    }
#endif
#ifdef GK_HAVE_AVX2
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *mr = 5;
        *nr = 16;
        return gk_gemm_part_avx2;
    }
#endif
    *mr = GK_MR;
    *nr = GK_NR;
    return gk_gemm_part_base;
}

/* Threads for `work` multiply-adds (or similar): one below GK_PAR_WORK (about 40 us on one core);
 * else all of them. Inside a session (gk_session) the other threads are awake and waiting for
 * work, so that is all. Outside one, a kernel opens its own OpenMP parallel region, whose threads
 * sleep between regions under OMP_WAIT_POLICY=passive: waking one costs 5-100 us, and on a busy
 * machine a thread may wait a whole scheduler tick (4-8 ms) for its turn. So there, threads are
 * also ruled out while they have lately taken longer to join a region than half the work would
 * take alone. The estimate of that delay (gk_wake, seconds) follows every region (a running mean
 * that grows at most x2.75 a step, so that one preempted thread does not turn threads off); while
 * it rules threads out, they are tried anyway once the work done alone since the last try adds up
 * to 16 times the delay (so trying costs at most ~6%), to see whether it has changed. Thread
 * counts never change results, only speed. */
#ifndef GK_PAR_WORK
#define GK_PAR_WORK 2000000L
#endif
#ifndef GK_ITEM_WORK
#define GK_ITEM_WORK 200000L  /* the least work of one unit of a parallel loop */
#endif
#ifndef GK_SESSION_WORK
#define GK_SESSION_WORK 1e7   /* the least work of a call that opens a session: ~200 us on one core */
#endif
#define GK_RATE 5e10          /* multiply-adds per second on one core, a low estimate */

/* A session's team needs atomics and a thread-local flag: GCC's and Clang's builtins. */
#if defined(_OPENMP) && defined(__GNUC__)
#define GK_TEAM 1
#endif

#ifdef _OPENMP
static double gk_wake = 2e-6;
static double gk_alone; /* seconds of work done alone since threads were last tried */
#endif

#ifdef GK_TEAM
/* The session's job: a loop of `items` calls of fn, taken one at a time by the session's calling
 * thread and the helpers that are awake. Thread t takes the items of its own range first (the
 * t-th of `threads` equal ranges: the same part of every layer, so that what it wrote for one
 * layer is in its cache for the next), then what is left of the others' ranges. A job's number
 * (gen) is even once it is published and odd while the next one is set up; `busy` counts the
 * helpers inside a job's loop, so that its fields are not rewritten under them. */
#define GK_TEAM_MAX 64
static struct {
    void (*fn)(void *ctx, long item, int thread);
    void *ctx;
    long items, done;
    int threads, busy, stop;
    unsigned long gen;
    struct { long next; char pad[56]; } range[GK_TEAM_MAX]; /* each range's next item, a cache line each */
} gk_job;
static int gk_session_open;             /* one session at a time in a process */
static __thread int gk_session_thread;  /* 1 on the thread that opened the session */
static int gk_session_size;             /* its team's thread count */

#define GK_LOAD(p) __atomic_load_n(p, __ATOMIC_SEQ_CST)
#define GK_STORE(p, v) __atomic_store_n(p, v, __ATOMIC_SEQ_CST)
#define GK_ADD(p, v) __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST)

static void gk_spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
#endif

static int gk_threads(double work)
{
#ifdef _OPENMP
    double wake, alone;
    if (work < (double)GK_PAR_WORK) return 1;
#ifdef GK_TEAM
    if (gk_session_thread) return gk_session_size;
#endif
    if (omp_in_parallel()) return 1;
    GK_PRAGMA(omp atomic read)
    wake = gk_wake;
    if (work < 2.0 * GK_RATE * wake) {
        GK_PRAGMA(omp atomic capture)
        {
            gk_alone += work / GK_RATE;
            alone = gk_alone;
        }
        if (alone < 16.0 * wake) return 1;
        GK_PRAGMA(omp atomic write)
        gk_alone = 0.0;
    }
    return omp_get_max_threads();
#else
    (void)work;
    return 1;
#endif
}

/* One unit of a parallel loop: item `item` of the loop whose state is ctx, on thread `thread`
 * (0 is the calling thread; below the thread count, for per-thread scratch). */
typedef void (*gk_item_fn)(void *ctx, long item, int thread);

#ifdef GK_TEAM
/* Runs the current job's items until none is left, its own range's first; fn's writes are
 * published by `done`. */
static void gk_job_take(int thread)
{
    const gk_item_fn fn = gk_job.fn;
    void *const ctx = gk_job.ctx;
    const long items = gk_job.items, ranges = gk_job.threads;
    long r, i;
    if (thread >= ranges) return;
    for (r = 0; r < ranges; ++r) {
        const long range = (thread + r) % ranges, end = items * (range + 1) / ranges;
        while ((i = __atomic_fetch_add(&gk_job.range[range].next, 1, __ATOMIC_SEQ_CST)) < end) {
            fn(ctx, i, thread);
            GK_ADD(&gk_job.done, 1);
        }
    }
}

/* A helper's life in a session: take every job's items it sees, spin between jobs. */
static void gk_job_help(int thread)
{
    unsigned long seen = 0;
    for (;;) {
        const unsigned long g = GK_LOAD(&gk_job.gen);
        if (g != seen && !(g & 1)) {
            GK_ADD(&gk_job.busy, 1);
            if (GK_LOAD(&gk_job.gen) == g) { /* still that job: its fields are stable */
                seen = g;
                gk_job_take(thread);
            }
            GK_ADD(&gk_job.busy, -1);
        } else if (GK_LOAD(&gk_job.stop)) {
            return;
        } else {
            gk_spin_pause();
        }
    }
}

/* The session thread's side of a loop: publish it, take items, wait for the helpers' last ones
 * (a helper that has not woken up yet takes none and is not waited for). */
static void gk_job_run(int threads, long items, gk_item_fn fn, void *ctx)
{
    const unsigned long g = gk_job.gen;
    int r;
    GK_STORE(&gk_job.gen, g + 1);
    while (GK_LOAD(&gk_job.busy)) gk_spin_pause();
    gk_job.fn = fn;
    gk_job.ctx = ctx;
    gk_job.items = items;
    gk_job.threads = threads;
    for (r = 0; r < threads; ++r) gk_job.range[r].next = items * r / threads;
    gk_job.done = 0;
    GK_STORE(&gk_job.gen, g + 2);
    gk_job_take(0);
    while (GK_LOAD(&gk_job.done) < items) gk_spin_pause();
}
#endif

/* Runs fn for items 0 .. items - 1 on up to `threads` threads, taken dynamically: a thread that
 * starts late takes fewer and the others do not wait for it to start. */
static void gk_run(int threads, long items, gk_item_fn fn, void *ctx)
{
    long i;
#ifdef _OPENMP
    double t0, lag = 0.0;
#endif
    if (threads <= 1 || items <= 1) {
        for (i = 0; i < items; ++i) fn(ctx, i, 0);
        return;
    }
#ifdef GK_TEAM
    if (gk_session_thread) {
        gk_job_run(threads, items, fn, ctx);
        return;
    }
#endif
#ifdef _OPENMP
    t0 = omp_get_wtime();
    GK_PRAGMA(omp parallel num_threads(threads))
    {
        const int thread = omp_get_thread_num();
        if (thread != 0) { /* the latest arrival is how long a wake-up took */
            const double d = omp_get_wtime() - t0;
            GK_PRAGMA(omp critical(gk_lag))
            lag = d > lag ? d : lag;
        }
        GK_PRAGMA(omp for schedule(dynamic, 1) nowait)
        for (i = 0; i < items; ++i) fn(ctx, i, thread);
    }
    {
        double w;
        GK_PRAGMA(omp atomic read)
        w = gk_wake;
        /* a single late start (the thread was preempted once) moves it little: at most x2.75 */
        w = 0.75 * w + 0.25 * (lag < 8.0 * w ? lag : 8.0 * w);
        GK_PRAGMA(omp atomic write)
        gk_wake = w;
    }
#endif
}

int gk_session_threads(void)
{
#ifdef GK_TEAM
    return gk_session_thread ? gk_session_size : 0;
#else
    return 0;
#endif
}

int gk_session(int (*body)(void *), void *arg, double work)
{
#ifdef GK_TEAM
    int rc = 0, closed = 0;
    const int threads = omp_get_max_threads() < GK_TEAM_MAX ? omp_get_max_threads() : GK_TEAM_MAX;
    if (work < GK_SESSION_WORK || threads < 2 || gk_session_thread || omp_in_parallel() ||
        !__atomic_compare_exchange_n(&gk_session_open, &closed, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return body(arg);
    gk_job.gen = 0;
    gk_job.busy = 0;
    gk_job.stop = 0;
    GK_PRAGMA(omp parallel num_threads(threads))
    {
        const int thread = omp_get_thread_num();
        if (thread == 0) {
            gk_session_size = omp_get_num_threads(); /* at most GK_TEAM_MAX: no helper without a range */
            gk_session_thread = 1;
            rc = body(arg);
            gk_session_thread = 0;
            GK_STORE(&gk_job.stop, 1);
        } else {
            gk_job_help(thread);
        }
    }
    GK_STORE(&gk_session_open, 0);
    return rc;
#else
    (void)work;
    return body(arg);
#endif
}

static void gk_act_block(int act, float *y, long ldy, long rows, long cols);

/* One unit of gk_gemm_act's loop: the product's rows and columns of row block item / groups and
 * column group item % groups, and their activation when it can be fused. */
struct gk_gemm_job {
    const float *a, *b, *bias;
    float *y;
    long lda, ldb, ldy, m, k, n, mr, nr, panels, npanels, blocks, groups;
    gk_gemm_part_fn part;
    int act, fuse;
};

static void gk_gemm_item(void *ctx, long item, int thread)
{
    const struct gk_gemm_job *j = (const struct gk_gemm_job *)ctx;
    const long rb = item / j->groups, cg = item % j->groups;
    const long i0 = gk_minl(j->m, rb * j->panels / j->blocks * j->mr);
    const long i1 = gk_minl(j->m, (rb + 1) * j->panels / j->blocks * j->mr);
    const long j0 = gk_minl(j->n, cg * j->npanels / j->groups * j->nr);
    const long j1 = gk_minl(j->n, (cg + 1) * j->npanels / j->groups * j->nr);
    (void)thread;
    if (i0 < i1 && j0 < j1) {
        j->part(j->a, j->lda, j->b, j->ldb, j->bias, j->y, j->ldy, i0, i1, j0, j1, j->k);
        if (j->fuse) gk_act_block(j->act, j->y + i0 * j->ldy + j0, j->ldy, i1 - i0, j1 - j0);
    }
}

/* y (m, n) = act(a (m, k) @ b (k, n) [+ bias]), rows lda, ldb, ldy floats apart. Each element is
 * the sum over k blocks (in order) of that block's products (in order), then + bias: the same for
 * any thread count and any split of the work. With threads, the product is cut into units (row
 * blocks of whole MR panels, and NR panel groups of n when there are too few row blocks), about
 * four per thread, taken dynamically: a thread that starts late (a busy machine) takes fewer, and
 * the others do not wait for it. Each unit applies the activation to its part of y while it is
 * in cache (softmax-like ones need whole rows: after the product when n was split). */
static void gk_gemm_act(const float *a, long lda, const float *b, long ldb, const float *bias, float *y,
                        long ldy, long m, long k, long n, int act)
{
    struct gk_gemm_job j;
    long mr, nr, want;
    gk_gemm_part_fn part;
    int threads;
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        long i, c;
        for (i = 0; i < m; ++i)
            for (c = 0; c < n; ++c) y[i * ldy + c] = bias ? bias[c] : 0.0f;
        gk_act_block(act, y, ldy, m, n);
        return;
    }
    part = gk_gemm_impl(&mr, &nr);
    threads = gk_threads((double)m * (double)n * (double)k);
    if (threads <= 1) {
        part(a, lda, b, ldb, bias, y, ldy, 0, m, 0, n, k);
        gk_act_block(act, y, ldy, m, n);
        return;
    }
    j = (struct gk_gemm_job){ .a = a, .b = b, .bias = bias, .y = y, .lda = lda, .ldb = ldb, .ldy = ldy, .m = m,
                              .k = k, .n = n, .mr = mr, .nr = nr, .panels = (m + mr - 1) / mr,
                              .npanels = (n + nr - 1) / nr, .part = part, .act = act };
    want = gk_minl(4L * threads, gk_maxl(threads, (long)((double)m * (double)n * (double)k / GK_ITEM_WORK)));
    j.blocks = gk_minl(j.panels, want);
    j.groups = gk_minl(j.npanels, (want + j.blocks - 1) / j.blocks);
    j.fuse = j.groups == 1 || (act != GK_SOFTMAX && act != GK_LOG_SOFTMAX);
    gk_run(threads, j.blocks * j.groups, gk_gemm_item, &j);
    if (!j.fuse) gk_act_block(act, y, ldy, m, n);
}

static void gk_gemm(const float *a, long lda, const float *b, long ldb, const float *bias, float *y,
                    long ldy, long m, long k, long n)
{
    gk_gemm_act(a, lda, b, ldb, bias, y, ldy, m, k, n, GK_LINEAR);
}

void gk_matmul(const float *a, const float *b, const float *bias, float *y, long m, long k, long n)
{
    gk_gemm(a, k, b, n, bias, y, n, m, k, n);
}

void gk_matmul_act(const float *a, const float *b, const float *bias, float *y, long m, long k, long n, int act)
{
    gk_gemm_act(a, k, b, n, bias, y, n, m, k, n, act);
}

void gk_matmul_strided(const float *a, long lda, const float *b, long ldb, const float *bias, float *y,
                       long ldy, long m, long k, long n)
{
    gk_gemm(a, lda, b, ldb, bias, y, ldy, m, k, n);
}

/* 32 x 32 blocks: both the rows read and the rows written stay in L1. */
void gk_transpose(const float *x, float *y, long rows, long cols)
{
    enum { B = 32 };
    long i0, j0, i, j;
    for (i0 = 0; i0 < rows; i0 += B)
        for (j0 = 0; j0 < cols; j0 += B) {
            const long i1 = gk_minl(i0 + B, rows), j1 = gk_minl(j0 + B, cols);
            for (j = j0; j < j1; ++j)
                for (i = i0; i < i1; ++i) y[j * rows + i] = x[i * cols + j];
        }
}

/* ---- activations --------------------------------------------------------------------------- */

/* Softmax or log-softmax of one row: exp(x - max) / sum, or (x - max) - log(sum). The max and
 * the sum (in double) are taken over 16 interleaved partial results so that the loops
 * vectorize, then combined in a fixed order. */
static void gk_softmax_row(const float *x, float *y, long n, int log_form)
{
    enum { LANES = 16 };
    float mx[LANES], mxv;
    double acc[LANES], sum = 0.0;
    long j, body = n / LANES * LANES;
    int l;
    for (l = 0; l < LANES; ++l) {
        mx[l] = -HUGE_VALF;
        acc[l] = 0.0;
    }
    for (j = 0; j < body; j += LANES)
        for (l = 0; l < LANES; ++l) mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
    mxv = -HUGE_VALF;
    for (l = 0; l < LANES; ++l) mxv = mx[l] > mxv ? mx[l] : mxv;
    for (j = body; j < n; ++j) mxv = x[j] > mxv ? x[j] : mxv;
    if (log_form) { /* y = x - max first: in place (y == x) stays correct */
        for (j = 0; j < n; ++j) y[j] = x[j] - mxv;
        for (j = 0; j < body; j += LANES)
            for (l = 0; l < LANES; ++l) acc[l] += (double)gk_expf(y[j + l]);
        for (j = body; j < n; ++j) sum += (double)gk_expf(y[j]);
    } else {
        for (j = 0; j < n; ++j) y[j] = gk_expf(x[j] - mxv);
        for (j = 0; j < body; j += LANES)
            for (l = 0; l < LANES; ++l) acc[l] += (double)y[j + l];
        for (j = body; j < n; ++j) sum += (double)y[j];
    }
    for (l = 0; l < LANES; ++l) sum += acc[l];
    if (log_form) {
        const float ls = (float)log(sum);
        for (j = 0; j < n; ++j) y[j] = y[j] - ls;
    } else {
        const float s = (float)sum;
        for (j = 0; j < n; ++j) y[j] = y[j] / s;
    }
}

/* An elementwise activation on n values. */
static void gk_activation_span(int act, const float *x, float *y, long n)
{
    const float selu_alpha = 1.6732632423543772848170429916717f;
    const float selu_scale = 1.0507009873554804934193349852946f;
    long i;
    switch (act) {
    case GK_RELU:
        for (i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case GK_SIGMOID:
        for (i = 0; i < n; ++i) y[i] = gk_sigmoidf(x[i]);
        break;
    case GK_TANH:
        for (i = 0; i < n; ++i) y[i] = gk_tanhf(x[i]);
        break;
    case GK_ELU:
        for (i = 0; i < n; ++i) {
            const int pos = isgreaterequal(x[i], 0.0f);
            y[i] = gk_select(pos, x[i], gk_expm1f(gk_select(pos, 0.0f, x[i])));
        }
        break;
    case GK_SELU:
        for (i = 0; i < n; ++i) {
            const int pos = isgreaterequal(x[i], 0.0f);
            y[i] = selu_scale * gk_select(pos, x[i], selu_alpha * gk_expm1f(gk_select(pos, 0.0f, x[i])));
        }
        break;
    case GK_SOFTPLUS:
        for (i = 0; i < n; ++i) y[i] = gk_softplusf(x[i]);
        break;
    case GK_SOFTSIGN:
        for (i = 0; i < n; ++i) y[i] = x[i] / (1.0f + fabsf(x[i]));
        break;
    case GK_SILU:
        for (i = 0; i < n; ++i) y[i] = x[i] * gk_sigmoidf(x[i]);
        break;
    case GK_GELU: /* exact: 0.5 x (1 + erf(x / sqrt 2)), as 0.5 x erfc(-x / sqrt 2) (no cancellation) */
        for (i = 0; i < n; ++i) y[i] = 0.5f * x[i] * erfcf(-x[i] * 0.707106781186547524f);
        break;
    case GK_HARD_SIGMOID:
        for (i = 0; i < n; ++i) y[i] = gk_hard_sigmoidf(x[i]);
        break;
    case GK_EXPONENTIAL:
        for (i = 0; i < n; ++i) y[i] = gk_expf(x[i]);
        break;
    case GK_RELU6:
        for (i = 0; i < n; ++i) {
            const float v = x[i] < 0.0f ? 0.0f : x[i];
            y[i] = v > 6.0f ? 6.0f : v;
        }
        break;
    case GK_LEAKY_RELU:
        for (i = 0; i < n; ++i) y[i] = x[i] >= 0.0f ? x[i] : x[i] * 0.2f;
        break;
    case GK_MISH:
        for (i = 0; i < n; ++i) y[i] = x[i] * gk_tanhf(gk_softplusf(x[i]));
        break;
    case GK_HARD_SILU:
        for (i = 0; i < n; ++i) y[i] = x[i] * gk_hard_sigmoidf(x[i]);
        break;
    default: /* GK_LINEAR */
        if (y != x) memmove(y, x, (size_t)n * sizeof *y);
        break;
    }
}

/* act on rows x row_len values on this thread. */
/* gk_softmax_row on rows shorter than its 16 lanes (where it is all scalar tails): the same
 * arithmetic, but the exponentials of up to 256 values (several rows) in one vectorized loop. */
static void gk_softmax_short(const float *x, float *y, long rows, long n, int log_form)
{
    enum { BUF = 256 };
    float t[BUF], mx[BUF];
    const long per = BUF / n;
    long r0, r, j;
    for (r0 = 0; r0 < rows; r0 += per) {
        const long rb = gk_minl(per, rows - r0), m = rb * n;
        const float *xb = x + r0 * n;
        float *yb = y + r0 * n;
        for (r = 0; r < rb; ++r) {
            float v = -HUGE_VALF;
            for (j = 0; j < n; ++j) v = xb[r * n + j] > v ? xb[r * n + j] : v;
            mx[r] = v;
        }
        for (r = 0; r < rb; ++r)
            for (j = 0; j < n; ++j) t[r * n + j] = xb[r * n + j] - mx[r];
        if (log_form) memcpy(yb, t, (size_t)m * sizeof *yb); /* x - max, before x (maybe y) is gone */
        for (j = 0; j < m; ++j) t[j] = gk_expf(t[j]);
        for (r = 0; r < rb; ++r) {
            double sum = 0.0;
            for (j = 0; j < n; ++j) sum += (double)t[r * n + j];
            if (log_form) {
                const float ls = (float)log(sum);
                for (j = 0; j < n; ++j) yb[r * n + j] = yb[r * n + j] - ls;
            } else {
                const float sf = (float)sum;
                for (j = 0; j < n; ++j) yb[r * n + j] = t[r * n + j] / sf;
            }
        }
    }
}

static void gk_activation_serial(int act, const float *x, float *y, long rows, long row_len)
{
    long i;
    if (rows <= 0 || row_len <= 0) return;
    if ((act == GK_SOFTMAX || act == GK_LOG_SOFTMAX) && row_len < 16 && rows > 1) {
        gk_softmax_short(x, y, rows, row_len, act == GK_LOG_SOFTMAX);
        return;
    }
    if (act == GK_SOFTMAX || act == GK_LOG_SOFTMAX) {
        for (i = 0; i < rows; ++i)
            gk_softmax_row(x + i * row_len, y + i * row_len, row_len, act == GK_LOG_SOFTMAX);
        return;
    }
    gk_activation_span(act, x, y, rows * row_len);
}

/* In place on a block of y (rows x cols, rows ldy floats apart), on this thread. */
static void gk_act_block(int act, float *y, long ldy, long rows, long cols)
{
    long i;
    if (act == GK_LINEAR || rows <= 0 || cols <= 0) return;
    if (ldy == cols) {
        gk_activation_serial(act, y, y, rows, cols);
        return;
    }
    for (i = 0; i < rows; ++i) gk_activation_serial(act, y + i * ldy, y + i * ldy, 1, cols);
}

/* One unit of gk_activation's loop: a row (softmax-like) or a span of CHUNK values. */
enum { GK_ACT_CHUNK = 8192 };
struct gk_act_job {
    const float *x;
    float *y;
    long n, row_len;
    int act;
};

void gk_reverse_steps(const float *x, float *y, long batch, long steps, long inner)
{
    long n, t;
    for (n = 0; n < batch; ++n)
        for (t = 0; t < steps; ++t)
            memcpy(y + (n * steps + t) * inner, x + (n * steps + steps - 1 - t) * inner, (size_t)inner * sizeof *y);
}

void gk_keras_relu(const float *x, float *y, long n, float negative_slope, float max_value, float threshold)
{
    long i;
    if (negative_slope != 0.0f && max_value < 0.0f && threshold == 0.0f) { /* leaky_relu */
        for (i = 0; i < n; ++i) y[i] = x[i] >= 0.0f ? x[i] : x[i] * negative_slope;
        return;
    }
    for (i = 0; i < n; ++i) {
        const float v = x[i], under = threshold - v;
        float r = v > threshold ? v : 0.0f;
        if (max_value >= 0.0f && r > max_value) r = max_value;
        if (negative_slope != 0.0f) r -= negative_slope * (under > 0.0f ? under : 0.0f);
        y[i] = r;
    }
}

static void gk_act_item(void *ctx, long item, int thread)
{
    const struct gk_act_job *j = (const struct gk_act_job *)ctx;
    (void)thread;
    if (j->act == GK_SOFTMAX || j->act == GK_LOG_SOFTMAX)
        gk_softmax_row(j->x + item * j->row_len, j->y + item * j->row_len, j->row_len, j->act == GK_LOG_SOFTMAX);
    else
        gk_activation_span(j->act, j->x + item * GK_ACT_CHUNK, j->y + item * GK_ACT_CHUNK,
                           gk_minl(GK_ACT_CHUNK, j->n - item * GK_ACT_CHUNK));
}

void gk_activation(int act, const float *x, float *y, long rows, long row_len)
{
    struct gk_act_job j;
    const int rowwise = act == GK_SOFTMAX || act == GK_LOG_SOFTMAX;
    int threads;
    if (rows <= 0 || row_len <= 0) return;
    j = (struct gk_act_job){ .x = x, .y = y, .n = rows * row_len, .row_len = row_len, .act = act };
    if (act == GK_LINEAR) {
        if (y != x) memmove(y, x, (size_t)j.n * sizeof *y);
        return;
    }
    threads = gk_threads(16.0 * (double)j.n); /* ~16 multiply-adds' time per value */
    if (threads <= 1) {
        gk_activation_serial(act, x, y, rows, row_len);
        return;
    }
    gk_run(threads, rowwise ? rows : (j.n + GK_ACT_CHUNK - 1) / GK_ACT_CHUNK, gk_act_item, &j);
}

/* ---- embedding gather ---------------------------------------------------------------------- */

long gk_gather_i32(const float *table, long input_dim, long dim, const int32_t *idx, long n, float *y)
{
    long i;
    for (i = 0; i < n; ++i) {
        const long r = (long)idx[i];
        if (r < 0 || r >= input_dim) return i;
        if (dim > 0) memcpy(y + i * dim, table + r * dim, (size_t)dim * sizeof *y);
    }
    return -1;
}

long gk_gather_i64(const float *table, long input_dim, long dim, const int64_t *idx, long n, float *y)
{
    long i;
    for (i = 0; i < n; ++i) {
        const int64_t r = idx[i];
        if (r < 0 || r >= (int64_t)input_dim) return i;
        if (dim > 0) memcpy(y + i * dim, table + (long)r * dim, (size_t)dim * sizeof *y);
    }
    return -1;
}

/* ---- embedding lookups folded with the op reading them ---------------------------------------- */

static int64_t gk_index_at(const void *idx, int wide, long i)
{
    return wide ? ((const int64_t *)idx)[i] : (int64_t)((const int32_t *)idx)[i];
}

/* gk_lookup_sum's arguments, and its rows [item * GK_LOOKUP_ROWS, ...) as one unit of its loop
 * (indices already checked). */
enum { GK_LOOKUP_ROWS = 64 };
struct gk_lookup_job {
    const float *tables;
    const void *idx;
    float *y;
    long taps, input_dim, dim, steps_in, steps_out, stride, dilation, rows;
    int wide;
};

static void gk_lookup_item(void *ctx, long item, int thread)
{
    const struct gk_lookup_job *j = (const struct gk_lookup_job *)ctx;
    const long r1 = gk_minl(j->rows, (item + 1) * GK_LOOKUP_ROWS);
    long r, k, c;
    (void)thread;
    for (r = item * GK_LOOKUP_ROWS; r < r1; ++r) {
        const long b = r / j->steps_out, t = r % j->steps_out;
        const long at = b * j->steps_in + t * j->stride;
        float *out = j->y + r * j->dim;
        const float *row = j->tables + (long)gk_index_at(j->idx, j->wide, at) * j->dim;
        memcpy(out, row, (size_t)j->dim * sizeof *out);
        for (k = 1; k < j->taps; ++k) {
            row = j->tables + (k * j->input_dim + (long)gk_index_at(j->idx, j->wide, at + k * j->dilation)) * j->dim;
            for (c = 0; c < j->dim; ++c) out[c] += row[c];
        }
    }
}

long gk_lookup_sum(const float *tables, long taps, long input_dim, long dim, const void *idx, int wide,
                   long batch, long steps_in, long steps_out, long stride, long dilation, float *y)
{
    struct gk_lookup_job j;
    long i;
    for (i = 0; i < batch * steps_in; ++i) {
        const int64_t r = gk_index_at(idx, wide, i);
        if (r < 0 || r >= (int64_t)input_dim) return i;
    }
    j = (struct gk_lookup_job){ .tables = tables, .idx = idx, .y = y, .taps = taps, .input_dim = input_dim,
                                .dim = dim, .steps_in = steps_in, .steps_out = steps_out, .stride = stride,
                                .dilation = dilation, .rows = batch * steps_out, .wide = wide };
    if (j.rows <= 0 || dim <= 0) return -1;
    /* rows scattered over tables larger than the caches: the time is memory's (one core reads
     * them at ~8 GB/s, about 24 multiply-adds' time per float), which a second core doubles */
    gk_run(gk_threads(24.0 * (double)j.rows * (double)(taps * dim)), (j.rows + GK_LOOKUP_ROWS - 1) / GK_LOOKUP_ROWS,
           gk_lookup_item, &j);
    return -1;
}

/* ---- convolution ----------------------------------------------------------------------------- */

/* Rows [r0, r1) of the patch matrix (out0 * out1, k0 * k1 * C) of one sample, channels innermost,
 * into patches (r1 - r0 rows); zeros where the window leaves x. */
static void gk_im2col(const float *x, const long in[2], long channels, const long ks[2],
                      const long stride[2], const long dilation[2], const long pad[2],
                      const long out[2], long r0, long r1, float *patches)
{
    const long kcols = ks[0] * ks[1] * channels;
    long r;
    for (r = r0; r < r1; ++r) {
        const long o0 = r / out[1], o1 = r % out[1];
        float *dst = patches + (r - r0) * kcols;
        long a, b;
        for (a = 0; a < ks[0]; ++a) {
            const long i0 = o0 * stride[0] - pad[0] + a * dilation[0];
            const long base = o1 * stride[1] - pad[1]; /* input column under kernel column 0 */
            const float *xrow = x + gk_maxl(0, gk_minl(i0, in[0] - 1)) * in[1] * channels;
            if (i0 < 0 || i0 >= in[0]) {
                memset(dst, 0, (size_t)(ks[1] * channels) * sizeof *dst);
            } else if (dilation[1] == 1) { /* the window's row is one run of x: one copy */
                const long b0 = gk_minl(ks[1], gk_maxl(0, -base));
                const long b1 = gk_maxl(b0, gk_minl(ks[1], in[1] - base));
                if (b0 > 0) memset(dst, 0, (size_t)(b0 * channels) * sizeof *dst);
                if (b1 > b0)
                    memcpy(dst + b0 * channels, xrow + (base + b0) * channels,
                           (size_t)((b1 - b0) * channels) * sizeof *dst);
                if (b1 < ks[1]) memset(dst + b1 * channels, 0, (size_t)((ks[1] - b1) * channels) * sizeof *dst);
            } else {
                for (b = 0; b < ks[1]; ++b) {
                    const long i1 = base + b * dilation[1];
                    if (i1 < 0 || i1 >= in[1])
                        memset(dst + b * channels, 0, (size_t)channels * sizeof *dst);
                    else
                        memcpy(dst + b * channels, xrow + i1 * channels, (size_t)channels * sizeof *dst);
                }
            }
            dst += ks[1] * channels;
        }
    }
}

#ifndef GK_CONV_CHUNK
#define GK_CONV_CHUNK 131072L /* floats of patches built at a time (512 KiB: they stay in L2) */
#endif

#ifdef GK_INTRIN_512
/* Convolution without im2col, for the AVX-512 tiles: the patch matrix is read where it lies. At
 * stride 1, on the sample padded with zeros to hp x wp pixels of C floats (wp = out1 + d1 (k1 - 1);
 * x itself when nothing is padded), the window of output (o0, o1) starts at pixel q = o0 wp + o1,
 * and its tap (a, b) is pixel q + a d0 wp + b d1: patch row q is a fixed list of runs (one per
 * tap, C floats; merged where contiguous: k1 C floats per kernel row when d1 = 1), each at q C
 * floats plus a fixed offset, rows C floats apart. Rows q with o1 >= out1 are computed in 12-row
 * tiles and dropped. A rank-1 convolution (in1 = out1 = k1 = 1) without padding reads x with rows
 * stride0 C floats apart, at any stride. Other strides read patch rows stride1 C floats apart,
 * rows of 4 outputs at a time (gpr below: the rows between would all be dropped). Per element
 * this is im2col's product exactly (the same multiply-adds, zeros of the padding included, in the
 * same order): only the copies go. */
enum { GK_MAXRUN = 64 };
struct gk_conv_geom {
    long lda;                /* floats between consecutive patch rows */
    long wq, rows, out1;     /* patch rows per output row, rows of a sample (below), outputs kept */
    long gpr;                /* 0: rows are patch rows, all wq of each output row (those past out1
                              * computed and dropped); else rows come in groups of 4 outputs, gpr
                              * per output row (the last one ends at out1, overlapping the one
                              * before), so that a 12-row tile is 3 groups and computes no padding */
    long nrun;               /* runs of a patch row: */
    long run_off[GK_MAXRUN]; /* start, from the row's start (q lda) */
    long run_p0[GK_MAXRUN];  /* first patch column (runs partition [0, kcols) in order) */
};

/* The patch rows (q) of rows v .. v + 3 of a sample (v a multiple of 4), 1 lda apart, and the
 * outputs they make (out[r] < 0: none, or made by another row); returns the first q. */
static long gk_conv_rows4(const struct gk_conv_geom *g, long v, long out[4])
{
    long o0, first, start, r;
    if (!g->gpr) {
        for (r = 0; r < 4; ++r) {
            const long o1 = (v + r) % g->wq;
            out[r] = o1 < g->out1 ? (v + r) / g->wq * g->out1 + o1 : -1;
        }
        return v;
    }
    o0 = v / 4 / g->gpr;
    first = v / 4 % g->gpr * 4;          /* the group's first output, unshifted */
    start = gk_minl(first, g->out1 - 4); /* the last group ends at out1 */
    for (r = 0; r < 4; ++r) out[r] = start + r >= first ? o0 * g->out1 + start + r : -1;
    return o0 * g->wq + start;
}

/* The rows [q0, q1) and columns [j0, j1) (whole 32-column panels) of one sample: xs its phases
 * (or x), ys its output (out0 * out1, F); the kernel (kcols, F) is read in place. */
static void gk_conv_implicit_rows(const struct gk_conv_geom *g, const float *xs, const float *kernel,
                                  const float *bias, float *ys, long kcols, long F, long q0, long q1, long j0,
                                  long j1, int act)
{
    const float *sa[GK_MAXRUN];
    long sk[GK_MAXRUN];
    float *crow[12];
    long pc, jr, qp, o0, r0 = 0;
    for (pc = 0; pc < kcols; pc += GK_KC) {
        const long kc = gk_minl(GK_KC, kcols - pc);
        const float *bias_k = pc + kc >= kcols ? bias : NULL;
        long r1;
        while (r0 + 1 < g->nrun && g->run_p0[r0 + 1] <= pc) ++r0; /* the runs this block meets */
        for (r1 = r0; r1 + 1 < g->nrun && g->run_p0[r1 + 1] < pc + kc; ++r1) continue;
        for (jr = j0; jr < j1; jr += 32) {
            const long nr = gk_minl(32, j1 - jr);
            const float *bp = kernel + pc * F + jr; /* read in place: packing cost more than it saved */
            for (qp = q0; qp < q1; qp += 12) {
                const long qa = gk_minl(qp, q1 - 12); /* a short last tile takes rows before it */
                long i, r, base[3], out[4];
                int nseg = 0;
                for (i = 0; i < 12; i += 4) {
                    base[i / 4] = gk_conv_rows4(g, qa + i, out);
                    for (r = 0; r < 4; ++r) crow[i + r] = qa + i + r < qp || out[r] < 0 ? NULL : ys + out[r] * F + jr;
                }
                for (r = r0; r <= r1; ++r) {
                    const long end = r + 1 < g->nrun ? g->run_p0[r + 1] : kcols;
                    const long lo = gk_maxl(pc, g->run_p0[r]), hi = gk_minl(pc + kc, end);
                    sa[nseg] = xs + base[0] * g->lda + g->run_off[r] + (lo - g->run_p0[r]);
                    sk[nseg++] = hi - lo;
                }
                gk_512_seg(nseg, sa, sk, g->lda, (base[1] - base[0]) * g->lda, (base[2] - base[0]) * g->lda, bp,
                           F, crow, nr, pc == 0, bias_k ? bias_k + jr : NULL);
            }
        }
    }
    if (act == GK_LINEAR) return;
    if (g->gpr) { /* the outputs rows [q0, q1) made: whole groups, output row by output row */
        for (o0 = q0 / 4 / g->gpr; o0 * g->gpr * 4 < q1; ++o0) {
            const long a = gk_maxl(q0 / 4, o0 * g->gpr) - o0 * g->gpr;
            const long b = gk_minl(q1 / 4, (o0 + 1) * g->gpr) - o0 * g->gpr;
            if (a < b)
                gk_act_block(act, ys + (o0 * g->out1 + 4 * a) * F + j0, F, gk_minl(g->out1, 4 * b) - 4 * a, j1 - j0);
        }
        return;
    }
    for (o0 = q0 / g->wq; o0 * g->wq < q1; ++o0) { /* the rows kept, output row by output row */
        const long a = gk_maxl(q0, o0 * g->wq), b = gk_minl(q1, o0 * g->wq + g->out1);
        if (a < b) gk_act_block(act, ys + (o0 * g->out1 + a - o0 * g->wq) * F + j0, F, b - a, j1 - j0);
    }
}

/* Rows [r0, r1) of x (in0, in1, C) padded into dst (hp, wp, C): pad[0] rows and pad[1] columns
 * of zeros before it (and zeros after, where the window goes past x). */
static void gk_conv_pad_rows(const float *x, const long in[2], long C, const long pad[2], long wp, long r0, long r1,
                             float *dst)
{
    const long lo = gk_minl(wp, gk_maxl(0, pad[1])), hi = gk_minl(wp, gk_maxl(lo, pad[1] + in[1]));
    long r;
    for (r = r0; r < r1; ++r) {
        const long i = r - pad[0];
        float *d = dst + r * wp * C;
        if (i < 0 || i >= in[0]) {
            memset(d, 0, (size_t)(wp * C) * sizeof *d);
            continue;
        }
        if (lo > 0) memset(d, 0, (size_t)(lo * C) * sizeof *d);
        if (hi > lo) memcpy(d + lo * C, x + (i * in[1] + lo - pad[1]) * C, (size_t)((hi - lo) * C) * sizeof *d);
        if (hi < wp) memset(d + hi * C, 0, (size_t)((wp - hi) * C) * sizeof *d);
    }
}

/* One unit of the padded copies of a group of samples: GK_PAD_ROWS rows of one sample. */
enum { GK_PAD_ROWS = 8 };
struct gk_pad_job {
    const float *x;
    float *dst;
    const long *in, *pad;
    long C, hp, wp, blocks;
};

static void gk_pad_item(void *ctx, long item, int thread)
{
    const struct gk_pad_job *j = (const struct gk_pad_job *)ctx;
    const long s = item / j->blocks, r0 = item % j->blocks * GK_PAD_ROWS;
    (void)thread;
    gk_conv_pad_rows(j->x + s * j->in[0] * j->in[1] * j->C, j->in, j->C, j->pad, j->wp, r0,
                     gk_minl(j->hp, r0 + GK_PAD_ROWS), j->dst + s * j->hp * j->wp * j->C);
}

/* One unit of gk_conv_implicit's loop over a group of samples: a chunk of one sample's patch rows
 * times a group of 32-column panels of the kernel. */
struct gk_implicit_job {
    const struct gk_conv_geom *g;
    const float *x, *kernel, *bias; /* x: the group's first sample (or its padded copy) */
    float *y;                       /* the group's first sample's output */
    long xstride, ysize, kcols, F, chunk, chunks, groups;
    int act;
};

static void gk_implicit_item(void *ctx, long item, int thread)
{
    const struct gk_implicit_job *j = (const struct gk_implicit_job *)ctx;
    const long s = item / (j->chunks * j->groups), q0 = item / j->groups % j->chunks * j->chunk;
    const long cg = item % j->groups, panels = (j->F + 31) / 32;
    (void)thread;
    gk_conv_implicit_rows(j->g, j->x + s * j->xstride, j->kernel, j->bias, j->y + s * j->ysize, j->kcols, j->F,
                          q0, gk_minl(j->g->rows, q0 + j->chunk), cg * panels / j->groups * 32,
                          gk_minl(j->F, (cg + 1) * panels / j->groups * 32), j->act);
}

/* gk_conv2d_act by gk_conv_implicit_rows where it applies (returns 1), else returns 0. */
static int gk_conv_implicit(const float *x, const float *kernel, const float *bias, float *y, long batch,
                            const long in[2], long C, const long ks[2], long F, const long stride[2],
                            const long dil[2], const long pad[2], const long out[2], float *scratch, int act,
                            int threads)
{
    const long kcols = ks[0] * ks[1] * C, xsize = in[0] * in[1] * C, ysize = out[0] * out[1] * F;
    /* the padded sample the windows span */
    const long hp = (out[0] - 1) * stride[0] + (ks[0] - 1) * dil[0] + 1;
    const long wp = (out[1] - 1) * stride[1] + (ks[1] - 1) * dil[1] + 1;
    const int rank1 = in[1] == 1 && out[1] == 1 && ks[1] == 1;
    struct gk_conv_geom g;
    struct gk_implicit_job j;
    long wrow, ssize, group, s0, chunk, groups, cap, a, b, min_run = kcols;
    int copy;
    if (ks[0] * ks[1] > GK_MAXRUN) return 0;
    /* The sample read (x, or its padded copy in scratch) has rows of wrow pixels. Outputs next to
     * each other in a row read windows stride1 pixels apart: patch rows lda = stride1 C floats
     * apart, an output row stride0 wrow / stride1 of them further on (wq). */
    if (rank1 && pad[0] == 0 && hp <= in[0]) { /* x itself, rows stride0 C apart */
        copy = 0;
        wrow = 1;
        g.wq = 1;
        g.lda = stride[0] * C;
    } else {
        copy = rank1 || pad[0] != 0 || pad[1] != 0 || hp > in[0] || wp > in[1] || stride[0] * in[1] % stride[1];
        /* a copy's rows: a multiple of stride1 pixels, so that wq is whole */
        wrow = copy ? (wp + stride[1] - 1) / stride[1] * stride[1] : in[1];
        g.wq = stride[0] * wrow / stride[1];
        g.lda = stride[1] * C;
    }
    g.out1 = out[1];
    g.gpr = g.wq > out[1] && out[1] >= 4 ? (out[1] + 3) / 4 : 0;
    g.rows = g.gpr ? out[0] * g.gpr * 4 : (out[0] - 1) * g.wq + out[1];
    /* a strided convolution without groups of 4 would compute and drop most of its rows */
    if (!g.gpr && g.wq > 1 && (stride[0] > 1 || stride[1] > 1)) return 0;
    g.nrun = 0;
    for (a = 0; a < ks[0]; ++a)
        for (b = 0; b < ks[1]; ++b) {
            const long off = ((a * dil[0]) * wrow + b * dil[1]) * C; /* tap (a, b) from the window's start */
            const long p0 = (a * ks[1] + b) * C;
            if (g.nrun > 0 && g.run_off[g.nrun - 1] + (p0 - g.run_p0[g.nrun - 1]) == off)
                continue; /* contiguous with the run before: it grows */
            g.run_off[g.nrun] = off;
            g.run_p0[g.nrun++] = p0;
        }
    for (a = 0; a < g.nrun; ++a)
        min_run = gk_minl(min_run, (a + 1 < g.nrun ? g.run_p0[a + 1] : kcols) - g.run_p0[a]);
    /* short runs (few channels) and tiny outputs: im2col is as good */
    if (min_run < 16 || g.rows < 12) return 0;
    /* scratch (out0 out1 kcols floats): the samples' padded copies */
    ssize = hp * wrow * C;
    cap = out[0] * out[1] * kcols;
    group = copy ? gk_minl(batch, cap / gk_maxl(1, ssize)) : batch;
    if (group < 1) return 0;
    /* units of work: chunks of patch rows (16 tiles; fewer, down to 2, so that each thread gets
     * about 4 units), and where that leaves too few, groups of 32-column panels too */
    chunk = 192;
    groups = 1;
    if (threads > 1) {
        const long want = 4L * threads;
        long units;
        chunk = gk_minl(192, gk_maxl(24, ((group * g.rows + want - 1) / want + 11) / 12 * 12));
        units = group * ((g.rows + chunk - 1) / chunk);
        if (units < want && act != GK_SOFTMAX && act != GK_LOG_SOFTMAX) /* too few rows: split columns too */
            groups = gk_minl((F + 31) / 32, (want + units - 1) / units);
    }
    j = (struct gk_implicit_job){ .g = &g, .kernel = kernel, .bias = bias, .xstride = copy ? ssize : xsize,
                                  .ysize = ysize, .kcols = kcols, .F = F, .chunk = chunk,
                                  .chunks = (g.rows + chunk - 1) / chunk, .groups = groups, .act = act };
    for (s0 = 0; s0 < batch; s0 += group) {
        const long gs = gk_minl(group, batch - s0);
        const float *xg = copy ? scratch : x + s0 * xsize;
        if (copy) {
            struct gk_pad_job pj = { .x = x + s0 * xsize, .dst = scratch, .in = in, .pad = pad, .C = C, .hp = hp,
                                     .wp = wrow, .blocks = (hp + GK_PAD_ROWS - 1) / GK_PAD_ROWS };
            /* a float copied takes ~20 multiply-adds' time (memory's speed) */
            gk_run(gk_threads(20.0 * (double)(gs * ssize)), gs * pj.blocks, gk_pad_item, &pj);
        }
        j.x = xg;
        j.y = y + s0 * ysize;
        gk_run(threads, gs * j.chunks * j.groups, gk_implicit_item, &j);
    }
    return 1;
}
#endif

void gk_conv2d(const float *x, const float *kernel, const float *bias, float *y, long batch,
               const long in[2], long channels, const long kernel_size[2], long filters,
               const long stride[2], const long dilation[2], const long pad_before[2], const long out[2],
               float *scratch)
{
    gk_conv2d_act(x, kernel, bias, y, batch, in, channels, kernel_size, filters, stride, dilation, pad_before,
                  out, scratch, GK_LINEAR);
}

/* One unit of gk_conv2d_act's im2col loop: a chunk of one sample's output rows, its patches built
 * in the thread's part of scratch, their product and its activation. */
struct gk_im2col_job {
    const float *x, *kernel, *bias;
    float *y, *scratch;
    const long *in, *ks, *stride, *dilation, *pad, *out;
    long channels, filters, kcols, rows, chunk, chunks;
    gk_gemm_part_fn part;
    int act;
};

static void gk_im2col_item(void *ctx, long item, int thread)
{
    const struct gk_im2col_job *j = (const struct gk_im2col_job *)ctx;
    const long s = item / j->chunks, r0 = item % j->chunks * j->chunk, r1 = gk_minl(j->rows, r0 + j->chunk);
    float *ys = j->y + (s * j->rows + r0) * j->filters, *patches = j->scratch + thread * j->chunk * j->kcols;
    gk_im2col(j->x + s * j->in[0] * j->in[1] * j->channels, j->in, j->channels, j->ks, j->stride, j->dilation,
              j->pad, j->out, r0, r1, patches);
    j->part(patches, j->kcols, j->kernel, j->filters, j->bias, ys, j->filters, 0, r1 - r0, 0, j->filters, j->kcols);
    gk_act_block(j->act, ys, j->filters, r1 - r0, j->filters);
}

/* A pointwise convolution is one product over the whole batch. Otherwise the output rows are cut
 * into chunks (each sample's rows separately) small enough for their patches to stay in L2 while
 * they are multiplied: per chunk, im2col into the caller's (thread's) part of scratch, the product
 * and the activation, so that one parallel region does the whole layer, chunks taken dynamically;
 * a thread's scratch is at most out0 * out1 / threads rows of patches. */
void gk_conv2d_act(const float *x, const float *kernel, const float *bias, float *y, long batch,
                   const long in[2], long channels, const long kernel_size[2], long filters,
                   const long stride[2], const long dilation[2], const long pad_before[2], const long out[2],
                   float *scratch, int act)
{
    const long rows = out[0] * out[1];
    const long kcols = kernel_size[0] * kernel_size[1] * channels;
    struct gk_im2col_job j;
    long mr, nr, chunk, chunks;
    gk_gemm_part_fn part;
    int threads;
    if (batch <= 0 || rows <= 0 || filters <= 0) return;
    if (kernel_size[0] == 1 && kernel_size[1] == 1 && stride[0] == 1 && stride[1] == 1 &&
        pad_before[0] == 0 && pad_before[1] == 0 && out[0] == in[0] && out[1] == in[1]) {
        /* pointwise: x already is the patch matrix, for the whole batch at once */
        gk_gemm_act(x, channels, kernel, filters, bias, y, filters, batch * rows, channels, filters, act);
        return;
    }
    if (kcols <= 0) {
        gk_gemm_act(x, 0, kernel, filters, bias, y, filters, batch * rows, 0, filters, act);
        return;
    }
    part = gk_gemm_impl(&mr, &nr);
    threads = gk_threads((double)batch * (double)rows * (double)kcols * (double)filters);
#ifdef GK_INTRIN_512
    if (mr == 12 && nr == 32 &&
        gk_conv_implicit(x, kernel, bias, y, batch, in, channels, kernel_size, filters, stride, dilation,
                         pad_before, out, scratch, act, threads))
        return;
#else
    (void)nr;
#endif
    chunk = gk_maxl(mr, GK_CONV_CHUNK / kcols / mr * mr);
    if (threads > 1) {
        /* about 3 chunks per thread when the batch is small, whole MR panels, at least 2 each; each
         * thread builds its patches in its own 1 / threads of scratch */
        const long per_sample = (3L * threads + batch - 1) / batch;
        chunk = gk_minl(chunk, gk_maxl(2 * mr, ((rows + per_sample - 1) / per_sample + mr - 1) / mr * mr));
        chunk = gk_minl(chunk, rows / threads);
        if (chunk < 1) threads = 1;
    }
    if (threads <= 1) chunk = gk_minl(gk_maxl(chunk, 1), rows);
    chunks = (rows + chunk - 1) / chunk;
    j = (struct gk_im2col_job){ .x = x, .kernel = kernel, .bias = bias, .y = y, .scratch = scratch, .in = in,
                                .ks = kernel_size, .stride = stride, .dilation = dilation, .pad = pad_before,
                                .out = out, .channels = channels, .filters = filters, .kcols = kcols, .rows = rows,
                                .chunk = chunk, .chunks = chunks, .part = part, .act = act };
    gk_run(threads, batch * chunks, gk_im2col_item, &j);
}

/* ---- Winograd F(2x2, 3x3) -------------------------------------------------------------------
 * Per 4x4 input tile d (2x2 outputs) and channel: V = B^T d B; per channel and filter: U = G g G^T;
 * per tile and filter: M = sum over channels of U . V (16 GEMMs, one per position of the 4x4
 * tile), Y = A^T M A, with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5;
 * .5 -.5 .5; 0 0 1], A^T = [1 1 1 0; 0 1 -1 -1]. Tiles go in chunks of GK_WG_TILES (all samples'
 * tiles in a row), V and M in scratch as 16 planes of (tiles, C) and (tiles, F). */
#ifndef GK_WG_TILES
#define GK_WG_TILES 256L
#endif
/* The 16 planes of v and m lie this many floats further apart than their size: planes a multiple of
 * 4 KiB apart share L1 sets, where the transforms, which touch all 16 at once, conflicted (the skew
 * took 32x32 at 64 -> 64 channels from 1.10x to 1.16x the direct sum's speed). */
#define GK_WG_SKEW 16L
/* Below these, the transforms cost about what the products save, and the direct sum runs instead
 * (single calls, 2 threads, against the direct sum: 32x32 maps at 64 -> 64 channels 1.23x faster,
 * 128 -> 128 1.45x, 16 samples of 32x32 at 64 -> 64 1.49x; but 16x16 at 64 -> 64 0.91x and at
 * 128 -> 128 1.06x, 8x8 at 128 -> 128 0.53x, 32x32 at 32 -> 32 0.96x): at least
 * GK_WG_MIN_CHANNELS channels and filters, and tiles times the smaller of the two at least
 * GK_WG_MIN_WORK. */
#ifndef GK_WG_MIN_CHANNELS
#define GK_WG_MIN_CHANNELS 64L
#endif
#ifndef GK_WG_MIN_WORK
#define GK_WG_MIN_WORK 16384L
#endif

long gk_conv2d_winograd_scratch(long channels, long filters)
{
    return 16 * (GK_WG_TILES * (channels + filters) + 2 * GK_WG_SKEW) + 16 * channels * filters + channels;
}

/* The transforms work on GK_WG_L lanes (channels or filters) at a time, in local arrays the
 * compiler vectorizes (through pointers into x, u, v and m it could not: they might alias). */
enum { GK_WG_L = 16 };

/* n <= GK_WG_L floats; a whole lane group is a constant-size copy, which compiles to vector moves
 * (a call to memcpy per group cost more than the arithmetic) */
static void gk_wg_copy(float *dst, const float *src, int n)
{
    if (n == GK_WG_L)
        memcpy(dst, src, GK_WG_L * sizeof *dst);
    else
        memcpy(dst, src, (size_t)n * sizeof *dst);
}

/* u[16][C][F] from kernel (3, 3, C, F), channels [c0, c1). */
static void gk_wg_kernel(const float *kernel, long C, long F, long c0, long c1, float *u)
{
    long c, f0;
    int i, j, l;
    for (c = c0; c < c1; ++c)
        for (f0 = 0; f0 < F; f0 += GK_WG_L) {
            const int n = (int)gk_minl(GK_WG_L, F - f0);
            float g[3][3][GK_WG_L], t[4][3][GK_WG_L], o[4][GK_WG_L];
            for (i = 0; i < 3; ++i)
                for (j = 0; j < 3; ++j) gk_wg_copy(g[i][j], kernel + ((i * 3 + j) * C + c) * F + f0, n);
            for (j = 0; j < 3; ++j) /* t = G g */
                for (l = 0; l < GK_WG_L; ++l) {
                    t[0][j][l] = g[0][j][l];
                    t[1][j][l] = 0.5f * (g[0][j][l] + g[1][j][l] + g[2][j][l]);
                    t[2][j][l] = 0.5f * (g[0][j][l] - g[1][j][l] + g[2][j][l]);
                    t[3][j][l] = g[2][j][l];
                }
            for (i = 0; i < 4; ++i) { /* u = t G^T */
                for (l = 0; l < GK_WG_L; ++l) {
                    o[0][l] = t[i][0][l];
                    o[1][l] = 0.5f * (t[i][0][l] + t[i][1][l] + t[i][2][l]);
                    o[2][l] = 0.5f * (t[i][0][l] - t[i][1][l] + t[i][2][l]);
                    o[3][l] = t[i][2][l];
                }
                for (j = 0; j < 4; ++j) gk_wg_copy(u + ((i * 4 + j) * C + c) * F + f0, o[j], n);
            }
        }
}

/* The 4x4 input pixels of tile t (global tile number, tps tiles per sample, tx per output row):
 * d[i][j] points at pixel (i, j)'s C channels, or at zeros where the tile leaves x. */
static void gk_wg_tile_in(const float *x, const long in[2], long C, const long pad[2], long tps, long tx,
                          const float *zeros, long t, const float *d[4][4])
{
    const long s = t / tps, r = t % tps, y0 = 2 * (r / tx) - pad[0], x0 = 2 * (r % tx) - pad[1];
    int i, j;
    for (i = 0; i < 4; ++i)
        for (j = 0; j < 4; ++j) {
            const long yy = y0 + i, xx = x0 + j;
            d[i][j] = yy >= 0 && yy < in[0] && xx >= 0 && xx < in[1] ? x + ((s * in[0] + yy) * in[1] + xx) * C : zeros;
        }
}

/* The 2x2 outputs of tile t: yr[a][b] points at output (a, b)'s F filters, or is NULL past out. */
static void gk_wg_tile_out(float *y, long F, const long out[2], long tps, long tx, long t, float *yr[2][2])
{
    const long s = t / tps, r = t % tps, oy = 2 * (r / tx), ox = 2 * (r % tx);
    int a, b;
    for (a = 0; a < 2; ++a)
        for (b = 0; b < 2; ++b)
            yr[a][b] = oy + a < out[0] && ox + b < out[1] ? y + ((s * out[0] + oy + a) * out[1] + ox + b) * F : NULL;
}

/* v[16][ts][C] of the chunk's tiles [t0, t1) (global tile numbers, tiles per sample tps, tiles per
 * output row tx): the input transform, zeros where the tile leaves x. */
static void gk_wg_input(const float *x, const long in[2], long C, const long pad[2], long tps, long tx,
                        const float *zeros, long t0, long t1, long chunk0, long plane, float *v)
{
    long t, c0;
    int i, j, l;
    for (t = t0; t < t1; ++t) {
        const float *d[4][4];
        gk_wg_tile_in(x, in, C, pad, tps, tx, zeros, t, d);
        for (c0 = 0; c0 < C; c0 += GK_WG_L) {
            const int n = (int)gk_minl(GK_WG_L, C - c0);
            float dv[4][4][GK_WG_L], w[4][4][GK_WG_L], o[4][GK_WG_L];
            for (i = 0; i < 4; ++i)
                for (j = 0; j < 4; ++j) gk_wg_copy(dv[i][j], d[i][j] + c0, n);
            for (j = 0; j < 4; ++j) /* B^T d, column by column */
                for (l = 0; l < GK_WG_L; ++l) {
                    w[0][j][l] = dv[0][j][l] - dv[2][j][l];
                    w[1][j][l] = dv[1][j][l] + dv[2][j][l];
                    w[2][j][l] = dv[2][j][l] - dv[1][j][l];
                    w[3][j][l] = dv[1][j][l] - dv[3][j][l];
                }
            for (i = 0; i < 4; ++i) { /* (B^T d) B, row by row */
                for (l = 0; l < GK_WG_L; ++l) {
                    o[0][l] = w[i][0][l] - w[i][2][l];
                    o[1][l] = w[i][1][l] + w[i][2][l];
                    o[2][l] = w[i][2][l] - w[i][1][l];
                    o[3][l] = w[i][1][l] - w[i][3][l];
                }
                for (j = 0; j < 4; ++j)
                    gk_wg_copy(v + (i * 4 + j) * plane + (t - chunk0) * C + c0, o[j], n);
            }
        }
    }
}

/* y from m[16][ts][F] for the chunk's tiles [t0, t1): Y = A^T M A + bias, outputs past out dropped. */
static void gk_wg_output(const float *m, const float *bias, float *y, long F, const long out[2], long tps, long tx,
                         long t0, long t1, long chunk0, long plane)
{
    long t, f0;
    int i, l, a, b;
    for (t = t0; t < t1; ++t) {
        float *yr[2][2];
        gk_wg_tile_out(y, F, out, tps, tx, t, yr);
        for (f0 = 0; f0 < F; f0 += GK_WG_L) {
            const int n = (int)gk_minl(GK_WG_L, F - f0);
            float mv[16][GK_WG_L], w[2][4][GK_WG_L], o[2][2][GK_WG_L], bv[GK_WG_L];
            for (i = 0; i < 16; ++i) gk_wg_copy(mv[i], m + i * plane + (t - chunk0) * F + f0, n);
            for (l = 0; l < GK_WG_L; ++l) bv[l] = bias && l < n ? bias[f0 + l] : 0.0f;
            for (i = 0; i < 4; ++i) /* A^T M, column by column */
                for (l = 0; l < GK_WG_L; ++l) {
                    w[0][i][l] = mv[i][l] + mv[4 + i][l] + mv[8 + i][l];
                    w[1][i][l] = mv[4 + i][l] - mv[8 + i][l] - mv[12 + i][l];
                }
            for (a = 0; a < 2; ++a) /* (A^T M) A */
                for (l = 0; l < GK_WG_L; ++l) {
                    o[a][0][l] = w[a][0][l] + w[a][1][l] + w[a][2][l] + bv[l];
                    o[a][1][l] = w[a][1][l] - w[a][2][l] - w[a][3][l] + bv[l];
                }
            for (a = 0; a < 2; ++a)
                for (b = 0; b < 2; ++b)
                    if (yr[a][b]) gk_wg_copy(yr[a][b] + f0, o[a][b], n);
        }
    }
}

#ifdef GK_INTRIN_512
/* gk_wg_input and gk_wg_output on AVX-512 for channel and filter counts that are multiples of 16:
 * the same arithmetic in the same order (so the same bits), held in registers, where the generic
 * code's local arrays went through the stack (the input transform took a quarter of the time). */
static GK_512_ATTR void gk_wg_input_512(const float *x, const long in[2], long C, const long pad[2], long tps,
                                        long tx, const float *zeros, long t0, long t1, long chunk0, long plane,
                                        float *v)
{
    long t, c0;
    int i, j;
    for (t = t0; t < t1; ++t) {
        const float *d[4][4];
        gk_wg_tile_in(x, in, C, pad, tps, tx, zeros, t, d);
        for (c0 = 0; c0 < C; c0 += 16) {
            __m512 w[4][4];
            for (j = 0; j < 4; ++j) {
                const __m512 d0 = _mm512_loadu_ps(d[0][j] + c0), d1 = _mm512_loadu_ps(d[1][j] + c0);
                const __m512 d2 = _mm512_loadu_ps(d[2][j] + c0), d3 = _mm512_loadu_ps(d[3][j] + c0);
                w[0][j] = _mm512_sub_ps(d0, d2);
                w[1][j] = _mm512_add_ps(d1, d2);
                w[2][j] = _mm512_sub_ps(d2, d1);
                w[3][j] = _mm512_sub_ps(d1, d3);
            }
            for (i = 0; i < 4; ++i) {
                float *vi = v + (i * 4) * plane + (t - chunk0) * C + c0;
                _mm512_storeu_ps(vi, _mm512_sub_ps(w[i][0], w[i][2]));
                _mm512_storeu_ps(vi + plane, _mm512_add_ps(w[i][1], w[i][2]));
                _mm512_storeu_ps(vi + 2 * plane, _mm512_sub_ps(w[i][2], w[i][1]));
                _mm512_storeu_ps(vi + 3 * plane, _mm512_sub_ps(w[i][1], w[i][3]));
            }
        }
    }
}

static GK_512_ATTR void gk_wg_output_512(const float *m, const float *bias, float *y, long F, const long out[2],
                                         long tps, long tx, long t0, long t1, long chunk0, long plane)
{
    long t, f0;
    int i, a;
    for (t = t0; t < t1; ++t) {
        float *yr[2][2];
        gk_wg_tile_out(y, F, out, tps, tx, t, yr);
        for (f0 = 0; f0 < F; f0 += 16) {
            const float *mt = m + (t - chunk0) * F + f0;
            const __m512 bv = bias ? _mm512_loadu_ps(bias + f0) : _mm512_setzero_ps();
            __m512 w[2][4];
            for (i = 0; i < 4; ++i) {
                const __m512 m0 = _mm512_loadu_ps(mt + i * plane), m1 = _mm512_loadu_ps(mt + (4 + i) * plane);
                const __m512 m2 = _mm512_loadu_ps(mt + (8 + i) * plane), m3 = _mm512_loadu_ps(mt + (12 + i) * plane);
                w[0][i] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                w[1][i] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            for (a = 0; a < 2; ++a) {
                if (yr[a][0])
                    _mm512_storeu_ps(yr[a][0] + f0, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(w[a][0], w[a][1]),
                                                                                w[a][2]), bv));
                if (yr[a][1])
                    _mm512_storeu_ps(yr[a][1] + f0, _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(w[a][1], w[a][2]),
                                                                                w[a][3]), bv));
            }
        }
    }
}
#endif

/* gk_conv2d_winograd_act's state. The tiles go in chunks of ts through v and m; share p of every
 * chunk is its tiles [p R, (p + 1) R) (R = ts / shares, rounded up), which use only those rows of
 * v and m, whatever the chunk's size: so shares of different chunks never share rows, and a
 * share goes through all the chunks, all three steps, with no barrier (with sleeping threads,
 * each barrier costs a wake-up, which took the gain away at batch 1). */
struct gk_wg_job {
    const float *x, *kernel, *bias, *zeros;
    float *y, *v, *m, *u;
    const long *in, *out, *pad;
    long C, F, tps, tx, total, ts, vp, mp, u_items, per_share;
    gk_gemm_part_fn part;
    int wide, act;
};

/* The activation on the outputs of tiles [t0, t1), just written and still in cache. */
static void gk_wg_tiles_act(const struct gk_wg_job *j, long t0, long t1)
{
    long t;
    int a, b;
    for (t = t0; t < t1; ++t) {
        float *yr[2][2];
        gk_wg_tile_out(j->y, j->F, j->out, j->tps, j->tx, t, yr);
        for (a = 0; a < 2; ++a)
            for (b = 0; b < 2; ++b)
                if (yr[a][b]) gk_act_block(j->act, yr[a][b], j->F, 1, j->F);
    }
}

/* Channels [C item / u_items, C (item + 1) / u_items) of U. */
static void gk_wg_u_item(void *ctx, long item, int thread)
{
    const struct gk_wg_job *j = (const struct gk_wg_job *)ctx;
    (void)thread;
    gk_wg_kernel(j->kernel, j->C, j->F, j->C * item / j->u_items, j->C * (item + 1) / j->u_items, j->u);
}

/* Share `item` of every chunk: input transform, the 16 products, output transform. */
static void gk_wg_share_item(void *ctx, long item, int thread)
{
    const struct gk_wg_job *j = (const struct gk_wg_job *)ctx;
    long chunk0;
    int q;
    (void)thread;
    for (chunk0 = 0; chunk0 < j->total; chunk0 += j->ts) {
        const long n = gk_minl(j->ts, j->total - chunk0);
        const long lo = gk_minl(n, item * j->per_share), hi = gk_minl(n, lo + j->per_share);
        if (lo >= hi) break; /* the last chunk is the only short one */
#ifdef GK_INTRIN_512
        if (j->wide)
            gk_wg_input_512(j->x, j->in, j->C, j->pad, j->tps, j->tx, j->zeros, chunk0 + lo, chunk0 + hi, chunk0,
                            j->vp, j->v);
        else
#endif
            gk_wg_input(j->x, j->in, j->C, j->pad, j->tps, j->tx, j->zeros, chunk0 + lo, chunk0 + hi, chunk0, j->vp,
                        j->v);
        for (q = 0; q < 16; ++q)
            j->part(j->v + q * j->vp, j->C, j->u + q * j->C * j->F, j->F, NULL, j->m + q * j->mp, j->F, lo, hi, 0,
                    j->F, j->C);
#ifdef GK_INTRIN_512
        if (j->wide)
            gk_wg_output_512(j->m, j->bias, j->y, j->F, j->out, j->tps, j->tx, chunk0 + lo, chunk0 + hi, chunk0,
                             j->mp);
        else
#endif
            gk_wg_output(j->m, j->bias, j->y, j->F, j->out, j->tps, j->tx, chunk0 + lo, chunk0 + hi, chunk0, j->mp);
        gk_wg_tiles_act(j, chunk0 + lo, chunk0 + hi);
    }
}

void gk_conv2d_winograd_act(const float *x, const float *kernel, const float *bias, float *y, long batch,
                            const long in[2], long channels, long filters, const long pad_before[2],
                            const long out[2], float *scratch, int act)
{
    struct gk_wg_job j;
    const long C = channels, F = filters, tx = (out[1] + 1) / 2, tps = ((out[0] + 1) / 2) * tx;
    const long total = batch * tps, ts = gk_minl(GK_WG_TILES, total);
    long mr, nr, shares;
    gk_gemm_part_fn part;
    int threads;
    if (total <= 0 || F <= 0) return;
    if (gk_minl(C, F) < GK_WG_MIN_CHANNELS || total * gk_minl(C, F) < GK_WG_MIN_WORK) {
        const long ks[2] = { 3, 3 }, ones[2] = { 1, 1 };
        gk_conv2d_act(x, kernel, bias, y, batch, in, C, ks, F, ones, ones, pad_before, out, scratch, act);
        return;
    }
    threads = gk_threads(16.0 * (double)total * (double)C * (double)F); /* after the fallback, which counts its own */
    part = gk_gemm_impl(&mr, &nr);
    /* a share a thread, at least two 12-row panels each: more, smaller shares measured slower
     * (each share's 16 products pack all of U again: 4 shares a thread took residual's 3x3
     * layers 1.15x as long at batch 1) */
    shares = gk_maxl(1, gk_minl(threads, ts / 24));
    j = (struct gk_wg_job){ .x = x, .kernel = kernel, .bias = bias, .y = y, .in = in, .out = out, .pad = pad_before,
                            .C = C, .F = F, .tps = tps, .tx = tx, .total = total, .ts = ts,
                            .vp = ts * C + GK_WG_SKEW, .mp = ts * F + GK_WG_SKEW, /* the planes' strides */
                            .u_items = gk_minl(4L * threads, C), .per_share = (ts + shares - 1) / shares,
                            .part = part, .act = act,
                            .wide = mr == 12 && nr == 32 && C % 16 == 0 && F % 16 == 0 }; /* the AVX-512 GEMM */
    j.v = scratch;
    j.m = j.v + 16 * j.vp;
    j.u = j.m + 16 * j.mp;
    memset(j.u + 16 * C * F, 0, (size_t)C * sizeof *j.u); /* the zeros that tiles past x's edges read */
    j.zeros = j.u + 16 * C * F;
    gk_run(threads, j.u_items, gk_wg_u_item, &j);
    gk_run(threads, (ts + j.per_share - 1) / j.per_share, gk_wg_share_item, &j);
}

/* ---- pooling ------------------------------------------------------------------------------- */

/* Output rows [r0, r1) (over batch * out0 * out1) of gk_pool2d. */
static void gk_pool_rows(int is_max, const float *x, float *y, const long in[2], long channels,
                         const long pool[2], const long stride[2], const long pad_before[2], const long out[2],
                         long r0, long r1)
{
    long r;
    for (r = r0; r < r1; ++r) {
        const long s = r / (out[0] * out[1]), o = r % (out[0] * out[1]);
        const long o0 = o / out[1], o1 = o % out[1];
        const long a0 = gk_maxl(0, o0 * stride[0] - pad_before[0]);
        const long a1 = gk_minl(in[0], o0 * stride[0] - pad_before[0] + pool[0]);
        const long b0 = gk_maxl(0, o1 * stride[1] - pad_before[1]);
        const long b1 = gk_minl(in[1], o1 * stride[1] - pad_before[1] + pool[1]);
        const float *xs = x + s * in[0] * in[1] * channels;
        float *yr = y + r * channels;
        long i0, i1, c;
        for (c = 0; c < channels; ++c) yr[c] = is_max ? -HUGE_VALF : 0.0f;
        for (i0 = a0; i0 < a1; ++i0)
            for (i1 = b0; i1 < b1; ++i1) {
                const float *xp = xs + (i0 * in[1] + i1) * channels;
                if (is_max)
                    for (c = 0; c < channels; ++c) yr[c] = xp[c] > yr[c] ? xp[c] : yr[c];
                else
                    for (c = 0; c < channels; ++c) yr[c] += xp[c];
            }
        if (!is_max) {
            const long count = (a1 > a0 && b1 > b0) ? (a1 - a0) * (b1 - b0) : 0;
            const float fc = (float)count;
            if (count > 0)
                for (c = 0; c < channels; ++c) yr[c] = yr[c] / fc;
        }
    }
}

/* gk_pool2d's arguments; one unit of its loop is GK_POOL_ROWS output rows. */
enum { GK_POOL_ROWS = 16 };
struct gk_pool_job {
    const float *x;
    float *y;
    const long *in, *pool, *stride, *pad, *out;
    long channels, rows;
    int is_max;
};

static void gk_pool_item(void *ctx, long item, int thread)
{
    const struct gk_pool_job *j = (const struct gk_pool_job *)ctx;
    (void)thread;
    gk_pool_rows(j->is_max, j->x, j->y, j->in, j->channels, j->pool, j->stride, j->pad, j->out,
                 item * GK_POOL_ROWS, gk_minl(j->rows, (item + 1) * GK_POOL_ROWS));
}

void gk_pool2d(int is_max, const float *x, float *y, long batch, const long in[2], long channels,
               const long pool[2], const long stride[2], const long pad_before[2], const long out[2])
{
    struct gk_pool_job j;
    j = (struct gk_pool_job){ .x = x, .y = y, .in = in, .pool = pool, .stride = stride, .pad = pad_before,
                              .out = out, .channels = channels, .rows = batch * out[0] * out[1], .is_max = is_max };
    if (j.rows <= 0 || channels <= 0) return;
    gk_run(gk_threads(2.0 * (double)j.rows * (double)channels * (double)(pool[0] * pool[1])),
           (j.rows + GK_POOL_ROWS - 1) / GK_POOL_ROWS, gk_pool_item, &j);
}

void gk_global_pool(int is_max, const float *x, float *y, long batch, long spatial, long channels)
{
    enum { CHUNK = 64 };
    long s, c0;
    for (s = 0; s < batch; ++s) {
        const float *xs = x + s * spatial * channels;
        for (c0 = 0; c0 < channels; c0 += CHUNK) {
            const long cn = gk_minl(CHUNK, channels - c0);
            long p, c;
            if (is_max) {
                float m[CHUNK];
                for (c = 0; c < cn; ++c) m[c] = -HUGE_VALF;
                for (p = 0; p < spatial; ++p) {
                    const float *xp = xs + p * channels + c0;
                    for (c = 0; c < cn; ++c) m[c] = xp[c] > m[c] ? xp[c] : m[c];
                }
                for (c = 0; c < cn; ++c) y[s * channels + c0 + c] = m[c];
            } else { /* mean, summed in double */
                double acc[CHUNK];
                for (c = 0; c < cn; ++c) acc[c] = 0.0;
                for (p = 0; p < spatial; ++p) {
                    const float *xp = xs + p * channels + c0;
                    for (c = 0; c < cn; ++c) acc[c] += (double)xp[c];
                }
                for (c = 0; c < cn; ++c)
                    y[s * channels + c0 + c] = spatial > 0 ? (float)(acc[c] / (double)spatial) : 0.0f;
            }
        }
    }
}

/* ---- concat and merges ----------------------------------------------------------------------- */

void gk_concat(int count, const float *const *xs, const long *widths, float *y, long outer, long inner)
{
    long o;
    int i;
    for (o = 0; o < outer; ++o)
        for (i = 0; i < count; ++i) {
            const long w = widths[i] * inner;
            if (w > 0) memcpy(y, xs[i] + o * w, (size_t)w * sizeof *y);
            y += w;
        }
}

void gk_merge(int op, int count, const float *const *xs, float *y, long n)
{
    enum { CHUNK = 256 };
    float acc[CHUNK];
    long j0;
    if (count <= 0 || n <= 0) return;
    /* chunk by chunk, all inputs read before the chunk of y is written: y may be one of xs */
    for (j0 = 0; j0 < n; j0 += CHUNK) {
        const long cn = gk_minl(CHUNK, n - j0);
        long j;
        int i;
        for (j = 0; j < cn; ++j) acc[j] = xs[0][j0 + j];
        for (i = 1; i < count; ++i) {
            const float *xi = xs[i] + j0;
            switch (op) {
            case GK_SUBTRACT:
                for (j = 0; j < cn; ++j) acc[j] -= xi[j];
                break;
            case GK_MULTIPLY:
                for (j = 0; j < cn; ++j) acc[j] *= xi[j];
                break;
            case GK_MAXIMUM:
                for (j = 0; j < cn; ++j) acc[j] = xi[j] > acc[j] ? xi[j] : acc[j];
                break;
            case GK_MINIMUM:
                for (j = 0; j < cn; ++j) acc[j] = xi[j] < acc[j] ? xi[j] : acc[j];
                break;
            default: /* GK_ADD, GK_AVERAGE */
                for (j = 0; j < cn; ++j) acc[j] += xi[j];
                break;
            }
        }
        if (op == GK_AVERAGE) {
            const float fc = (float)count;
            for (j = 0; j < cn; ++j) acc[j] = acc[j] / fc;
        }
        memcpy(y + j0, acc, (size_t)cn * sizeof *y);
    }
}

/* ---- LSTM ---------------------------------------------------------------------------------- */

static int gk_elementwise(int act) { return act != GK_SOFTMAX && act != GK_LOG_SOFTMAX; }


/* One batch row of one step in a single vectorizable loop, for the common activation pairs:
 * gates from zt (+ rr, h_{t-1} @ recurrent, unless NULL at the first step), then c and h. */
#define GK_DEFINE_LSTM_ROW(NAME, ACT, REC)                                                       \
    static void NAME(const float *restrict zt, const float *restrict rr, float *restrict cr,     \
                     float *restrict hr, long u)                                                 \
    {                                                                                            \
        long j;                                                                                  \
        if (rr) {                                                                                \
            for (j = 0; j < u; ++j) {                                                            \
                const float gi = REC(zt[j] + rr[j]), gf = REC(zt[u + j] + rr[u + j]);            \
                const float gg = ACT(zt[2 * u + j] + rr[2 * u + j]);                             \
                const float go = REC(zt[3 * u + j] + rr[3 * u + j]);                             \
                const float cn = gf * cr[j] + gi * gg;                                           \
                cr[j] = cn;                                                                      \
                hr[j] = go * ACT(cn);                                                            \
            }                                                                                    \
        } else {                                                                                 \
            for (j = 0; j < u; ++j) {                                                            \
                const float gi = REC(zt[j]), gf = REC(zt[u + j]), gg = ACT(zt[2 * u + j]);       \
                const float go = REC(zt[3 * u + j]);                                             \
                const float cn = gf * cr[j] + gi * gg;                                           \
                cr[j] = cn;                                                                      \
                hr[j] = go * ACT(cn);                                                            \
            }                                                                                    \
        }                                                                                        \
    }

GK_DEFINE_LSTM_ROW(gk_lstm_row_tanh_sigmoid, gk_tanhf, gk_sigmoidf)
GK_DEFINE_LSTM_ROW(gk_lstm_row_tanh_hard_sigmoid, gk_tanhf, gk_hard_sigmoidf)
GK_DEFINE_LSTM_ROW(gk_lstm_row_relu_sigmoid, gk_reluf, gk_sigmoidf)

/* The generic step of one batch row: activations by gk_activation (softmax-like ones act on each
 * gate's u values), in place in zt. */
static void gk_lstm_row(float *zt, const float *rr, float *cr, float *hr, long u, int activation,
                        int recurrent_activation)
{
    float *ac = zt; /* act(c) overwrites the input gate once c is updated */
    long j;
    if (rr)
        for (j = 0; j < 4 * u; ++j) zt[j] += rr[j];
    if (gk_elementwise(recurrent_activation)) {
        gk_activation(recurrent_activation, zt, zt, 1, 2 * u);
    } else {
        gk_activation(recurrent_activation, zt, zt, 1, u);
        gk_activation(recurrent_activation, zt + u, zt + u, 1, u);
    }
    gk_activation(activation, zt + 2 * u, zt + 2 * u, 1, u);
    gk_activation(recurrent_activation, zt + 3 * u, zt + 3 * u, 1, u);
    for (j = 0; j < u; ++j) cr[j] = zt[u + j] * cr[j] + zt[j] * zt[2 * u + j];
    gk_activation(activation, cr, ac, 1, u);
    for (j = 0; j < u; ++j) hr[j] = zt[3 * u + j] * ac[j];
}

/* Every step of the recurrence for batch rows [b0, b1): h_{t-1} @ recurrent into the previous
 * step's rows of z (no longer needed), then the gates, c and h, row by row. */
static void gk_lstm_rows(gk_gemm_part_fn part, const float *recurrent, float *y_seq, float *z, float *hb, float *cb,
                         long b0, long b1, long steps, long u, int activation, int recurrent_activation,
                         int go_backwards)
{
    const long g4 = 4 * u;
    long t, b;
    for (t = 0; t < steps; ++t) {
        const long ts = go_backwards ? steps - 1 - t : t;         /* x's step processed now */
        const long tp = go_backwards ? ts + 1 : ts - 1;           /* the step processed before */
        if (t > 0)
            part(hb + b0 * u, u, recurrent, g4, NULL, z + (b0 * steps + tp) * g4, steps * g4, 0, b1 - b0, 0, g4, u);
        for (b = b0; b < b1; ++b) {
            float *zt = z + (b * steps + ts) * g4;
            const float *rr = t > 0 ? z + (b * steps + tp) * g4 : NULL;
            float *cr = cb + b * u, *hr = hb + b * u;
            if (activation == GK_TANH && recurrent_activation == GK_SIGMOID)
                gk_lstm_row_tanh_sigmoid(zt, rr, cr, hr, u);
            else if (activation == GK_TANH && recurrent_activation == GK_HARD_SIGMOID)
                gk_lstm_row_tanh_hard_sigmoid(zt, rr, cr, hr, u);
            else if (activation == GK_RELU && recurrent_activation == GK_SIGMOID)
                gk_lstm_row_relu_sigmoid(zt, rr, cr, hr, u);
            else
                gk_lstm_row(zt, rr, cr, hr, u, activation, recurrent_activation);
            if (y_seq) memcpy(y_seq + (b * steps + t) * u, hr, (size_t)u * sizeof *hr);
        }
    }
}

/* gk_lstm's recurrence; one unit of its loop is a group of batch rows through every step. */
struct gk_lstm_job {
    gk_gemm_part_fn part;
    const float *recurrent;
    float *y_seq, *z, *hb, *cb;
    long batch, groups, steps, u;
    int activation, recurrent_activation, go_backwards;
};

static void gk_lstm_item(void *ctx, long item, int thread)
{
    const struct gk_lstm_job *j = (const struct gk_lstm_job *)ctx;
    (void)thread;
    gk_lstm_rows(j->part, j->recurrent, j->y_seq, j->z, j->hb, j->cb, j->batch * item / j->groups,
                 j->batch * (item + 1) / j->groups, j->steps, j->u, j->activation, j->recurrent_activation,
                 j->go_backwards);
}

/* The input projections of every step are one product; then the batch rows, which never interact,
 * are cut into groups of at least 8 rows, two per thread, that run every step on their own (no
 * barrier per step), taken dynamically by the threads when the recurrence is large enough. */
void gk_lstm(const float *x, const float *kernel, const float *recurrent, const float *bias,
             float *y_seq, float *h, float *c, long batch, long steps, long in_dim, long units,
             int activation, int recurrent_activation, int go_backwards, float *scratch)
{
    const long u = units, g4 = 4 * units;
    float *z = scratch;                        /* (batch, steps, 4u): x K + b, in x's step order */
    float *hb = scratch + batch * steps * g4;  /* h (batch, u) */
    float *cb = hb + batch * u;                /* c (batch, u) */
    struct gk_lstm_job j;
    long mr, nr;
    gk_gemm_part_fn part;
    int threads;
    if (batch <= 0 || u <= 0) return;
    memset(hb, 0, (size_t)(2 * batch * u) * sizeof *hb);
    if (steps > 0) gk_gemm(x, in_dim, kernel, g4, bias, z, g4, batch * steps, in_dim, g4);
    part = gk_gemm_impl(&mr, &nr);
    (void)nr;
    threads = gk_threads((double)batch * (double)steps * (double)u * (double)g4);
    j = (struct gk_lstm_job){ .part = part, .recurrent = recurrent, .y_seq = y_seq, .z = z, .hb = hb, .cb = cb,
                              .batch = batch, .groups = threads > 1 ? gk_maxl(1, gk_minl(batch / 8, 2L * threads)) : 1,
                              .steps = steps, .u = u, .activation = activation,
                              .recurrent_activation = recurrent_activation, .go_backwards = go_backwards };
    gk_run(threads, j.groups, gk_lstm_item, &j);
    if (h) memcpy(h, hb, (size_t)(batch * u) * sizeof *h);
    if (c) memcpy(c, cb, (size_t)(batch * u) * sizeof *c);
}
