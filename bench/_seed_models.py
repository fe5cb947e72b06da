"""Shared by the bench scripts: the seed models' input data."""
from __future__ import annotations

import numpy as np

SEED_LENGTHS = {"qa_two_inputs": 100, "multi_output": 500, "siamese_lstm": 100}  # free sequence dims


def fixed_inputs(model, name: str, batch: int) -> list[np.ndarray]:
    """Seeded random inputs in model input order: normal floats; integers below every input_dim of the
    Embeddings an input feeds; free sequence dims set to the seed notes' lengths."""
    from gcomp.frontend.data import embedding_index_limits
    limits = embedding_index_limits(model._inference_graph())
    rng = np.random.default_rng(0)
    arrays = []
    for t, input_name in zip(model.inputs, model.input_names):
        shape = [batch] + [SEED_LENGTHS.get(name, 1) if d is None else d for d in t.shape[1:]]
        if input_name in limits:
            arrays.append(rng.integers(0, min(d for _, d in limits[input_name]), shape).astype(t.dtype))
        else:
            arrays.append(rng.normal(size=shape).astype(t.dtype))
    return arrays
