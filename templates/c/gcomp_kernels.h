/* gcomp C kernels: the computations generated C models call. C99, float32, row-major,
 * channels-last (Keras's layouts). No allocation: callers pass every buffer, scratch included.
 * Each kernel's comment states its shapes; sizes are `long` element counts. */
#ifndef GCOMP_KERNELS_H
#define GCOMP_KERNELS_H

#include <stdint.h>

/* Activation codes (Keras names). Softmax and log_softmax act on the last axis (rows of `row_len`). */
enum gk_activation {
    GK_LINEAR = 0, GK_RELU, GK_SIGMOID, GK_TANH, GK_SOFTMAX, GK_ELU, GK_SELU, GK_SOFTPLUS,
    GK_SOFTSIGN, GK_SILU, GK_GELU, GK_HARD_SIGMOID, GK_EXPONENTIAL, GK_RELU6, GK_LEAKY_RELU,
    GK_MISH, GK_LOG_SOFTMAX, GK_HARD_SILU
};

/* Elementwise merge codes. */
enum gk_merge { GK_ADD = 0, GK_SUBTRACT, GK_MULTIPLY, GK_AVERAGE, GK_MAXIMUM, GK_MINIMUM };

/* Returns body(arg), run as a session when `work` (multiply-adds, about) is large enough and the
 * build has OpenMP (with GCC or Clang): the other threads wake once and, until body returns, spin
 * waiting for the kernels' parallel loops, instead of sleeping between them (under
 * OMP_WAIT_POLICY=passive a wake-up costs 5-100 us per loop, on the critical path). One session at
 * a time per process; a call that finds one open, or is inside a parallel region, runs as usual. */
int gk_session(int (*body)(void *), void *arg, double work);

/* The thread count of the session this thread opened (which its kernels use), else 0. */
int gk_session_threads(void);

/* y (m, n) = a (m, k) @ b (k, n) [+ bias (n)]; bias may be NULL. Cache-blocked, vectorizable. */
void gk_matmul(const float *a, const float *b, const float *bias, float *y, long m, long k, long n);

/* y = act(a @ b [+ bias]) (act: enum gk_activation; softmax-like ones on rows of n), the
 * activation applied while y is in cache; results as gk_matmul then gk_activation. */
void gk_matmul_act(const float *a, const float *b, const float *bias, float *y, long m, long k, long n, int act);

/* The same product with rows of a, b and y lda, ldb and ldy floats apart (sub-matrices). */
void gk_matmul_strided(const float *a, long lda, const float *b, long ldb, const float *bias, float *y,
                       long ldy, long m, long k, long n);

/* y (cols, rows) = x (rows, cols) transposed; y must not overlap x. */
void gk_transpose(const float *x, float *y, long rows, long cols);

/* y = act(x) over `rows` rows of `row_len` values (in place allowed: y == x). */
void gk_activation(int act, const float *x, float *y, long rows, long row_len);
/* y[n, t] = x[n, steps - 1 - t] for x (batch, steps, inner), y a separate buffer: the time axis
 * read backwards. Its own gradient too (gx from gy). */
void gk_reverse_steps(const float *x, float *y, long batch, long steps, long inner);
/* y = Keras's relu(x, negative_slope, max_value, threshold) on n values (max_value < 0: none),
 * step by step as the NumPy runtime's keras_relu; y may be x. */
void gk_keras_relu(const float *x, float *y, long n, float negative_slope, float max_value, float threshold);

/* y (n, dim) = table[idx] for idx (n) int32/int64. Returns -1 when every index is in
 * [0, input_dim), else the position of the first bad index (y is then unspecified). */
long gk_gather_i32(const float *table, long input_dim, long dim, const int32_t *idx, long n, float *y);
long gk_gather_i64(const float *table, long input_dim, long dim, const int64_t *idx, long n, float *y);

/* An Embedding and the Dense or valid Conv1D reading it, folded: y (batch, steps_out, dim) with
 * y[b, t] = sum_k tables[k][idx[b, t * stride + k * dilation]], tables (taps, input_dim, dim) and idx
 * (batch, steps_in) int32 (wide = 0) or int64 (wide = 1). Returns -1 when every index is in
 * [0, input_dim), else the position of the first bad one (y is then unspecified). */
long gk_lookup_sum(const float *tables, long taps, long input_dim, long dim, const void *idx, int wide,
                   long batch, long steps_in, long steps_out, long stride, long dilation, float *y);

/* Channels-last convolution of rank 1 or 2 (rank-1 uses in[1] = out[1] = kernel[1] = 1,
 * stride[1] = dilation[1] = 1, pad[1] = 0). x (batch, in[0], in[1], channels), kernel
 * (kernel[0], kernel[1], channels, filters), y (batch, out[0], out[1], filters).
 * pad_before[i]: zeros before each spatial axis (the padding after is implied by out[i]).
 * bias may be NULL. scratch: at least out[0] * out[1] * kernel[0] * kernel[1] * channels floats. */
void gk_conv2d(const float *x, const float *kernel, const float *bias, float *y, long batch,
               const long in[2], long channels, const long kernel_size[2], long filters,
               const long stride[2], const long dilation[2], const long pad_before[2], const long out[2],
               float *scratch);

/* The same as gk_conv2d_act for a 3x3 kernel at stride 1 without dilation (rank 2), by Winograd's
 * F(2x2, 3x3) where it pays (enough channels, filters and outputs; else the direct sum): 16
 * products per 2x2 outputs instead of 36, results within float32 rounding of the direct sum but
 * not the same bits (for inference; training keeps gk_conv2d_act). scratch: at least both
 * gk_conv2d_winograd_scratch(channels, filters) floats and what gk_conv2d_act needs. */
void gk_conv2d_winograd_act(const float *x, const float *kernel, const float *bias, float *y, long batch,
                            const long in[2], long channels, long filters, const long pad_before[2],
                            const long out[2], float *scratch, int act);
long gk_conv2d_winograd_scratch(long channels, long filters);

/* gk_conv2d then the activation act on y (rows of filters), fused: results as gk_conv2d then
 * gk_activation. The same scratch. */
void gk_conv2d_act(const float *x, const float *kernel, const float *bias, float *y, long batch,
                   const long in[2], long channels, const long kernel_size[2], long filters,
                   const long stride[2], const long dilation[2], const long pad_before[2], const long out[2],
                   float *scratch, int act);

/* Max (is_max = 1) or average pooling, channels-last, rank 1 or 2 as gk_conv2d. Average counts
 * only in-bounds elements (Keras's "same"); max ignores padded positions. */
void gk_pool2d(int is_max, const float *x, float *y, long batch, const long in[2], long channels,
               const long pool[2], const long stride[2], const long pad_before[2], const long out[2]);

/* y (batch, channels) = max or mean of x (batch, spatial, channels) over `spatial` positions. */
void gk_global_pool(int is_max, const float *x, float *y, long batch, long spatial, long channels);

/* Concatenate `count` inputs along an axis: each input is (outer, widths[i] * inner) row blocks;
 * y is (outer, sum(widths) * inner). */
void gk_concat(int count, const float *const *xs, const long *widths, float *y, long outer, long inner);

/* y = merge of `count` inputs of identical shape (n values each), Keras's order of operations
 * (average: sum then divide by count). */
void gk_merge(int op, int count, const float *const *xs, float *y, long n);

/* Keras LSTM (gate blocks i, f, c, o) over x (batch, steps, in_dim): kernel (in_dim, 4u),
 * recurrent (u, 4u), bias (4u) or NULL. Writes y_seq (batch, steps, u) if not NULL, and the last
 * h and c (batch, u) into h and c (h, c may be NULL). go_backwards reads the input from the end
 * and writes y_seq in that processing order. scratch: at least batch * steps * 4u + 2 * batch * u
 * floats. */
void gk_lstm(const float *x, const float *kernel, const float *recurrent, const float *bias,
             float *y_seq, float *h, float *c, long batch, long steps, long in_dim, long units,
             int activation, int recurrent_activation, int go_backwards, float *scratch);

#endif
