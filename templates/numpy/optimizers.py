# ---- gcomp NumPy runtime: Keras 3 optimizers over flat parameter buffers ------------------------
# Copied verbatim into generated modules: plain Python and NumPy only. All trainable weights live in
# one flat buffer (float32, or float64 for checks) and so do their gradients and every slot variable
# (momentum, velocity, ...); one update() applies Keras 3's update to all of them in place.
# Keras's order of operations is kept exactly, in the buffer's dtype, with every hyperparameter cast
# to that dtype the way Keras casts it (so 1 - beta_1 is rounded from the double, not computed in
# float32). Per step, in Keras's order: unscale (loss_scale_factor), clip (clipnorm per weight,
# global_clipnorm or clipvalue), weight decay w -= w * wd * lr, the optimizer's update_step, then
# iterations += 1. The work runs in cache-sized chunks with preallocated scratch, so a step over
# ~14M floats allocates nothing and streams each buffer once or twice. A large buffer is cut into one
# part per CPU, each updated by its own thread (NumPy releases the GIL inside its loops, and the
# update is elementwise: the same numbers whatever the split). The threads gain only on cores that
# OpenBLAS's idle threads leave free: those spin for about 2^28 cycles after each matrix product
# unless OPENBLAS_THREAD_TIMEOUT (read when NumPy loads) says less.
import os as _os
from concurrent.futures import ThreadPoolExecutor as _ThreadPoolExecutor

import numpy as np

_CHUNK = 1 << 15  # elements per chunk: the few scratch and slot slices stay in L2 cache
_THREAD_CHUNK = 1 << 17  # per chunk when threads share the work: fewer calls, less waiting for the GIL
_THREAD_MIN = 1 << 21  # buffers from this size up are split between threads
_MAX_THREADS = 4  # at most this many threads share one update (a cap, not a measured optimum)
_pool, _pool_pid = None, None


def _thread_ranges(n):
    """[lo, hi) parts of a buffer of n elements, one per thread, cut at chunk boundaries: a single
    part for a small buffer or a single CPU."""
    try:
        cpus = len(_os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = _os.cpu_count() or 1
    workers = min(cpus, _MAX_THREADS) if n >= _THREAD_MIN else 1
    per = -(-n // (workers * _THREAD_CHUNK)) * _THREAD_CHUNK
    return [(lo, min(lo + per, n)) for lo in range(0, n, per)] if workers > 1 else [(0, n)]


def _thread_pool():
    """The update's worker threads, made on first use; a forked child makes its own (threads do not
    survive fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != _os.getpid():
        _pool, _pool_pid = _ThreadPoolExecutor(_MAX_THREADS - 1, thread_name_prefix="gcomp-optimizer"), _os.getpid()
    return _pool


def _is_float(x):
    return isinstance(x, (float, np.floating)) and not isinstance(x, bool)


class Optimizer:
    """Base class: hyperparameters common to Keras 3 optimizers, clipping, weight decay, the
    iteration counter, state and config. Subclasses set _slots and implement _step."""

    _class_name = "Optimizer"
    _default_name = "optimizer"
    _slots = ()  # names of the slot buffers, in Keras's build order

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        self.warnings = []  # things Keras would warn about, for the caller to show
        if kwargs.pop("decay", None) is not None:
            self.warnings.append("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            hint = ""
            if "lr" in kwargs:
                hint = " Keras 3 refuses `lr`: use `learning_rate`."
            raise ValueError(f"Argument(s) not recognized: {kwargs}.{hint}")
        if isinstance(learning_rate, dict):  # a serialized schedule (Keras's from_config form)
            learning_rate = make_schedule(learning_rate)
        if callable(learning_rate) and not isinstance(learning_rate, LearningRateSchedule):
            raise ValueError("gcomp takes a float `learning_rate` or a LearningRateSchedule (gcomp.optimizers."
                             "schedules), not a plain callable, which a generated program could not hold; "
                             f"received learning_rate={learning_rate!r}")
        if not _is_float(learning_rate) and not isinstance(learning_rate, LearningRateSchedule):
            raise ValueError("Argument `learning_rate` should be float, or an instance of "
                             "LearningRateSchedule, or a callable (that takes in the current iteration "
                             f"value and returns the corresponding learning rate value). Received instead: "
                             f"learning_rate={learning_rate!r}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                             f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        if gradient_accumulation_steps and not gradient_accumulation_steps >= 2:
            raise ValueError("`gradient_accumulation_steps` must be an integer >= 2. Received: "
                             f"gradient_accumulation_steps={gradient_accumulation_steps}")
        if use_ema:
            raise ValueError("gcomp's optimizers do not support `use_ema=True` yet")
        if gradient_accumulation_steps:
            raise ValueError("gcomp's optimizers do not support `gradient_accumulation_steps` yet")
        self.name = self._default_name if name is None else name
        self._learning_rate = learning_rate if isinstance(learning_rate, LearningRateSchedule) else float(learning_rate)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.iterations = 0
        self.built = False
        self.size = 0
        self.dtype = np.dtype(np.float32)
        self.segments = []
        self._no_decay = set()
        self._buffers = {}

    # -- hyperparameters ------------------------------------------------------------------------

    @property
    def learning_rate(self):
        """The learning rate as Keras holds it: a float32 variable (read back as a Python float), or
        a schedule's float32 value at the current step count."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(np.float32(self._learning_rate(self.iterations)))
        return float(np.float32(self._learning_rate))

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):  # Keras's refusal, word for word
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not settable. If "
                            "you need the learning rate to be settable, you should instantiate the optimizer "
                            "with a float `learning_rate` argument.")
        self._learning_rate = float(value)

    @property
    def learning_rate_schedule(self):
        """The LearningRateSchedule the rate follows, or None for a constant (settable) rate."""
        return self._learning_rate if isinstance(self._learning_rate, LearningRateSchedule) else None

    def _c(self, value):
        """A hyperparameter cast to the buffers' dtype (Python double first, as Keras does)."""
        return self.dtype.type(value)

    def _lr(self):
        # Keras stores the rate in a float32 variable (or computes the schedule's in float32), then
        # casts it to the variable's dtype.
        return self.dtype.type(np.float32(self.learning_rate))

    # -- building -------------------------------------------------------------------------------

    def build(self, size, dtype=np.float32, segments=None):
        """Create the slot buffers for a flat parameter buffer of `size` elements. segments: the
        weights as (offset, size) pairs tiling [0, size) in order (needed for clipnorm, which Keras
        applies per weight, and for exclude_from_weight_decay); default one segment."""
        size = int(size)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"optimizer buffers must be float32 or float64, not {dtype}")
        if segments is None:
            segments = [(0, size)]
        segments = [(int(o), int(n)) for o, n in segments]
        at = 0
        for o, n in segments:
            if o != at or n < 0:
                raise ValueError(f"segments must tile [0, {size}) in order; got {segments}")
            at = o + n
        if at != size:
            raise ValueError(f"segments cover {at} elements of a buffer of {size}")
        self.size, self.dtype, self.segments = size, dtype, segments
        self._buffers = {name: np.full(size, self._slot_init(name), dtype) for name in self._active_slots()}
        chunk = min(_CHUNK, max(size, 1))
        self._t1 = np.empty(chunk, dtype)
        self._t2 = np.empty(chunk, dtype)
        self._work = None  # full-size gradient scratch, made when first needed (unscale / clipping)
        self._thread_scratch = []  # (t1, t2) per thread, made when a step first runs on threads
        self.built = True
        return self

    def _active_slots(self):
        return self._slots

    def _slot_init(self, name):
        return 0

    def exclude_from_weight_decay(self, segment_indices):
        """Exclude weights (indices into the build segments) from weight decay, like Keras's
        exclude_from_weight_decay(var_list=...)."""
        self._no_decay = set(int(i) for i in segment_indices)

    # -- one step -------------------------------------------------------------------------------

    def update(self, params, grads):
        """Apply one step to params (a flat, contiguous buffer) in place, from grads (same shape;
        never modified). Builds on first use with one segment when build() was not called."""
        if not self.built:
            self.build(params.size, params.dtype)
        for what, a in (("params", params), ("grads", grads)):
            if a.shape != (self.size,) or a.dtype != self.dtype:
                raise ValueError(f"{self.name}: {what} must be a flat {self.dtype} buffer of {self.size} "
                                 f"elements (as built); got {a.dtype} {a.shape}")
        if not params.flags.c_contiguous:
            raise ValueError(f"{self.name}: params must be a contiguous buffer (updated in place)")
        g = self._prepare_gradients(grads)
        n = self.size
        if self._t1.size < min(_CHUNK, n):
            self._t1, self._t2 = np.empty(_CHUNK, self.dtype), np.empty(_CHUNK, self.dtype)
        lr = self._lr()
        # Keras decays every weight before any update_step; both are elementwise, so with no
        # exclusions the decay runs chunk by chunk just ahead of the update (same numbers, one pass)
        fused_decay = self.weight_decay is not None and not self._no_decay
        if self.weight_decay is not None and not fused_decay:
            self._apply_weight_decay(params, lr)
        wd = self._c(self.weight_decay) if fused_decay else None
        consts = self._constants(lr)
        slots = [self._buffers[name] for name in self._active_slots()]
        ranges = _thread_ranges(n)
        if len(ranges) == 1:
            self._update_range(params, g, slots, 0, n, _CHUNK, self._t1, self._t2, lr, wd, consts)
        else:
            while len(self._thread_scratch) < len(ranges):
                self._thread_scratch.append((np.empty(_THREAD_CHUNK, self.dtype), np.empty(_THREAD_CHUNK, self.dtype)))
            work = [(params, g, slots, lo, hi, _THREAD_CHUNK, *scratch, lr, wd, consts)
                    for (lo, hi), scratch in zip(ranges, self._thread_scratch)]
            others = [_thread_pool().submit(self._update_range, *args) for args in work[1:]]
            try:
                self._update_range(*work[0])
            finally:  # no thread may go on writing after update returns, even on an error
                for future in others:
                    future.result()
        self.iterations += 1

    def _update_range(self, params, g, slots, lo, hi, chunk, t1, t2, lr, wd, consts):
        """Weight decay (when fused, wd not None) and the update step over params[lo:hi], chunk by chunk."""
        for start in range(lo, hi, chunk):
            stop = min(start + chunk, hi)
            k = stop - start
            w = params[start:stop]
            if wd is not None:
                np.multiply(w, wd, out=t1[:k])          # w = w - w * wd * lr
                t1[:k] *= lr
                w -= t1[:k]
            self._step(w, g[start:stop], [s[start:stop] for s in slots], t1[:k], t2[:k], consts)

    def _work_buffer(self):
        if self._work is None:
            self._work = np.empty(self.size, self.dtype)
        return self._work

    def _prepare_gradients(self, grads):
        g = grads
        if self.loss_scale_factor is not None:
            work = self._work_buffer()
            np.divide(g, self._c(self.loss_scale_factor), out=work)
            g = work
        if self.clipnorm and self.clipnorm > 0:
            # tf.clip_by_norm per weight: g * c / max(||g||, c) (also when ||g|| < c)
            c = self._c(self.clipnorm)
            work = self._work_buffer()
            for o, k in self.segments:
                gs = g[o:o + k]
                l2sum = np.dot(gs, gs) if k else self.dtype.type(0)
                l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
                out = work[o:o + k]
                np.multiply(gs, c, out=out)
                out /= max(l2norm, c)
            g = work
        elif self.global_clipnorm and self.global_clipnorm > 0:
            # base_optimizer.clip_by_global_norm: scale = c * min(1 / norm, 1 / c), NaN if the norm
            # is not finite; every gradient is multiplied by it (also when the norm is below c)
            sq = self.dtype.type(0)
            for o, k in self.segments:
                gs = g[o:o + k]
                sq = self.dtype.type(sq + (np.dot(gs, gs) if k else 0))
            norm = np.sqrt(sq)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = self._c(self.global_clipnorm) * min(self.dtype.type(1) / norm,
                                                            self._c(1.0 / self.global_clipnorm))
                scale = scale + (norm - norm)
            work = self._work_buffer()
            np.multiply(g, scale, out=work)
            g = work
        elif self.clipvalue and self.clipvalue > 0:
            v = self._c(self.clipvalue)
            work = self._work_buffer()
            np.clip(g, -v, v, out=work)
            g = work
        return g

    def _apply_weight_decay(self, params, lr):
        """Keras: w = w - w * wd * lr for every weight not excluded."""
        wd = self._c(self.weight_decay)
        t = self._t1
        chunk = t.size
        for index, (o, k) in enumerate(self.segments):
            if index in self._no_decay:
                continue
            for start in range(o, o + k, chunk):
                stop = min(start + chunk, o + k)
                w, tt = params[start:stop], t[:stop - start]
                np.multiply(w, wd, out=tt)
                tt *= lr
                w -= tt

    def _constants(self, lr):
        return (lr,)

    def _step(self, w, g, slots, t1, t2, consts):
        raise NotImplementedError

    # -- state and config -----------------------------------------------------------------------

    def get_state(self):
        """A dict of plain values and arrays (copies): iterations, learning_rate and each slot."""
        state = {"iterations": int(self.iterations)}
        if self.learning_rate_schedule is None:  # a schedule's rate follows from the iterations
            state["learning_rate"] = self.learning_rate
        for name, buf in self._buffers.items():
            state[name] = buf.copy()
        return state

    def set_state(self, state):
        """Restore get_state()'s dict (the optimizer must be built for buffers of the same size)."""
        if not self.built:
            raise ValueError(f"{self.name}: build() the optimizer before set_state()")
        missing = [name for name in self._buffers if name not in state]
        if missing:
            raise ValueError(f"{self.name}: state lacks slot(s) {missing}")
        for name, buf in self._buffers.items():
            value = np.asarray(state[name])
            if value.shape != buf.shape:
                raise ValueError(f"{self.name}: slot {name!r} has shape {value.shape} in the state, "
                                 f"{buf.shape} here")
            buf[...] = value
        if "iterations" in state:
            self.iterations = int(state["iterations"])
        if "learning_rate" in state and self.learning_rate_schedule is None:
            self.learning_rate = state["learning_rate"]

    def get_config(self):
        """Keras 3's get_config(): the same keys and values."""
        return {
            "name": self.name,
            "learning_rate": (self.learning_rate if self.learning_rate_schedule is None
                              else serialize_schedule(self.learning_rate_schedule)),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    def serialize(self):
        """{"class_name", "config"}: what make_optimizer() accepts back."""
        return {"module": "keras.optimizers", "class_name": self._class_name,
                "config": self.get_config(), "registered_name": None}

    def scale_loss(self, loss):
        """Keras's scale_loss: loss * loss_scale_factor when one is set."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def __repr__(self):
        return f"<{self._class_name} {self.get_config()}>"


class SGD(Optimizer):
    """m = 0: w -= g lr. Else v = v mu - g lr; w += v (nesterov: w += v mu - g lr)."""

    _class_name = "SGD"
    _default_name = "SGD"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not _is_float(momentum) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov

    def _active_slots(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _constants(self, lr):
        return lr, self._c(self.momentum)

    def _step(self, w, g, slots, t1, t2, consts):
        lr, mu = consts
        np.multiply(g, lr, out=t1)                  # g * lr
        if not slots:
            w -= t1
            return
        (m,) = slots
        m *= mu                                     # m = m * mu - g * lr
        m -= t1
        if self.nesterov:
            np.multiply(m, mu, out=t2)              # w += m * mu - g * lr
            t2 -= t1
            w += t2
        else:
            w += m

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class RMSprop(Optimizer):
    """a = rho a + (1 - rho) g^2; step = lr g / sqrt(a + eps) (centered: sqrt(a - gbar^2 + eps),
    gbar = rho gbar + (1 - rho) g); momentum: m = momentum m + step, w -= m; else w -= step."""

    _class_name = "RMSprop"
    _default_name = "rmsprop"
    _slots = ("velocity", "momentum", "average_gradient")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _active_slots(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) \
            + (("average_gradient",) if self.centered else ())

    def _constants(self, lr):
        c = self._c
        return lr, c(self.rho), c(1 - self.rho), c(self.epsilon), c(self.momentum)

    def _step(self, w, g, slots, t1, t2, consts):
        lr, rho, one_minus_rho, eps, momentum = consts
        vel = slots[0]
        np.square(g, out=t1)                        # velocity = rho v + (1 - rho) g^2
        t1 *= one_minus_rho
        vel *= rho
        vel += t1
        if self.centered:
            ag = slots[-1]
            np.multiply(g, one_minus_rho, out=t1)   # average_grad = rho ag + (1 - rho) g
            ag *= rho
            ag += t1
            np.square(ag, out=t2)                   # denominator = v - ag^2 + eps
            np.subtract(vel, t2, out=t2)
            t2 += eps
        else:
            np.add(vel, eps, out=t2)                # denominator = v + eps
        np.sqrt(t2, out=t2)
        np.multiply(g, lr, out=t1)                  # increment = lr g / sqrt(denominator)
        t1 /= t2
        if self.momentum > 0:
            m = slots[1]
            m *= momentum                           # m = momentum m + increment; w -= m
            m += t1
            w -= m
        else:
            w -= t1

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                       "centered": self.centered})
        return config


class Adam(Optimizer):
    """m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); alpha = lr sqrt(1 - b2^t) / (1 - b1^t);
    w -= (m alpha) / (sqrt(v) + eps), t = iterations + 1 (amsgrad: v_hat = max(v_hat, v) in v's place)."""

    _class_name = "Adam"
    _default_name = "adam"
    _slots = ("momentum", "velocity", "velocity_hat")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def _active_slots(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _constants(self, lr):
        c, dt = self._c, self.dtype.type
        local_step = dt(self.iterations + 1)
        beta_1_power = np.power(c(self.beta_1), local_step)
        beta_2_power = np.power(c(self.beta_2), local_step)
        alpha = dt(dt(lr * np.sqrt(dt(1 - beta_2_power))) / dt(1 - beta_1_power))
        return alpha, c(1 - self.beta_1), c(1 - self.beta_2), c(self.epsilon)

    def _step(self, w, g, slots, t1, t2, consts):
        alpha, one_minus_b1, one_minus_b2, eps = consts
        m, v = slots[0], slots[1]
        np.subtract(g, m, out=t1)                   # m += (g - m)(1 - b1)
        t1 *= one_minus_b1
        m += t1
        np.square(g, out=t1)                        # v += (g^2 - v)(1 - b2)
        t1 -= v
        t1 *= one_minus_b2
        v += t1
        if self.amsgrad:
            v_hat = slots[2]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        np.sqrt(v, out=t2)                          # w -= (m alpha) / (sqrt(v) + eps)
        t2 += eps
        np.multiply(m, alpha, out=t1)
        t1 /= t2
        w -= t1

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "amsgrad": self.amsgrad})
        return config


class AdamW(Adam):
    """Adam after the decoupled weight decay w -= w wd lr (weight_decay 0.004 by default)."""

    _class_name = "AdamW"
    _default_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)
        if self.weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")


class Adagrad(Optimizer):
    """A += g^2 (A starts at initial_accumulator_value); w -= lr g / sqrt(A + eps)."""

    _class_name = "Adagrad"
    _default_name = "adagrad"
    _slots = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_init(self, name):
        return self.initial_accumulator_value

    def _constants(self, lr):
        return lr, self._c(self.epsilon)

    def _step(self, w, g, slots, t1, t2, consts):
        lr, eps = consts
        (acc,) = slots
        np.square(g, out=t1)                        # A += g^2
        acc += t1
        np.add(acc, eps, out=t2)                    # w -= lr g / sqrt(A + eps)
        np.sqrt(t2, out=t2)
        np.multiply(g, lr, out=t1)
        t1 /= t2
        w -= t1

    def get_config(self):
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value,
                       "epsilon": self.epsilon})
        return config


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad}
# Keras's identifiers: the class name and its lower-case form
_BY_NAME = {}
for _cls in OPTIMIZERS.values():
    _BY_NAME[_cls._class_name] = _cls
    _BY_NAME[_cls._class_name.lower()] = _cls
del _cls
_KERAS_ONLY = ("adadelta", "adafactor", "adamax", "ftrl", "lamb", "lion", "loss_scale_optimizer",
               "muon", "nadam")


def _lookup(name):
    if name in _BY_NAME:
        return _BY_NAME[name]
    supported = ", ".join(sorted(OPTIMIZERS))
    if isinstance(name, str) and name.lower() in OPTIMIZERS:
        raise ValueError(f"Could not interpret optimizer identifier: {name!r}. Keras spells it "
                         f"{OPTIMIZERS[name.lower()]._class_name!r} or {name.lower()!r}.")
    if isinstance(name, str) and name.lower() in _KERAS_ONLY:
        raise ValueError(f"optimizer {name!r} is a Keras optimizer gcomp does not implement yet; "
                         f"supported: {supported}")
    raise ValueError(f"Could not interpret optimizer identifier: {name!r}; supported: {supported}")


def make_optimizer(name_or_config):
    """An optimizer from Keras's identifiers: a string ('adam', 'Adam', 'sgd', 'SGD', 'rmsprop',
    'RMSprop', 'adamw', 'AdamW', 'adagrad', 'Adagrad'), a serialized dict {"class_name": ...,
    "config": {...}} (as Keras's optimizer.get_config / serialize write them), or an optimizer."""
    if isinstance(name_or_config, Optimizer):
        return name_or_config
    if isinstance(name_or_config, str):
        return _lookup(name_or_config)()
    if isinstance(name_or_config, dict):
        if "class_name" not in name_or_config:
            raise ValueError("an optimizer dict needs a 'class_name' (and optionally a 'config'); got "
                             f"keys {sorted(name_or_config)}")
        extra = set(name_or_config) - {"class_name", "config", "module", "registered_name"}
        if extra:
            raise ValueError(f"unexpected key(s) {sorted(extra)} in the optimizer dict")
        cls = _lookup(name_or_config["class_name"])
        config = dict(name_or_config.get("config") or {})
        return cls(**config)
    raise ValueError(f"Could not interpret optimizer identifier: {name_or_config!r}")
