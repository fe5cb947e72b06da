"""Passes: golden IR before/after for each pass, results unchanged in onnxruntime for every pass on
every seed model and on random models, the pass manager's verification, fixpoint and report."""
import numpy as np
import onnxruntime as ort
import pytest

from gcomp import Input, Model, layers
from gcomp.backends.onnx_backend import export_graph
from gcomp.errors import IRVerificationError
from gcomp.ir import print_graph
from gcomp.errors import EmbeddingIndexError, InputDataError
from gcomp.passes import (Report, batch_shared_calls, conv1x1_to_dense, dedupe_weights, eliminate_dead_nodes,
                          fold_dense_chains, fold_embedding_projections, infer_shapes, merge_sibling_dense, optimize,
                          pass_lists, run_passes)

from conftest import load_example
from random_models import random_data, random_model

ALL_PASSES = [eliminate_dead_nodes, conv1x1_to_dense, dedupe_weights, fold_dense_chains, merge_sibling_dense,
              batch_shared_calls, fold_embedding_projections]
SEED_MODELS = ["mlp", "qa_two_inputs", "multi_output", "inception", "residual", "siamese_lstm"]


def graph_of(model):
    return model._current_graph()


def body(graph) -> str:
    """The printed IR without params (their order is incidental), for golden comparisons."""
    return "".join(line.strip() + "\n" for line in print_graph(graph).splitlines()
                   if not line.strip().startswith("param"))


def apply(graph_pass, graph):
    """One pass through the manager: verified, new values typed."""
    return run_passes(graph, [graph_pass])


def run(graph, arrays):
    session = ort.InferenceSession(export_graph(graph, graph.params).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(graph.inputs, arrays)))


# ---- golden before/after --------------------------------------------------------------------------

def test_golden_eliminate_dead_nodes():
    """Lowering takes only the calls between the model's inputs and outputs; dead nodes appear when a
    graph's outputs are narrowed (here by hand, as a deployment that needs fewer outputs would)."""
    x = Input(shape=(4,), name="x")
    kept = layers.Dense(3, name="kept")(x)
    unused = layers.Dense(5, name="unused")(kept)
    seq, h, c = layers.LSTM(2, return_sequences=True, return_state=True, name="rnn")(layers.Reshape((2, 2), name="r")(x))
    g = graph_of(Model(x, [kept, unused, seq])).copy()
    g.outputs = [o for o in g.outputs if o[0] != "unused"]
    assert "%unused = dense" in print_graph(g)
    after = apply(eliminate_dead_nodes, g)
    assert body(after) == (
        'graph "functional" {\n'
        "input %x: float32[batch, 4]\n"
        "%kept = dense(%x, kernel=%kept/kernel, bias=%kept/bias) {activation='linear', units=3, use_bias=True} -> float32[batch, 3]\n"
        "%r = reshape(%x) {target_shape=(2, 2)} -> float32[batch, 2, 2]\n"
        "%rnn = lstm(%r, kernel=%rnn/kernel, recurrent_kernel=%rnn/recurrent_kernel, bias=%rnn/bias) {activation='tanh', "
        "go_backwards=False, recurrent_activation='sigmoid', return_sequences=True, return_state=False, units=2, "
        "use_bias=True} -> float32[batch, 2, 2]\n"
        "output kept = %kept\n"
        "output rnn = %rnn\n"
        "}\n")
    assert "unused/kernel" not in after.params
    assert any("removed op unused" in n for n in after.notes)
    assert any("dropped the unused LSTM states" in n for n in after.notes)


def test_golden_eliminate_dead_nodes_trims_gru_state():
    """A GRU's returned state that nobody reads is dropped; a reader of h when the output is h
    already reads the output."""
    x = Input(shape=(5, 2), name="x")
    seq, h = layers.GRU(3, return_sequences=True, return_state=True, name="seq")(x)
    last, h2 = layers.GRU(2, return_state=True, reset_after=False, name="last")(seq)
    after = apply(eliminate_dead_nodes, graph_of(Model(x, layers.concatenate([last, h2], name="cat"))))
    assert body(after) == (
        'graph "functional" {\n'
        "input %x: float32[batch, 5, 2]\n"
        "%seq = gru(%x, kernel=%seq/kernel, recurrent_kernel=%seq/recurrent_kernel, bias=%seq/bias) "
        "{activation='tanh', go_backwards=False, recurrent_activation='sigmoid', reset_after=True, "
        "return_sequences=True, return_state=False, units=3, use_bias=True} -> float32[batch, 5, 3]\n"
        "%last = gru(%seq, kernel=%last/kernel, recurrent_kernel=%last/recurrent_kernel, bias=%last/bias) "
        "{activation='tanh', go_backwards=False, recurrent_activation='sigmoid', reset_after=False, "
        "return_sequences=False, return_state=False, units=2, use_bias=True} -> float32[batch, 2]\n"
        "%cat = concat(%last, %last) {axis=-1} -> float32[batch, 4]\n"
        "output cat = %cat\n"
        "}\n")
    assert any("dropped the unused GRU states h" in n for n in after.notes)


def test_batch_shared_calls_stacks_a_shared_gru():
    gru = layers.GRU(3, name="enc")
    a, b = Input(shape=(6, 2), name="a"), Input(shape=(6, 2), name="b")
    before = graph_of(Model([a, b], layers.concatenate([gru(a), gru(b)], name="cat")))
    after = apply(batch_shared_calls, before)
    assert [after.node(n)["op"] for n in after.nodes("op")].count("gru") == 1
    arrays = [np.random.default_rng(k).normal(size=(4, 6, 2)).astype(np.float32) for k in (1, 2)]
    np.testing.assert_allclose(run(after, arrays)[0], run(before, arrays)[0], rtol=1e-5, atol=1e-6)


def test_golden_conv1x1_to_dense():
    x = Input(shape=(5, 5, 3), name="x")
    model = Model(x, layers.Conv2D(4, 1, activation="relu", name="pw")(x))
    after = apply(conv1x1_to_dense, graph_of(model))
    assert "%pw = dense(%x, kernel=%pw/kernel, bias=%pw/bias) {activation='relu', units=4, use_bias=True} " \
           "-> float32[batch, 5, 5, 4]" in print_graph(after)
    assert after.params["pw/kernel"].shape == (3, 4)
    strided = Model(x, layers.Conv2D(4, 1, strides=2, name="st")(x))
    assert body(apply(conv1x1_to_dense, graph_of(strided))) == body(graph_of(strided))  # stride 2: not a dense


def test_golden_fold_dense_chains():
    x = Input(shape=(6,), name="x")
    y = layers.Dense(4, name="d2", activation="relu")(layers.Dense(5, name="d1")(x))
    after = apply(fold_dense_chains, graph_of(Model(x, y)))
    assert body(after) == (
        'graph "functional" {\n'
        "input %x: float32[batch, 6]\n"
        "%d1+d2 = dense(%x, kernel=%d1+d2/kernel, bias=%d1+d2/bias) {activation='relu', units=4, use_bias=True} "
        "-> float32[batch, 4]\n"
        "output d2 = %d1+d2\n"
        "}\n")
    bottleneck = Model(x, layers.Dense(40, name="wide")(layers.Dense(1, name="narrow")(x)))
    assert "%narrow = dense" in print_graph(apply(fold_dense_chains, graph_of(bottleneck)))  # folding would grow it


def test_golden_merge_sibling_dense():
    x = Input(shape=(6,), name="x")
    a, b = layers.Dense(2, activation="relu", name="a")(x), layers.Dense(3, activation="relu", name="b")(x)
    c = layers.Dense(4, activation="tanh", name="c")(x)
    after = apply(merge_sibling_dense, graph_of(Model(x, [a, b, c])))
    assert body(after) == (
        'graph "functional" {\n'
        "input %x: float32[batch, 6]\n"
        "%c = dense(%x, kernel=%c/kernel, bias=%c/bias) {activation='tanh', units=4, use_bias=True} -> float32[batch, 4]\n"
        "%a+b = dense(%x, kernel=%a+b/kernel, bias=%a+b/bias) {activation='relu', units=5, use_bias=True} -> float32[batch, 5]\n"
        "%a+b/split = split(%a+b) {axis=-1, sizes=(2, 3)} -> (float32[batch, 2], float32[batch, 3])\n"
        "output a = %a+b/split\n"
        "output b = %a+b/split:1\n"
        "output c = %c\n"
        "}\n")


def test_golden_dedupe_weights():
    x = Input(shape=(3,), name="x")
    model = Model(x, [layers.Dense(2, name="p")(x), layers.Dense(2, name="q")(x)])
    model.get_layer("q").set_weights(model.get_layer("p").get_weights())
    after = apply(dedupe_weights, graph_of(model))
    assert sorted(after.params) == ["p/bias", "p/kernel"]
    assert "%q = dense(%x, kernel=%p/kernel, bias=%p/bias)" in print_graph(after)


def test_golden_batch_shared_calls():
    lstm = layers.LSTM(3, name="enc")
    a, b = Input(shape=(7, 2), name="a"), Input(shape=(7, 2), name="b")
    after = apply(batch_shared_calls, graph_of(Model([a, b], layers.concatenate([lstm(a), lstm(b)], name="cat"))))
    assert body(after) == (
        'graph "functional" {\n'
        "input %a: float32[batch, 7, 2]\n"
        "input %b: float32[batch, 7, 2]\n"
        "%enc+enc#1/stacked = stack_batch(%a, %b) -> float32[2*batch, 7, 2]\n"
        "%enc+enc#1 = lstm(%enc+enc#1/stacked, kernel=%enc/kernel, recurrent_kernel=%enc/recurrent_kernel, "
        "bias=%enc/bias) {activation='tanh', go_backwards=False, recurrent_activation='sigmoid', return_sequences=False, "
        "return_state=False, units=3, use_bias=True} -> float32[2*batch, 3]\n"
        "%enc+enc#1/unstacked = unstack_batch(%enc+enc#1) {parts=2} -> (float32[batch, 3], float32[batch, 3])\n"
        "%cat = concat(%enc+enc#1/unstacked, %enc+enc#1/unstacked:1) {axis=-1} -> float32[batch, 6]\n"
        "output cat = %cat\n"
        "}\n")


def test_batch_shared_calls_leaves_independent_lengths_alone():
    """The seed's siamese LSTM reads two sentences of independent lengths: stacking them would need
    padding and per-sample lengths, so the cost rule keeps two calls."""
    g = graph_of(load_example("siamese_lstm")["model"])
    assert body(apply(batch_shared_calls, g)) == body(g)


def test_golden_fold_embedding_projections():
    x = Input(shape=(None,), dtype="int32", name="x")
    emb = layers.Embedding(30, 8, name="emb")(x)
    y = layers.Conv1D(4, 3, strides=2, activation="relu", name="conv")(emb)
    g = graph_of(Model(x, y))
    after = apply(fold_embedding_projections, g)
    assert body(after) == (
        'graph "functional" {\n'
        "input %x: int32[batch, x_len]\n"
        "%emb+conv = embedding_conv(%x, tables=%emb+conv/tables) {activation='relu', dilation_rate=1, embedding='emb', "
        "strides=2} "
        "-> float32[batch, (x_len - 3) // 2 + 1, 4]\n"
        "output conv = %emb+conv\n"
        "}\n")
    table, kernel, bias = g.params["emb/embeddings"], g.params["conv/kernel"], g.params["conv/bias"]
    want = np.stack([table.astype(np.float64) @ kernel[k] for k in range(3)])
    want[0] += bias
    np.testing.assert_allclose(after.params["emb+conv/tables"], want, rtol=1e-5, atol=1e-6)  # float32 sums
    assert any('layers "emb", "conv"' in n and "3 lookup table(s) of 30x4" in n for n in after.notes)


def test_fold_embedding_projections_keeps_a_shared_embedding_and_skips_costly_tables():
    x = Input(shape=(6,), dtype="int32", name="x")
    emb = layers.Embedding(30, 8, name="emb")(x)
    dense = layers.Dense(5, activation="softmax", name="head")(emb)
    wide = layers.Conv1D(16, 3, name="wide")(emb)  # 3 taps x 16 filters = 6x the table: too costly
    same = layers.Conv1D(2, 3, padding="same", name="same")(emb)  # padded windows read no row: left alone
    after = apply(fold_embedding_projections, graph_of(Model(x, [dense, wide, same])))
    text = print_graph(after)
    assert "%emb+head = embedding_conv(%x, tables=%emb+head/tables) {activation='softmax', dilation_rate=1, " \
           "embedding='emb', strides=1} -> float32[batch, 6, 5]" in text
    assert "%emb = embedding" in text and "%wide = conv(%emb" in text and "%same = conv(%emb" in text


FOLDABLE = [  # (kernel size, strides, dilation, use_bias, activation)
    (1, 1, 1, True, "linear"), (1, 3, 1, False, "relu"), (3, 1, 1, True, "tanh"), (4, 2, 1, True, "relu"),
    (3, 1, 3, False, "sigmoid"), (5, 1, 2, True, "softmax"),
]


@pytest.mark.parametrize("kernel_size,strides,dilation,use_bias,act", FOLDABLE)
def test_fold_embedding_projections_keeps_results(kernel_size, strides, dilation, use_bias, act):
    x = Input(shape=(None,), dtype="int32", name="x")
    emb = layers.Embedding(40, 6, name="emb")(x)
    conv = layers.Conv1D(4, kernel_size, strides=strides, dilation_rate=dilation, use_bias=use_bias,
                         activation=act, bias_initializer="random_normal", name="conv")(emb)
    dense = layers.Dense(3, activation=act, bias_initializer="random_normal", name="dense")(
        layers.Embedding(40, 6, name="emb2")(x))
    g = graph_of(Model(x, [conv, dense]))
    after = apply(fold_embedding_projections, g)
    assert [after.node(n)["op"] for n in after.nodes("op")] == ["embedding_conv", "embedding_conv"]
    from gcomp.backends.numpy_backend import compile_graph
    for length in (17, 12):
        arrays = [np.random.default_rng(length).integers(0, 40, (3, length)).astype(np.int32)]
        expected = run(g, arrays)
        for got_onnx, got_numpy, e in zip(run(after, arrays), compile_graph(after)(after.params, arrays), expected):
            assert got_onnx.shape == e.shape
            np.testing.assert_allclose(got_onnx, e, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_numpy, e, rtol=1e-5, atol=1e-6)


def test_folded_lookup_in_onnx_refuses_sequences_shorter_than_the_window():
    """Where the Conv1D would refuse the input, so does the folded ONNX graph (it has no Conv)."""
    x = Input(shape=(None,), dtype="int32", name="x")
    model = Model(x, layers.Conv1D(2, 3, strides=2, name="conv")(layers.Embedding(10, 4, name="emb")(x)))
    proto = model.to_onnx(device="cpu")
    assert "Conv" not in [n.op_type for n in proto.graph.node]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 3), np.int32)})[0].shape == (1, 1, 2)
    with pytest.raises(Exception, match="emb\\+conv/tap0/indices_of_3_steps_or_more"):
        session.run(None, {"x": np.ones((1, 2), np.int32)})


def test_folded_lookup_names_the_embedding_on_a_bad_index_and_the_conv_on_a_short_input():
    x = Input(shape=(4,), dtype="int32", name="words")
    model = Model(x, layers.Conv1D(2, 2, name="conv")(layers.Embedding(10, 3, name="emb")(x)))
    after = apply(fold_embedding_projections, graph_of(model))
    from gcomp.backends.numpy_backend import compile_graph
    with pytest.raises(EmbeddingIndexError, match=r'Embedding layer "emb" got index 10 at position \(0, 2\) of '
                                                  r'input "words"'):
        compile_graph(after)(after.params, [np.array([[1, 2, 10, 3]], np.int32)])
    with pytest.raises(InputDataError, match=r'layer "conv": input of spatial shape \(1,\) is smaller than its '
                                             r'window \(2,\)'):
        compile_graph(after)(after.params, [np.array([[1]], np.int32)])


# ---- results unchanged ----------------------------------------------------------------------------

SEED_INPUTS = {"qa_two_inputs": 20, "multi_output": 300, "siamese_lstm": 9}


def seed_data(model, name):
    from test_onnx import random_inputs
    return random_inputs(model, 3, SEED_INPUTS.get(name, 0))


@pytest.mark.parametrize("name", SEED_MODELS)
@pytest.mark.parametrize("graph_pass", ALL_PASSES, ids=lambda p: p.__name__)
def test_every_pass_keeps_seed_model_results(name, graph_pass):
    model = load_example(name)["model"]
    g = graph_of(model)
    arrays = seed_data(model, name)
    after = run_passes(g, [graph_pass, infer_shapes])
    for before_out, after_out in zip(run(g, arrays), run(after, arrays)):
        np.testing.assert_allclose(after_out, before_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_every_level_keeps_random_model_results(seed):
    model = random_model(seed)
    g = graph_of(model)
    arrays = random_data(model)
    expected = run(g, arrays)
    for level in (1, 2):
        for device in ("cuda", "cpu"):
            after = optimize(g, level, device)
            for e, got in zip(expected, run(after, arrays)):
                np.testing.assert_allclose(got, e, rtol=1e-4, atol=1e-5)
            # and the NumPy backend agrees on the optimized graph
            from gcomp.backends.numpy_backend import compile_graph
            for e, got in zip(expected, compile_graph(after)(after.params, arrays)):
                np.testing.assert_allclose(got, e, rtol=1e-4, atol=1e-5)


def test_optimized_inception_has_six_convolutions_and_two_transposes():
    proto = load_example("inception")["model"].to_onnx(opt_level=2, device="cuda")
    ops = [n.op_type for n in proto.graph.node]
    assert sum(op in ("Conv", "MatMul", "Gemm") for op in ops) == 6
    assert ops.count("Transpose") == 2
    assert sum(op in ("Conv", "MatMul", "Gemm") for op in
               (n.op_type for n in load_example("inception")["model"].to_onnx(opt_level=0).graph.node)) == 7


# ---- the manager -----------------------------------------------------------------------------------

def test_levels_and_training_flags():
    assert pass_lists(0) == ([infer_shapes], [])
    once, repeated = pass_lists(2, "cpu")
    assert merge_sibling_dense not in repeated and batch_shared_calls not in repeated
    assert merge_sibling_dense in pass_lists(2, "cuda")[1]
    assert fold_embedding_projections in repeated and fold_embedding_projections not in pass_lists(2, "cuda")[1]
    assert eliminate_dead_nodes.keeps_training_params and batch_shared_calls.keeps_training_params
    assert not fold_dense_chains.keeps_training_params and not merge_sibling_dense.keeps_training_params
    assert not dedupe_weights.keeps_training_params  # zero biases equal at init must train apart
    for p in ALL_PASSES + [infer_shapes]:
        assert p.__doc__ and p.__doc__.strip().splitlines()[0]
    with pytest.raises(ValueError, match="opt_level"):
        pass_lists(3)


def test_fixpoint_and_report():
    x = Input(shape=(6,), name="x")
    y = layers.Dense(3, name="d3")(layers.Dense(4, name="d2")(layers.Dense(5, name="d1")(x)))
    report = Report()
    after = optimize(graph_of(Model(x, y)), 2, "cuda", report)
    assert [n for n in after.nodes("op")] == ["d1+d2+d3"] or len(list(after.nodes("op"))) == 1
    folds = [r for r in report.records if r.name == "fold_dense_chains" and r.changed]
    assert folds and report.rounds >= 2
    text = report.text()
    assert "fold_dense_chains" in text and 'layers "d1", "d2"' in text and "total" in text


def test_manager_names_the_pass_and_node_that_broke_the_graph():
    def lose_a_parameter(graph):
        """Broken on purpose: drops a parameter's value."""
        g = graph.copy()
        g.params.pop(next(iter(g.params)))
        g.notes.append("dropped")
        return g
    x = Input(shape=(3,), name="x")
    with pytest.raises(IRVerificationError, match=r"after pass lose_a_parameter: IR node 'dense/kernel'"):
        run_passes(graph_of(Model(x, layers.Dense(2)(x))), [lose_a_parameter])


def test_cli_opt_levels_and_explain(tmp_path):
    from test_cli import EXAMPLES, run_cli
    out = tmp_path / "inc.onnx"
    run = run_cli("build", str(EXAMPLES / "inception.py"), "-o", str(out), "--explain")
    assert run.returncode == 0, run.stderr
    assert "merge_sibling_dense" in run.stdout and "conv2d_1, conv2d_4" in run.stdout
    run0 = run_cli("build", str(EXAMPLES / "inception.py"), "-o", str(out), "--opt-level", "0", "--explain")
    assert "merge_sibling_dense" not in run0.stdout
    cpu = run_cli("build", str(EXAMPLES / "inception.py"), "-o", str(out), "--device", "cpu", "--explain")
    assert "merge_sibling_dense" not in cpu.stdout and "conv1x1_to_dense" in cpu.stdout
