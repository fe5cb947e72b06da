"""Weight initializers with Keras's names, defaults and formulas.

Values are drawn from a NumPy generator; `gcomp.utils.set_random_seed` makes them reproducible.
They cannot equal Keras's own random draws, so to reproduce a Keras model copy its weights with
`set_weights`.
"""
from __future__ import annotations

import math

import numpy as np

from gcomp.errors import LayerConfigError

_global_rng = np.random.default_rng()
_training_seeds = np.random.default_rng()  # its own stream: training never shifts the weights drawn


def set_random_seed(seed: int) -> None:
    """Seed the generator that unseeded initializers draw from, and the one that seeds training
    programs (fit's shuffling, dropout masks): after it, models and their training repeat exactly,
    as after Keras's set_random_seed."""
    global _global_rng, _training_seeds
    _global_rng = np.random.default_rng(seed)
    _training_seeds = np.random.default_rng([seed, 1])


def training_seed() -> int:
    """A seed for a new training program's random streams; reproducible after set_random_seed."""
    return int(_training_seeds.integers(2**63))


def compute_fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Keras's fans: dense (in, out); conv kernels (k..., in, out) scale both by the receptive field."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


class Initializer:
    """Base class: call with a shape (and dtype) to get an array."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return _global_rng if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed} if self.seed is not None else {}


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        super().__init__()
        self.value = value

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, shape).astype(dtype)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, shape).astype(dtype)


def _truncated_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit normal draws, redrawn where they fall beyond two standard deviations (as Keras)."""
    x = rng.normal(0.0, 1.0, shape)
    while (bad := np.abs(x) > 2).any():
        x[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
    return x


class TruncatedNormal(RandomNormal):
    """Normal draws, redrawn where they fall beyond two standard deviations."""

    def __call__(self, shape, dtype="float32"):
        return (self.mean + self.stddev * _truncated_normal(self._rng(), shape)).astype(dtype)


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: scale / fan (fan_in, fan_out or their mean) sets the variance."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape).astype(dtype)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), shape).astype(dtype)
        stddev = math.sqrt(scale) / 0.87962566103423978  # std of a unit normal truncated at 2
        return (stddev * _truncated_normal(rng, shape)).astype(dtype)


class GlorotUniform(VarianceScaling):
    """U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


class HeNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class LecunUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)


class LecunNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)


class Orthogonal(Initializer):
    """Keras's Orthogonal: QR of a normal matrix (rows = prod(shape[:-1])), signs fixed by diag(R)."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype="float32"):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = (max(rows, cols), min(rows, cols))
        a = self._rng().normal(0.0, 1.0, flat)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "uniform": RandomUniform, "random_uniform": RandomUniform,
    "normal": RandomNormal, "random_normal": RandomNormal, "truncated_normal": TruncatedNormal,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal, "variance_scaling": VarianceScaling,
}


def get(identifier) -> Initializer:
    """An initializer from a Keras name ("glorot_uniform"), a class name, or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        key = identifier if identifier in _BY_NAME else _class_key(identifier)
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise LayerConfigError(f"unknown initializer {identifier!r}; known: {', '.join(sorted(_BY_NAME))}")
    if callable(identifier):
        return _Callable(identifier)
    raise LayerConfigError(f"cannot interpret {identifier!r} as an initializer")


class _Callable(Initializer):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __call__(self, shape, dtype="float32"):
        return np.asarray(self.fn(shape, dtype), dtype)


def _class_key(name: str) -> str:
    from gcomp.frontend.naming import snake_case
    return snake_case(name)
