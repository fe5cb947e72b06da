# ---- gcomp NumPy runtime: Keras 3's learning-rate schedules -------------------------------------
# Copied verbatim into generated modules, before the optimizers that call them. A schedule maps the
# optimizer's step count (0 at the first step) to that step's learning rate. Keras computes them in
# float32 (the initial rate becomes a float32 tensor and everything is cast to its dtype); so do
# these, with NumPy float32 scalars, so the rate of every step is Keras's float32 value.
import math as _math

import numpy as np


def _decay_steps_positive(name, steps):
    if steps <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={steps}")


class LearningRateSchedule:
    """Base class: __call__(step) gives the step's rate; get_config() the constructor's arguments
    (a subclass outside this module trains, but cannot be written into a generated program)."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.get_config()}>"


class _DecayByProgress(LearningRateSchedule):
    """The schedules of (initial_learning_rate, decay_steps, decay_rate, staircase): a function of the
    progress step / decay_steps (floored with staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        _decay_steps_positive("decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps, self.decay_rate = initial_learning_rate, decay_steps, decay_rate
        self.staircase, self.name = staircase, name or type(self).__name__

    def _progress(self, step):
        p = np.float32(step) / np.float32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_DecayByProgress):
    """initial_learning_rate * decay_rate ** (step / decay_steps), the exponent floored with staircase."""

    def __call__(self, step):
        return np.float32(self.initial_learning_rate) * np.power(np.float32(self.decay_rate), self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] up to and including boundaries[0], values[i] for boundaries[i-1] < step <= boundaries[i],
    values[-1] after the last boundary. Boundaries compare with the integer step (cast to it, as Keras)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of "
                             f"length {len(values)}.")
        self.boundaries, self.values, self.name = boundaries, values, name

    def __call__(self, step):
        step = int(step)
        for boundary, value in zip(self.boundaries, self.values):
            if step <= int(boundary):
                return np.float32(value)
        return np.float32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - step / decay_steps) ** power + end, the step held at decay_steps, or with
    cycle the decay stretched to the next multiple of decay_steps."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        _decay_steps_positive("decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.end_learning_rate, self.power, self.cycle, self.name = end_learning_rate, power, cycle, name

    def __call__(self, step):
        initial, end = np.float32(self.initial_learning_rate), np.float32(self.end_learning_rate)
        step, decay_steps = np.float32(step), np.float32(self.decay_steps)
        if self.cycle:
            decay_steps = decay_steps * (np.float32(1) if step == 0 else np.ceil(step / np.float32(self.decay_steps)))
        else:
            step = min(step, decay_steps)
        return (initial - end) * np.power(np.float32(1) - step / decay_steps, np.float32(self.power)) + end

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(_DecayByProgress):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps), the quotient floored with staircase."""

    def __call__(self, step):
        return np.float32(self.initial_learning_rate) / (np.float32(1) + np.float32(self.decay_rate) * self._progress(step))


def _cosine(fraction, one_minus_alpha, alpha, scale=np.float32(1)):
    """one_minus_alpha * scale * (1 + cos(pi * fraction)) / 2 + alpha, in float32 as Keras computes it
    (CosineDecay rounds 1 - alpha from the double, CosineDecayRestarts computes it in float32)."""
    cosine = np.float32(0.5) * scale * (np.float32(1) + np.cos(np.float32(_math.pi) * fraction))
    return one_minus_alpha * cosine + np.float32(alpha)


class CosineDecay(LearningRateSchedule):
    """Optionally a linear warm-up from initial_learning_rate to warmup_target over warmup_steps, then
    a cosine decay over decay_steps from that rate down to alpha times it, held there afterwards."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        _decay_steps_positive("decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps, self.alpha, self.name = initial_learning_rate, decay_steps, alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def __call__(self, step):
        initial, decay_steps, step = np.float32(self.initial_learning_rate), np.float32(self.decay_steps), np.float32(step)
        one_minus_alpha = np.float32(1 - self.alpha)
        if self.warmup_target is None:
            return initial * _cosine(min(step, decay_steps) / decay_steps, one_minus_alpha, self.alpha)
        target, warmup = np.float32(self.warmup_target), np.float32(self.warmup_steps)
        step = min(step, decay_steps + warmup)
        if step < warmup:
            return (target - initial) * (step / warmup) + initial
        return target * _cosine((step - warmup) / decay_steps, one_minus_alpha, self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decays with warm restarts (SGDR): the first over first_decay_steps, each next one t_mul
    times longer and m_mul times lower, each decaying to alpha times its start."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name="SGDRDecay"):
        _decay_steps_positive("first_decay_steps", first_decay_steps)
        self.initial_learning_rate, self.first_decay_steps = initial_learning_rate, first_decay_steps
        self._t_mul, self._m_mul, self.alpha, self.name = t_mul, m_mul, alpha, name

    def __call__(self, step):
        t_mul, m_mul = np.float32(self._t_mul), np.float32(self._m_mul)
        fraction = np.float32(step) / np.float32(self.first_decay_steps)
        if t_mul == 1:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:  # which restart the step is in: the geometric sum of the lengths before it
            restart = np.floor(np.log(np.float32(1) - fraction * (np.float32(1) - t_mul)) / np.log(t_mul))
            done = (np.float32(1) - np.power(t_mul, restart)) / (np.float32(1) - t_mul)
            fraction = (fraction - done) / np.power(t_mul, restart)
        alpha = np.float32(self.alpha)
        return np.float32(self.initial_learning_rate) * _cosine(fraction, np.float32(1) - alpha, alpha,
                                                                  np.power(m_mul, restart))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self._t_mul, "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
                                           InverseTimeDecay, CosineDecay, CosineDecayRestarts)}


def serialize_schedule(schedule):
    """Keras's serialized form of a schedule (what optimizer.get_config() holds as its learning_rate)."""
    if type(schedule) not in SCHEDULES.values():
        raise ValueError(f"the learning-rate schedule {type(schedule).__name__} is not one of Keras's "
                         f"({', '.join(SCHEDULES)}), so it cannot be written into a generated program")
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def make_schedule(serialized):
    """A schedule from serialize_schedule's dict (Keras's serialize() form)."""
    name = serialized.get("class_name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; gcomp has {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[name].from_config(dict(serialized.get("config") or {}))
    except TypeError as e:  # missing or unknown arguments
        raise ValueError(f"learning-rate schedule {name}: {e}") from None
# ---- end of the gcomp NumPy runtime, learning-rate schedules ------------------------------------
