# ---- gcomp NumPy runtime: Keras 3's weight constraints -------------------------------------------
# Copied verbatim into generated training modules (gcomp.constraints runs the same code). The
# optimizer's step ends with these projections of the constrained weights, in place, as Keras's
# optimizer ends with variable.assign(constraint(variable)).
import numpy as np

CONSTRAINT_EPSILON = 1e-7  # Keras's backend.epsilon(), in the norms' denominators


def apply_constraint(w, spec):
    """Project the float32 array w in place: spec["kind"] "non_neg" is max(w, 0); "unit_norm" is
    w / (eps + ||w||); "max_norm" is w * (rate clip(||w||, min, max) + (1 - rate) ||w||) / (eps + ||w||)
    (MaxNorm and MinMaxNorm), the norms taken over the middle axis of w seen as (outer, reduced,
    inner) blocks, in float32 as Keras computes them."""
    if spec["kind"] == "non_neg":
        np.maximum(w, np.float32(0), out=w)
        return
    blocks = w.reshape(spec["outer"], spec["reduced"], spec["inner"])
    norms = np.sqrt(np.sum(np.square(blocks), axis=1, keepdims=True, dtype=np.float32))
    if spec["kind"] == "unit_norm":
        blocks /= np.float32(CONSTRAINT_EPSILON) + norms
        return
    rate = np.float32(spec["rate"])
    desired = rate * np.clip(norms, np.float32(spec["min_value"]), np.float32(spec["max_value"]))
    if spec["rate"] != 1.0:
        desired += (np.float32(1) - rate) * norms
    blocks *= desired / (np.float32(CONSTRAINT_EPSILON) + norms)
