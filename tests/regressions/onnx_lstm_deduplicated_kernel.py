"""ONNX export gave the second of two LSTM layers the first one's recurrent kernel and bias when their
kernels are equal (opt_level >= 1: dedupe_weights stores equal parameters once, and the export made
ONNX's W, R, B once per *kernel* parameter). Silently wrong outputs. Fixed in
gcomp/backends/onnx_ops.py (W, R, B keyed by all three parameters)."""
import numpy as np

from gcomp import Input, Model, layers

INPUTS = {'seed': 0, 'batch': 2, 'lengths': {'x_1': 4}}
OUTPUT_SHAPES = [(2,), ('x_1', 2)]


def build():
    x = Input(shape=(None, 3), name="x")
    a, b = layers.LSTM(2), layers.LSTM(2, return_sequences=True)
    model = Model(x, [a(x), b(x)], name="fuzz")
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 8)).astype("float32") * 0.6
    a.set_weights([kernel, rng.standard_normal((2, 8)).astype("float32") * 0.7, np.zeros(8, "float32")])
    b.set_weights([kernel.copy(), rng.standard_normal((2, 8)).astype("float32") * 0.7,
                   rng.standard_normal(8).astype("float32") * 0.3])
    return model
