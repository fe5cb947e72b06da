"""ONNX export: "same" padding on a free length with a window shorter than the stride.

Keras pads max((ceil(n/s)-1)*s + k - n, 0), which is 0 for some lengths and positive for others;
the export wrote auto_pad=SAME_UPPER, and onnxruntime refuses the negative total it computes before
clamping ("padding values must be non-negative") for lengths such as 6 with k=2, s=3, and for a
fixed axis with such a window beside a free strided one (output f: SAME_UPPER covers every axis).
Fixed in gcomp/backends/onnx_ops.py (_needs_dynamic_same / _same_pads: pads computed from Shape,
then Pad and a valid window; average pooling divides by the padded in-bounds count)."""
from gcomp import Input, Model, layers
from model_strategies import randomize_weights

INPUTS = {'seed': 0, 'batch': 2, 'lengths': {'seq_1': 6, 'img_1': 6, 'img_2': 6, 'fix_2': 3}}
OUTPUT_SHAPES = [('-(-seq_1 // 3)', 1), ('-(-seq_1 // 2)', 1), ('-(-seq_1 // 3)', 2),
                 ('-(-img_1 // 2)', '-(-img_2 // 3)', 2), ('-(-img_1 // 3)', '-(-img_2 // 2)', 3), (1, '-(-fix_2 // 2)', 1)]


def build():
    seq = Input(shape=(None, 1), name="seq")
    img = Input(shape=(None, None, 2), name="img")
    fix = Input(shape=(3, None, 1), name="fix")
    a = layers.MaxPooling1D(2, strides=3, padding='same')(seq)
    b = layers.AveragePooling1D(1, strides=2, padding='same')(seq)
    c = layers.Conv1D(2, 2, strides=3, padding='same')(seq)
    d = layers.AveragePooling2D((1, 2), strides=(2, 3), padding='same')(img)
    e = layers.Conv2D(3, (2, 1), strides=(3, 2), padding='same')(img)
    f = layers.MaxPooling2D((2, 2), strides=(3, 2), padding='same')(fix)
    model = Model([seq, img, fix], [a, b, c, d, e, f], name="fuzz")
    randomize_weights(model, seed=0)
    return model
