"""ONNX export: onnxruntime against the NumPy reference for every layer and every seed model, at
several batch sizes and sequence lengths; checker validity; names and dim_params; layouts."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gcomp import Input, Model, Sequential, layers
from gcomp.backends.onnx_backend import IR_VERSION, OPSET
from gcomp.frontend.data import embedding_index_limits

from conftest import load_example

SEED_MODELS = ["mlp", "qa_two_inputs", "multi_output", "inception", "residual", "siamese_lstm"]


def random_inputs(model, batch: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for t, name in zip(model.inputs, model.input_names):
        shape = [batch] + [length if d is None else d for d in t.shape[1:]]
        if t.dtype.startswith("int"):
            limit = min(dim for _, dim in embedding_index_limits(model._inference_graph())[name])
            arrays.append(rng.integers(0, limit, size=shape).astype(t.dtype))
        else:
            arrays.append(rng.normal(size=shape).astype(t.dtype))
    return arrays


def run_onnx(model, arrays):
    session = ort.InferenceSession(model.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(model.input_names, arrays)))


def assert_onnx_matches_numpy(model, arrays, rtol=1e-5, atol=1e-5):
    expected = model.predict(arrays, backend="numpy", batch_size=len(arrays[0]))
    expected = expected if isinstance(expected, list) else [expected]
    got = run_onnx(model, arrays)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_model_is_valid_onnx_with_names_and_dim_params(name):
    model = load_example(name)["model"]
    proto = model.to_onnx()
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    assert [i.name for i in proto.graph.input] == model.input_names
    assert [o.name for o in proto.graph.output] == model.output_names
    for info, t in zip(proto.graph.input, model.inputs):
        dims = [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
        assert dims[0] == "batch"
        for d, k in zip(dims[1:], t.shape[1:]):
            assert d == (k if k is not None else f"{info.name}_len")


@pytest.mark.parametrize("name, lengths", [
    ("mlp", [0]), ("qa_two_inputs", [1, 7, 100]), ("multi_output", [300, 500]),
    ("inception", [0]), ("residual", [0]), ("siamese_lstm", [1, 13, 100]),
])
@pytest.mark.parametrize("batch", [1, 5])
def test_seed_model_onnx_equals_numpy(name, lengths, batch):
    model = load_example(name)["model"]
    for length in lengths:
        assert_onnx_matches_numpy(model, random_inputs(model, batch, length))


def one_layer(layer, shape, dtype="float32"):
    x = Input(shape=shape, dtype=dtype, name="x")
    return Model(x, layer(x))


ACTIVATIONS = ["relu", "sigmoid", "softmax", "tanh", "linear", "elu", "selu", "softplus", "softsign",
               "swish", "silu", "gelu", "hard_sigmoid", "exponential", "relu6", "leaky_relu", "mish",
               "log_softmax", "hard_silu"]

LAYER_CASES = {
    **{f"dense_{a}": (lambda a=a: layers.Dense(6, activation=a), (5,)) for a in ACTIVATIONS},
    "dense_no_bias_rank3": (lambda: layers.Dense(4, use_bias=False), (None, 5)),
    "dense_rank3": (lambda: layers.Dense(4, activation="relu"), (3, 5)),
    "conv1d_valid": (lambda: layers.Conv1D(4, 3), (None, 3)),
    "conv1d_same_strided": (lambda: layers.Conv1D(4, 4, strides=3, padding="same"), (None, 3)),
    "conv1d_same_dilated": (lambda: layers.Conv1D(4, 3, padding="same", dilation_rate=2), (None, 3)),
    "conv1d_causal": (lambda: layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"), (None, 3)),
    "conv2d_valid_strided": (lambda: layers.Conv2D(3, (3, 2), strides=(2, 1)), (9, 7, 2)),
    "conv2d_same_strided": (lambda: layers.Conv2D(3, 3, strides=2, padding="same", activation="relu"), (9, 7, 2)),
    "conv2d_same_free_dims": (lambda: layers.Conv2D(3, 3, strides=2, padding="same"), (None, None, 2)),
    "conv2d_same_dilated": (lambda: layers.Conv2D(3, 3, padding="same", dilation_rate=(2, 3), use_bias=False), (9, 7, 2)),
    "conv2d_softmax": (lambda: layers.Conv2D(5, 1, activation="softmax"), (4, 4, 2)),
    "maxpool1d": (lambda: layers.MaxPooling1D(3, strides=2, padding="same"), (None, 3)),
    "avgpool1d_same": (lambda: layers.AveragePooling1D(3, strides=2, padding="same"), (None, 3)),
    "maxpool2d": (lambda: layers.MaxPooling2D(), (9, 7, 2)),
    "avgpool2d_same": (lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (9, 7, 2)),
    "avgpool2d_valid": (lambda: layers.AveragePooling2D((2, 3)), (9, 7, 2)),
    "gmax1d": (lambda: layers.GlobalMaxPooling1D(), (None, 3)),
    "gavg1d_keepdims": (lambda: layers.GlobalAveragePooling1D(keepdims=True), (None, 3)),
    "gmax2d_keepdims": (lambda: layers.GlobalMaxPooling2D(keepdims=True), (5, 4, 3)),
    "gavg2d": (lambda: layers.GlobalAveragePooling2D(), (5, 4, 3)),
    "flatten": (lambda: layers.Flatten(), (5, 4, 3)),
    "reshape": (lambda: layers.Reshape((-1, 6)), (5, 4, 3)),
    "dropout": (lambda: layers.Dropout(0.5), (5,)),
    "activation_softmax": (lambda: layers.Activation("softmax"), (4, 5)),
    "softmax_layer": (lambda: layers.Softmax(), (4, 5)),
    "leaky_relu_layer": (lambda: layers.LeakyReLU(), (4, 5)),
    "relu_clipped": (lambda: layers.ReLU(max_value=1.5), (4, 5)),
    "relu_threshold": (lambda: layers.ReLU(threshold=0.25), (4, 5)),
    "relu_every_option": (lambda: layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.25), (4, 5)),
    "lstm_last": (lambda: layers.LSTM(4), (None, 3)),
    "gru_last": (lambda: layers.GRU(4), (None, 3)),
    "gru_sequences_state_backwards": (lambda: layers.GRU(4, return_sequences=True, return_state=True,
                                                         go_backwards=True), (None, 3)),
    "gru_reset_before_no_bias_relu": (lambda: layers.GRU(4, reset_after=False, use_bias=False, activation="relu"),
                                      (None, 3)),
    "bidirectional_gru_ave": (lambda: layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="ave"),
                              (None, 3)),
    "bidirectional_sequences": (lambda: layers.Bidirectional(layers.LSTM(4, return_sequences=True)), (None, 3)),
    "bidirectional_states_sum": (lambda: layers.Bidirectional(layers.LSTM(4, return_state=True), merge_mode="sum"),
                                 (None, 3)),
    "lstm_sequences": (lambda: layers.LSTM(4, return_sequences=True), (None, 3)),
    "lstm_state": (lambda: layers.LSTM(4, return_state=True), (None, 3)),
    "lstm_sequences_state_backwards": (lambda: layers.LSTM(4, return_sequences=True, return_state=True,
                                                           go_backwards=True), (None, 3)),
    "lstm_backwards_no_bias_relu": (lambda: layers.LSTM(4, go_backwards=True, use_bias=False,
                                                        activation="relu"), (None, 3)),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
@pytest.mark.parametrize("batch, length", [(1, 5), (3, 9)])
def test_layer_onnx_equals_numpy(case, batch, length):
    make, shape = LAYER_CASES[case]
    model = one_layer(make(), shape)
    assert_onnx_matches_numpy(model, random_inputs(model, batch, length))


def test_relu_options_between_convolutions_stay_channels_first():
    """The relu op is elementwise: between two convolutions it runs in their NCHW layout, so the
    file has layout changes only at the graph's edges."""
    x = Input(shape=(6, 6, 3), name="x")
    h = layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.25)(layers.Conv2D(4, 3, padding="same")(x))
    model = Model(x, layers.Conv2D(2, 3)(layers.LeakyReLU(0.2)(h)))
    assert_onnx_matches_numpy(model, random_inputs(model, 3, 0))
    ops = [node.op_type for node in model.to_onnx().graph.node]
    assert ops.count("Transpose") == 2 and ops.count("LeakyRelu") == 1


def test_stacked_bidirectional_lstms_stay_time_major():
    """Between LSTMs, a Bidirectional's flip and merge run on the time-major sequences: the only
    transpose moves the token indices; the LSTMs return no state nobody reads."""
    tokens = Input(shape=(None,), dtype="int32", name="tokens")
    x = layers.Embedding(50, 4)(tokens)
    x = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="ave")(x)
    model = Model(tokens, layers.Bidirectional(layers.LSTM(2))(x))
    assert_onnx_matches_numpy(model, random_inputs(model, 3, 7))
    ops = [node.op_type for node in model.to_onnx().graph.node]
    assert ops.count("Transpose") == 1 and ops.count("LSTM") == 6 and ops.count("Squeeze") == 6


def test_embedding_with_int32_and_int64_indices():
    for dtype in ("int32", "int64"):
        model = one_layer(layers.Embedding(20, 3), (None,), dtype)
        assert_onnx_matches_numpy(model, [np.array([[0, 19, 5], [7, 7, 1]], dtype)])


def test_int_input_into_dense_is_cast():
    model = one_layer(layers.Dense(3), (4,), "int32")
    assert_onnx_matches_numpy(model, [np.arange(8, dtype="int32").reshape(2, 4)])


@pytest.mark.parametrize("merge", ["concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum"])
def test_merges_in_both_layouts(merge):
    x = Input(shape=(6, 5, 2), name="x")
    a = layers.Conv2D(4, 3, padding="same")(x)       # channels-first inside the ONNX graph
    b = layers.Conv2D(4, 1)(x)
    c = layers.Dense(4)(x) if merge != "subtract" else None  # stays channels-last
    fn = getattr(layers, merge)
    convs = fn([a, b])
    mixed = fn([a, c]) if c is not None else fn([b, a])
    model = Model(x, [convs, mixed])
    assert_onnx_matches_numpy(model, random_inputs(model, 2, 0))


def test_three_way_merges_and_broadcast():
    x, y, z = Input(shape=(3, 4), name="x"), Input(shape=(1, 4), name="y"), Input(shape=(3, 1), name="z")
    model = Model([x, y, z], [layers.add([x, y, z]), layers.average([x, y, z]), layers.multiply([x, y, z]),
                              layers.maximum([x, y, z]), layers.concatenate([x, x, x], axis=1)])
    assert_onnx_matches_numpy(model, random_inputs(model, 2, 0))


def count_ops(proto, op_type):
    return sum(1 for n in proto.graph.node if n.op_type == op_type)


def test_convolution_chains_transpose_only_at_the_edges():
    for name in ("inception", "residual"):
        proto = load_example(name)["model"].to_onnx()
        assert count_ops(proto, "Transpose") == 2, name


def test_lstm_chains_stay_time_major():
    """Embedding -> LSTM -> LSTM -> LSTM: the embedding gathers with transposed indices and each LSTM's
    sequence feeds the next as it comes; the one float Transpose makes the second's, a graph output,
    batch-major."""
    words = Input(shape=(None,), dtype="int32", name="words")
    seq = layers.LSTM(4, return_sequences=True, name="first")(layers.Embedding(20, 3, name="emb")(words))
    backwards = layers.LSTM(3, return_sequences=True, go_backwards=True, name="second")(seq)
    model = Model(words, [backwards, layers.LSTM(2, name="third")(backwards)])
    proto = model.to_onnx()
    transposed = [n.input[0] for n in proto.graph.node if n.op_type == "Transpose"]
    assert transposed == ["words", "second/Y_squeezed"]
    assert_onnx_matches_numpy(model, random_inputs(model, 3, 7))


def test_shared_layer_weights_are_stored_once():
    proto = load_example("siamese_lstm")["model"].to_onnx()
    assert count_ops(proto, "LSTM") == 2
    lstm_inputs = {tuple(n.input[1:4]) for n in proto.graph.node if n.op_type == "LSTM"}
    assert len(lstm_inputs) == 1
    assert len(proto.graph.initializer) == len({i.name for i in proto.graph.initializer})


def test_lstm_gates_reordered_for_onnx():
    """Keras gate blocks i, f, c, o become ONNX's i, o, f, c: checked on the initializers directly."""
    model = one_layer(layers.LSTM(2), (None, 1))
    kernel = np.arange(8, dtype="float32").reshape(1, 8)  # blocks i=[0,1] f=[2,3] c=[4,5] o=[6,7]
    model.set_weights([kernel, np.zeros((2, 8), "float32"), np.arange(8, dtype="float32")])
    w = {i.name: onnx.numpy_helper.to_array(i) for i in model.to_onnx().graph.initializer}
    assert w["lstm/kernel/onnx_W"][0, :, 0].tolist() == [0, 1, 6, 7, 2, 3, 4, 5]
    assert w["lstm/kernel/onnx_B"][0].tolist() == [0, 1, 6, 7, 2, 3, 4, 5] + [0] * 8


def test_export_needs_no_prior_call_and_keeps_output_names(tmp_path):
    x = Input(shape=(4,), name="features")
    model = Model(x, [layers.Dense(2, name="score")(x), layers.Dense(3, name="label")(x)])
    path = tmp_path / "m.onnx"
    model.export(path, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["score", "label"]
    assert [i.name for i in session.get_inputs()] == ["features"]
    with pytest.raises(ValueError, match="format='onnx' only"):
        model.export(tmp_path / "m.pb", format="tf_saved_model")


def test_predict_defaults_to_onnx_and_follows_weight_changes():
    model = one_layer(layers.Dense(2, name="d"), (3,))
    x = np.ones((2, 3), "float32")
    before = model.predict(x)
    kernel, bias = model.get_weights()
    model.set_weights([kernel * 2, bias + 1])
    after = model.predict(x)
    np.testing.assert_allclose(after, x @ (kernel * 2) + bias + 1, rtol=1e-6)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(model.predict(x, backend="numpy"), after, rtol=1e-6)


def test_output_that_is_also_an_input_and_repeated_outputs():
    x = Input(shape=(3,), name="x")
    h = layers.Dense(2, name="h")(x)
    model = Model(x, [x, h, h])
    assert model.output_names == ["x_1", "h", "h_1"]
    proto = model.to_onnx()
    onnx.checker.check_model(proto, full_check=True)
    out = run_onnx(model, [np.ones((1, 3), "float32")])
    np.testing.assert_array_equal(out[0], np.ones((1, 3)))
    np.testing.assert_array_equal(out[1], out[2])


def test_nested_and_sequential_models_export():
    inner = Sequential([Input(shape=(None,), dtype="int32"), layers.Embedding(30, 4), layers.LSTM(3)], name="enc")
    a, b = Input(shape=(None,), dtype="int32", name="a"), Input(shape=(None,), dtype="int32", name="b")
    model = Model([a, b], layers.subtract([inner(a), inner(b)]))
    assert_onnx_matches_numpy(model, random_inputs(model, 3, 6))
