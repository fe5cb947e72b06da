/* gcomp C kernels for training: Keras's losses and their gradients, the optimizers' update and
 * dropout's random numbers. C99, float32, row-major, only libc and libm, no allocation: callers
 * pass every buffer. Sizes are `long` element counts. Every function follows the NumPy runtime
 * (templates/numpy/losses.py, optimizers.py, prelude.py's dropout_train) operation by operation in
 * float32, so results agree with it to float32 rounding (the optimizers bit for bit but for the
 * noted ulp), and are the same for any OpenMP thread count. */
#ifndef GCOMP_TRAIN_H
#define GCOMP_TRAIN_H

#include <stdint.h>

/* ---- losses ------------------------------------------------------------------------------- */

/* Loss codes (Keras's canonical names). */
enum gk_loss_kind {
    GK_LOSS_MEAN_SQUARED_ERROR = 0, GK_LOSS_MEAN_ABSOLUTE_ERROR, GK_LOSS_BINARY_CROSSENTROPY,
    GK_LOSS_CATEGORICAL_CROSSENTROPY, GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
};

/* One Keras loss over pred (batch, inner, classes) (a rank-2 prediction has inner = 1; a rank-3
 * (batch, T, classes) has inner = T). target: float (batch, inner, classes) for the dense losses,
 * int32_t labels (batch, inner) for GK_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY. sample_weight: float
 * (batch), one weight per sample (over all its inner positions), or NULL for weights of 1.
 * from_logits: crossentropies take logits (ignored by mse / mae).
 * Writes, each when not NULL:
 *   *loss = the reduced loss: the sum of the per-sample losses (the last axis reduced: batch *
 *           inner values) times their weights, divided by batch * inner (Keras's default
 *           "sum_over_batch_size") or, with reduce_sum, not divided (Keras's "sum"); 0 for an
 *           empty batch. Unweighted by loss_weight;
 *   grad (batch, inner, classes) = d(loss_weight * loss) / d pred (loss_weight cast to float32).
 * Returns -1, or for out-of-range sparse labels the position (in the batch * inner labels) of the
 * label the NumPy runtime names (the smallest if one is negative, else the largest; its first
 * occurrence); nothing is written then. */
long gk_loss(int kind, int from_logits, const float *pred, const void *target, const float *sample_weight,
             long batch, long inner, long classes, double loss_weight, int reduce_sum, float *loss, float *grad);

/* ---- optimizers --------------------------------------------------------------------------- */

/* Optimizer codes (Keras's classes). */
enum gk_optimizer_kind { GK_OPT_SGD = 0, GK_OPT_RMSPROP, GK_OPT_ADAM, GK_OPT_ADAMW, GK_OPT_ADAGRAD };

/* Hyperparameters, as the Python doubles Keras is given; each is cast to float32 where the NumPy
 * runtime casts it. Options off: clipnorm, global_clipnorm, clipvalue when not > 0 (0 or NaN);
 * weight_decay, loss_scale_factor when NaN (Python's None). Fields an optimizer does not use are
 * ignored (AdamW is Adam with its weight_decay). gk_optimizer_defaults fills Keras's defaults. */
typedef struct gk_optimizer {
    int kind;                  /* enum gk_optimizer_kind */
    double learning_rate;
    double momentum;           /* SGD, RMSprop */
    int nesterov;              /* SGD */
    double rho;                /* RMSprop */
    int centered;              /* RMSprop */
    double epsilon;            /* RMSprop, Adam(W), Adagrad */
    double beta_1, beta_2;     /* Adam(W) */
    int amsgrad;               /* Adam(W) */
    double initial_accumulator_value; /* Adagrad */
    double weight_decay;       /* NaN: none (AdamW's default 0.004) */
    double clipnorm, global_clipnorm, clipvalue; /* at most one set (> 0) */
    double loss_scale_factor;  /* NaN: none */
} gk_optimizer;

/* Keras's defaults for `kind` (learning rate, momentum, rho, epsilon, betas, Adagrad's initial
 * accumulator, AdamW's weight decay 0.004; no clipping, no loss scale). */
void gk_optimizer_defaults(gk_optimizer *opt, int kind);

/* Slot variables per parameter, in Keras's order, each an array of n floats, slot s at
 * slots + s * n: SGD [momentum] (when momentum != 0); RMSprop velocity, [momentum] (when
 * momentum > 0), [average_gradient] (when centered); Adam(W) momentum, velocity, [velocity_hat]
 * (when amsgrad); Adagrad accumulator. (The NumPy optimizer's get_state() names, in its order.) */
long gk_optimizer_slot_count(const gk_optimizer *opt);

/* Initial slots for n parameters (gk_optimizer_slot_count * n floats): zeros, Adagrad's
 * accumulator float32(initial_accumulator_value). */
void gk_optimizer_init_slots(const gk_optimizer *opt, float *slots, long n);

/* One step of the optimizer over the flat parameters w (n) with gradients g (n), in Keras's order:
 * g /= loss_scale_factor; clip (clipnorm per segment: g * c / max(||g||, c); global_clipnorm:
 * g * c * min(1 / ||g||, 1 / c) over all segments; clipvalue: clip to [-c, c]); weight decay
 * w -= w * wd * lr on every segment not excluded; the update (t = *iterations + 1 for Adam);
 * ++*iterations. g is overwritten (it holds the clipped gradients after). segments: the
 * num_segments weights as (offset, size) pairs tiling [0, n) in order (clipnorm's norms and the
 * weight decay exclusions work per weight); NULL with num_segments 0 stands for one segment
 * [0, n). no_decay: num_segments flags, nonzero = excluded from weight decay, or NULL.
 * Norms are summed in double in an order fixed by the sizes, so results are identical for any
 * thread count; they can differ from NumPy's float32 BLAS dot in the last bit. */
void gk_optimizer_update(const gk_optimizer *opt, float *w, float *g, float *slots, long n,
                         const long (*segments)[2], long num_segments, const unsigned char *no_decay,
                         long *iterations);

/* ---- dropout ------------------------------------------------------------------------------ */

/* splitmix64 (Steele, Lea and Flood): z += 0x9E3779B97F4A7C15; z = (z ^ z >> 30) *
 * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB; return z ^ z >> 31 (mod 2^64). */
uint64_t gk_splitmix64(uint64_t z);

/* Training-mode dropout on n values, drawn from the stream (key, *counter): element i gets
 * u_i = (splitmix64(key + *counter + i) >> 40) * 2^-24 (a float32-exact uniform in [0, 1)),
 * keep_i = u_i >= rate (compared exactly, with the double rate), mask_i = keep_i ?
 * float32(1 / (1 - rate)) : 0 (all 0 when rate >= 1), y_i = x_i * mask_i; then *counter += n
 * (also for rate >= 1). The same numbers as the NumPy runtime's dropout_train with a
 * DropoutStream(key) at the same counter. mask may be NULL; y may be x (in place). */
void gk_dropout(const float *x, float *y, float *mask, long n, double rate, uint64_t key, uint64_t *counter);

/* Keras's regularization penalty of n values: (l1 sum|w| + l2 sum w^2) / divisor (a factor of 0
 * adds nothing; divisor 1 for a weight, the batch size for an activity; 0 when divisor <= 0). */
float gk_penalty(const float *w, long n, double l1, double l2, double divisor);

/* g = d(scale * gk_penalty)/dw = ((scale l1) sign(w) + (scale l2) 2w) / divisor, for n values. */
void gk_penalty_grad(const float *w, float *g, long n, double l1, double l2, double scale, double divisor);

/* Keras's weight constraints, in place after an optimizer update, on w seen as (outer, reduced,
 * inner) blocks with the norms over `reduced`: NON_NEG w = max(w, 0); UNIT_NORM w / (eps + ||w||);
 * MAX_NORM (MaxNorm and MinMaxNorm) w * (rate clamp(||w||, min, max) + (1 - rate) ||w||) / (eps + ||w||),
 * eps = 1e-7, in float32 as the NumPy runtime's apply_constraint. */
enum gk_constraint_kind { GK_CONSTRAINT_NON_NEG = 0, GK_CONSTRAINT_UNIT_NORM, GK_CONSTRAINT_MAX_NORM };
void gk_constrain(int kind, float *w, long outer, long reduced, long inner, double min_value, double max_value,
                  double rate);

#endif
