"""NumPy runtime: GlobalAveragePooling computes in float32 even on float64 data
(templates/numpy/ops/global_avg_pool.py.j2 calls mean(..., dtype=np.float32)), so the training graph
run in float64 (the finite-difference gradient check) gets float32 rounding: the gradient of
dense/kernel is off by ~3% here. Every other forward kernel keeps float64 (tests/test_vjp.py checks
the kernels, not the op templates). Fixed: the template keeps the input's dtype (float32 gives the
same numbers as before)."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 45, 'batch': 1, 'lengths': {}}
OUTPUT_SHAPES = [(1, 1)]
GRADIENTS = True


def build():
    x = Input(shape=(1,), name="x")
    h = layers.Dense(1, activation='gelu')(x)
    y = layers.GlobalAveragePooling1D(keepdims=True)(layers.Reshape((1, 1))(h))
    model = Model(x, y, name="fuzz")
    randomize_weights(model, seed=48)
    return model
