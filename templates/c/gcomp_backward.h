/* gcomp C kernels for training: backward passes (vector-Jacobian products) of the forward kernels
 * in gcomp_kernels.h, and the broadcasting forward merge. C99, float32, row-major, channels-last,
 * no allocation: callers pass every buffer, scratch included. Each kernel's comment states its
 * shapes; sizes are `long` element counts. Every gradient output is overwritten (not accumulated)
 * and may not overlap an input unless its comment says so. Results are the same for any OpenMP
 * thread count. */
#ifndef GCOMP_BACKWARD_H
#define GCOMP_BACKWARD_H

#include <stdint.h>

#include "gcomp_kernels.h"

/* The largest rank the broadcasting merges take (0 to 8). */
#define GK_MAX_RANK 8

/* gx = gy * act'(x) over `rows` rows of `row_len` values, act a gk_activation code; softmax and
 * log_softmax act on rows. x is the activation's input, y its output: linear reads neither,
 * relu, relu6, leaky_relu, softplus, softsign, gelu, hard_sigmoid, hard_silu and mish read x only,
 * sigmoid, tanh, softmax, log_softmax and exponential y only, elu, selu and silu both (a pointer
 * not read may be NULL). Kinks follow TF/JAX: relu'(0) = 0, relu6' = 0 at 0 and 6, hard_sigmoid'
 * = 0 at +-3; leaky_relu, elu and selu take the linear side at 0. gx may be gy (in place). */
void gk_activation_backward(int act, const float *x, const float *y, const float *gy, float *gx, long rows,
                            long row_len);
/* gx = gy * d/dx gk_keras_relu(x) on n values: 1 strictly between the threshold and max_value,
 * negative_slope below the threshold (leaky_relu: 1 at 0). gx may be gy. */
void gk_keras_relu_backward(const float *x, const float *gy, float *gx, long n, float negative_slope, float max_value,
                            float threshold);

/* Dense y (rows, units) = x (rows, in_dim) @ kernel (in_dim, units) [+ bias]: writes
 * gx (rows, in_dim) = gy @ kernel^T, gkernel (in_dim, units) = x^T @ gy and gbias (units) = the
 * column sums of gy (rows in order); each of gx, gkernel, gbias may be NULL (not computed).
 * scratch: gk_dense_backward_scratch(...) floats. */
void gk_dense_backward(const float *x, const float *kernel, const float *gy, float *gx, float *gkernel,
                       float *gbias, long rows, long in_dim, long units, float *scratch);

/* Scratch floats gk_dense_backward needs at most (the largest rows the build takes):
 * max(rows, units) * in_dim (x^T for gkernel, then kernel^T for gx, in the same space). */
long gk_dense_backward_scratch(long rows, long in_dim, long units);

/* Embedding y (n, dim) = table[idx]: gtable (input_dim, dim) = 0, then gy's rows added to the rows
 * of their indices, in order (duplicates summed). Returns -1, or the position of the first index
 * outside [0, input_dim) (gtable is then all zeros). */
long gk_embedding_backward_i32(const int32_t *idx, long n, const float *gy, float *gtable, long input_dim,
                               long dim);
long gk_embedding_backward_i64(const int64_t *idx, long n, const float *gy, float *gtable, long input_dim,
                               long dim);

/* Broadcasting merge (NumPy's rules), Keras's order of operations as gk_merge: y (out_dims) =
 * xs[0] op xs[1] op ... ; input i has the dims in_dims[i * rank .. i * rank + rank - 1] (each
 * equal to out_dims' or 1; pad a lower-rank input's dims with leading 1s). y may be an input that
 * has the output's shape. Returns 0, or -1 (nothing written) when the dims do not broadcast to
 * out_dims or rank is outside [0, GK_MAX_RANK]. */
int gk_merge_broadcast(int op, int count, const float *const *xs, const long *in_dims, float *y,
                       const long *out_dims, int rank);

/* Gradients of gk_merge / gk_merge_broadcast (dims as there; equal shapes are the plain case):
 * gxs[i] (in_dims of input i) = the gradient gy (out_dims) routes to input i, summed over the axes
 * input i is broadcast along; gxs[i] == NULL: not computed. add: gy; subtract: gy, -gy; average:
 * gy / count; multiply: gy times every other input (in input order); maximum/minimum: gy where
 * input i is the first input equal to y (the forward's output), else 0. xs is read for multiply,
 * maximum and minimum (NULL allowed otherwise), y for maximum and minimum only (NULL allowed
 * otherwise). Returns 0, or -1 as gk_merge_broadcast. */
int gk_merge_backward(int op, int count, const float *const *xs, const long *in_dims, const float *y,
                      const float *gy, float *const *gxs, const long *out_dims, int rank);

/* Gradient of gk_concat: gy (outer, sum(widths) * inner) split into gxs[i] (outer, widths[i] *
 * inner); gxs[i] == NULL: skipped. */
void gk_concat_backward(int count, const float *gy, const long *widths, float *const *gxs, long outer,
                        long inner);

/* Gradient of gk_pool2d (arguments as there, gy (batch, out[0], out[1], channels), gx as x).
 * Max: each window's gradient goes to the first position (window order, row-major) holding the
 * window's max, padded positions counting as -inf (so a window's max is recomputed from x);
 * average: gy / (the window's in-bounds count) added to every in-bounds position. */
void gk_pool2d_backward(int is_max, const float *x, const float *gy, float *gx, long batch, const long in[2],
                        long channels, const long pool[2], const long stride[2], const long pad_before[2],
                        const long out[2]);

/* Gradient of gk_global_pool: gx (batch, spatial, channels) from gy (batch, channels). Max: gy
 * split equally among the positions equal to y (the forward's max, (batch, channels)); average:
 * gy / spatial everywhere (x and y are not read: may be NULL). */
void gk_global_pool_backward(int is_max, const float *x, const float *y, const float *gy, float *gx, long batch,
                             long spatial, long channels);

/* Gradient of training-mode dropout y = x * mask: gx (n) = gy * mask. gx may be gy. */
void gk_dropout_backward(const float *gy, const float *mask, float *gx, long n);

#endif
