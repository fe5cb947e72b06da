/* gcomp C kernels for training: convolution backward, and the LSTM's training forward (which saves a
 * cache) and backward. C99, float32, row-major, channels-last, as gcomp_kernels.h; no allocation
 * (callers pass every buffer, scratch included, sized by the *_scratch and *_size functions below
 * for the largest dims they will be called with: every size function grows with each argument).
 * Deterministic: every output element is computed in an order fixed by the sizes alone, whatever
 * the thread count (OpenMP or not). Gradients are written (overwritten), never accumulated. */
#ifndef GCOMP_BACKWARD_SEQ_H
#define GCOMP_BACKWARD_SEQ_H

#include "gcomp_kernels.h"

/* ---- convolution ------------------------------------------------------------------------------ */

/* Floats of scratch gk_conv_backward needs at most, for any strides, dilations and paddings that
 * give these shapes (arguments as gk_conv2d's). */
long gk_conv_backward_scratch(long batch, const long in[2], long channels, const long kernel[2],
                              long filters, const long out[2]);

/* Gradients of gk_conv2d (same shape arguments; rank 1 uses in[1] = out[1] = kernel_size[1] = 1,
 * stride[1] = dilation[1] = 1, pad_before[1] = 0) given gy (batch, out[0], out[1], filters), the
 * gradient of its output y (before any activation):
 *   gx      (batch, in[0], in[1], channels)                   = sum over windows of gy W^T, or NULL
 *   gkernel (kernel_size[0], kernel_size[1], channels, filters) = patches^T gy, or NULL
 *   gbias   (filters)                                            = gy summed over all but the last axis, or NULL
 * x is read only for gkernel, kernel only for gx (either may be NULL when not read).
 * scratch: gk_conv_backward_scratch(batch, in, channels, kernel_size, filters, out) floats. */
void gk_conv_backward(const float *x, const float *kernel, const float *gy, float *gx, float *gkernel,
                      float *gbias, long batch, const long in[2], long channels, const long kernel_size[2],
                      long filters, const long stride[2], const long dilation[2], const long pad_before[2],
                      const long out[2], float *scratch);

/* ---- LSTM ------------------------------------------------------------------------------------- */

/* Floats of the cache gk_lstm_train writes and gk_lstm_backward reads: 11 * batch * steps * units
 * (layout private to these two functions; both must get the same dims). */
long gk_lstm_cache_size(long batch, long steps, long in_dim, long units);

/* Floats of scratch gk_lstm_train needs: 6 * batch * units (less than gk_lstm's). */
long gk_lstm_train_scratch(long batch, long steps, long in_dim, long units);

/* gk_lstm for training: the same arguments and the same results, bit for bit (y_seq in processing
 * order, or NULL; h, c (batch, u) or NULL), plus the cache (gk_lstm_cache_size floats) that
 * gk_lstm_backward needs: gate values, cell states, act(c), the previous h, and the gate
 * pre-activations when an activation's derivative needs its input.
 * scratch: gk_lstm_train_scratch floats. */
void gk_lstm_train(const float *x, const float *kernel, const float *recurrent, const float *bias,
                   float *y_seq, float *h, float *c, long batch, long steps, long in_dim, long units,
                   int activation, int recurrent_activation, int go_backwards, float *cache,
                   float *scratch);

/* Floats of scratch gk_lstm_backward needs, about
 * batch * steps * (5u + in_dim) + 2 * batch * u + 8u * (u + in_dim). */
long gk_lstm_backward_scratch(long batch, long steps, long in_dim, long units);

/* Backpropagation through time for gk_lstm_train (same x, weights, dims, activations, go_backwards
 * and cache). Output gradients (NULL: zero):
 *   g_y  the gradient of the layer output: (batch, steps, u) in processing order if
 *        return_sequences, else (batch, u) (the last h);
 *   g_h, g_c  the gradients of the returned states h and c (batch, u).
 * Writes (each may be NULL when not needed):
 *   gx (batch, steps, in_dim) in x's own step order, gkernel (in_dim, 4u), grecurrent (u, 4u),
 *   gbias (4u).
 * x is read only for gkernel, kernel only for gx. scratch: gk_lstm_backward_scratch floats. */
void gk_lstm_backward(const float *x, const float *kernel, const float *recurrent, const float *cache,
                      const float *g_y, int return_sequences, const float *g_h, const float *g_c,
                      float *gx, float *gkernel, float *grecurrent, float *gbias, long batch, long steps,
                      long in_dim, long units, int activation, int recurrent_activation, int go_backwards,
                      float *scratch);

/* ---- GRU -------------------------------------------------------------------------------------- */

/* Floats of the cache gk_gru writes for gk_gru_backward: 8 * batch * steps * units. */
long gk_gru_cache_size(long batch, long steps, long in_dim, long units);

/* Floats of scratch gk_gru needs: batch * steps * 3u + 12 * batch * u. */
long gk_gru_scratch(long batch, long steps, long in_dim, long units);

/* Keras's GRU over x (batch, steps, in_dim): kernel (in_dim, 3u), recurrent (u, 3u), gates z, r, h;
 * bias NULL, (3u) or with reset_after (2, 3u) (input row, recurrent row). Writes y_seq (batch,
 * steps, u) in processing order (reversed with go_backwards) and h_out (batch, u), either NULL when
 * not wanted; with a cache (gk_gru_cache_size floats, or NULL) also what gk_gru_backward reads.
 * scratch: gk_gru_scratch floats. */
void gk_gru(const float *x, const float *kernel, const float *recurrent, const float *bias, float *y_seq,
            float *h_out, long batch, long steps, long in_dim, long units, int activation, int recurrent_activation,
            int go_backwards, int reset_after, float *cache, float *scratch);

/* Floats of scratch gk_gru_backward needs: about batch * steps * (7u + max(in_dim, u)) + 3u in_dim
 * + 7u^2 + 8 batch u. */
long gk_gru_backward_scratch(long batch, long steps, long in_dim, long units);

/* Backpropagation through time for gk_gru (same x, weights, dims, flags and its cache). g_y: the
 * output's gradient ((batch, steps, u) in processing order if return_sequences, else (batch, u)),
 * g_h the returned state's; NULL: zero. Writes (each NULL when not needed) gx (batch, steps,
 * in_dim) in x's order, gkernel, grecurrent and gbias in their weights' shapes. */
void gk_gru_backward(const float *x, const float *kernel, const float *recurrent, const float *cache,
                     const float *g_y, int return_sequences, const float *g_h, float *gx, float *gkernel,
                     float *grecurrent, float *gbias, long batch, long steps, long in_dim, long units, int activation,
                     int recurrent_activation, int go_backwards, int reset_after, float *scratch);

#endif
