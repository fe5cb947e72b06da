"""Random valid models for property tests: DAGs of dense/1x1-conv/conv/merge layers with branches,
shared layers, several inputs and outputs. Deterministic for a given seed."""
from __future__ import annotations

import numpy as np

from gcomp import Input, Model, layers

ACTIVATIONS = ["relu", "linear", "tanh", "sigmoid"]


def random_model(seed: int) -> Model:
    rng = np.random.default_rng(seed)
    n_inputs = int(rng.integers(1, 3))
    spatial = bool(rng.integers(0, 2))
    shape = (6, 5, 4) if spatial else (8,)
    inputs = [Input(shape=shape, name=f"in{i}") for i in range(n_inputs)]
    pool = list(inputs)
    shared = {}
    for step in range(int(rng.integers(3, 9))):
        x = pool[int(rng.integers(0, len(pool)))]
        kind = rng.choice(["dense", "dense", "shared", "merge", "conv"] if spatial else ["dense", "dense", "shared", "merge"])
        act = str(rng.choice(ACTIVATIONS))
        if kind == "dense":
            units = int(rng.choice([4, 6]))
            y = (layers.Conv2D(units, 1, activation=act) if spatial and rng.integers(0, 2) else
                 layers.Dense(units, activation=act))(x)
        elif kind == "conv":
            y = layers.Conv2D(int(rng.choice([4, 6])), 3, padding="same", activation=act)(x)
        elif kind == "shared":
            key = (x.shape[-1],)
            if key not in shared:
                shared[key] = layers.Dense(int(x.shape[-1]), activation=act)
            y = shared[key](x)
        else:
            same = [t for t in pool if t.shape == x.shape]
            other = same[int(rng.integers(0, len(same)))]
            y = (layers.add if rng.integers(0, 2) else layers.concatenate)([x, other])
        pool.append(y)
    outputs = [pool[-1]] + ([pool[int(rng.integers(n_inputs, len(pool)))]] if rng.integers(0, 2) and len(pool) > n_inputs + 1 else [])
    return Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=f"random{seed}")


def random_data(model: Model, batch: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]
