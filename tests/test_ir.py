"""The IR: golden printer output, verify() invariants, shape inference, the pass manager, codegen."""
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gcomp import Input, Model, layers
from gcomp.backends.numpy_backend import render_inference_module
from gcomp.codegen import template_dir
from gcomp.errors import IRVerificationError, ShapeError
from gcomp.frontend.lowering import lower
from gcomp.ir import Graph, ValueRef, print_graph, verify
from gcomp.ops import OPS
from gcomp.passes import infer_shapes, run_passes


def small_model():
    tokens = Input(shape=(None,), dtype="int32", name="tokens")
    e = layers.Embedding(50, 8, name="emb")(tokens)
    shared = layers.Dense(4, activation="relu", name="proj")
    a = shared(e)
    b = shared(layers.Conv1D(8, 3, padding="valid", name="conv")(e))
    pooled = layers.concatenate([layers.GlobalMaxPooling1D(name="gmax")(a),
                                 layers.GlobalAveragePooling1D(name="gavg")(b)], name="cat")
    return Model(tokens, layers.Dense(2, activation="softmax", name="head")(pooled), name="small")


GOLDEN = """\
graph "small" {
  input %tokens: int32[batch, tokens_len]
  param %emb/embeddings: float32[50, 8]
  param %proj/kernel: float32[8, 4]
  param %proj/bias: float32[4]
  param %conv/kernel: float32[3, 8, 8]
  param %conv/bias: float32[8]
  param %head/kernel: float32[8, 2]
  param %head/bias: float32[2]
  %emb = embedding(%tokens, embeddings=%emb/embeddings) {input_dim=50, output_dim=8} -> float32[batch, tokens_len, 8]
  %proj = dense(%emb, kernel=%proj/kernel, bias=%proj/bias) {activation='relu', units=4, use_bias=True} -> float32[batch, tokens_len, 4]
  %gmax = global_max_pool(%proj) {keepdims=False, rank=1} -> float32[batch, 4]
  %conv = conv(%emb, kernel=%conv/kernel, bias=%conv/bias) {activation='linear', dilation_rate=(1,), filters=8, kernel_size=(3,), padding='valid', rank=1, strides=(1,), use_bias=True} -> float32[batch, tokens_len - 2, 8]
  %proj#1 = dense(%conv, kernel=%proj/kernel, bias=%proj/bias) {activation='relu', units=4, use_bias=True} -> float32[batch, tokens_len - 2, 4]
  %gavg = global_avg_pool(%proj#1) {keepdims=False, rank=1} -> float32[batch, 4]
  %cat = concat(%gmax, %gavg) {axis=-1} -> float32[batch, 8]
  %head = dense(%cat, kernel=%head/kernel, bias=%head/bias) {activation='softmax', units=2, use_bias=True} -> float32[batch, 2]
  output head = %head
}
"""


def test_printer_golden_with_shared_layer_and_symbolic_dims():
    assert print_graph(small_model()._inference_graph()) == GOLDEN


def test_lowering_one_op_per_call_and_shared_params():
    graph, variables = lower(small_model())
    ops = list(graph.nodes("op"))
    assert ops.count("proj") == 1 and ops.count("proj#1") == 1
    assert graph.op_params("proj") == graph.op_params("proj#1") == {"kernel": "proj/kernel", "bias": "proj/bias"}
    assert sorted(variables) == sorted(graph.params)
    # before inference, op outputs have no type
    assert graph.node("proj")["outputs"] == [None]


def test_infer_shapes_is_pure():
    graph, _ = lower(small_model())
    before = print_graph(graph)
    inferred = infer_shapes(graph)
    assert print_graph(graph) == before
    assert str(inferred.value_type(ValueRef("conv"))) == "float32[batch, tokens_len - 2, 8]"


def test_symbol_names_for_several_free_dims_and_fixed_batch():
    x = Input(shape=(None, None, 3), batch_size=4, name="img")
    m = Model(x, layers.Conv2D(2, 3, strides=2, name="c")(x))
    g = m._inference_graph()
    assert str(g.value_type(ValueRef("img"))) == "float32[4, img_d1, img_d2, 3]"
    assert str(g.value_type(ValueRef("c"))) == "float32[4, (img_d1 - 3) // 2 + 1, (img_d2 - 3) // 2 + 1, 2]"


def _tiny_graph() -> Graph:
    g = Graph("tiny")
    x = g.add_input("x", (None, 3), "float32")
    k = g.add_param("d/kernel", np.zeros((3, 2), np.float32), role="kernel", layer="d")
    b = g.add_param("d/bias", np.zeros((2,), np.float32), role="bias", layer="d")
    (y,) = g.add_op("d", "dense", [x], {"kernel": k, "bias": b}, {"units": 2, "activation": "linear", "use_bias": True})
    g.add_output("d", y)
    return g


def test_verify_accepts_a_good_graph():
    assert verify(infer_shapes(_tiny_graph())) is not None


@pytest.mark.parametrize("breakage, message", [
    (lambda g: g.nx.add_edge("d/bias", "x", port=0, src_port=0, type=None), "input node has incoming edges"),
    (lambda g: g.params.pop("d/bias"), "no value in graph.params"),
    (lambda g: g.params.__setitem__("d/bias", np.zeros((3,), np.float32)), "param value is float32[3]"),
    (lambda g: g.node("d").__setitem__("op", "no_such_op"), "unknown op kind 'no_such_op'"),
    (lambda g: g.node("d")["attrs"].__setitem__("use_bias", False), "reads params ('kernel',), has ('kernel', 'bias')"),
    (lambda g: g.add_output("d", ValueRef("d")), "duplicate output names"),
    (lambda g: g.add_output("e", ValueRef("d", 3)), "refers to missing value %d:3"),
])
def test_verify_names_the_broken_node(breakage, message):
    g = _tiny_graph()
    breakage(g)
    with pytest.raises(IRVerificationError, match=re.escape(message)):
        verify(g)


def test_verify_finds_cycles_and_port_gaps():
    g = _tiny_graph()
    g.nx.add_edge("d", "d", port=5, src_port=0, type=None)
    with pytest.raises(IRVerificationError, match="cycle"):
        verify(g)
    g = _tiny_graph()
    key = next(k for u, v, k in g.nx.edges(keys=True) if u == "d/bias")
    g.nx.edges["d/bias", "d", key]["port"] = 7
    with pytest.raises(IRVerificationError, match=r"IR node 'd': input ports are \[0, 1, 7\]"):
        verify(g)


def test_pass_manager_names_the_pass_that_broke_the_graph():
    def drop_bias_value(graph):
        """A broken pass: forgets a parameter's value."""
        g = graph.copy()
        g.params.pop("d/bias")
        return g

    with pytest.raises(IRVerificationError, match="after pass drop_bias_value: IR node 'd/bias'"):
        run_passes(_tiny_graph(), [infer_shapes, drop_bias_value])


def test_shape_error_in_the_ir_pass_names_the_op_node():
    g = _tiny_graph()
    g.params["d/kernel"] = np.zeros((5, 2), np.float32)
    g.node("d/kernel")["outputs"] = [type(g.node("x")["outputs"][0])((5, 2), "float32")]
    with pytest.raises(ShapeError, match=r'op "d" \(dense\): input\'s last dim is 3 but the kernel expects 5'):
        infer_shapes(g)


def test_every_op_has_a_numpy_template_and_a_doc():
    for name, op in OPS.items():
        assert (template_dir() / "numpy" / "ops" / f"{name}.py.j2").is_file(), name
        assert op.doc, f"op {name} has no docstring"


def test_codegen_is_deterministic():
    import gcomp
    texts = []
    for _ in range(2):
        gcomp.utils.clear_session()
        graph = small_model()._inference_graph()
        texts.append((print_graph(graph), render_inference_module(graph)))
    assert texts[0] == texts[1]


def test_generated_module_runs_standalone_with_only_numpy(tmp_path):
    model = small_model()
    (tmp_path / "small_forward.py").write_text(render_inference_module(model._inference_graph()))
    params = model._param_values()
    np.savez(tmp_path / "params.npz", **{k.replace("/", "|"): v for k, v in params.items()})
    x = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], np.int32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent("""
        import sys
        sys.modules["gcomp"] = None  # the module must not need gcomp
        import numpy as np
        import small_forward
        p = {k.replace("|", "/"): v for k, v in np.load("params.npz").items()}
        out = small_forward.forward(p, [np.load("x.npy")])
        np.save("y.npy", out[0])
        try:
            small_forward.forward(p, [np.full((1, 3), 50, np.int32)])
        except IndexError as e:
            print("raised", type(e).__name__)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "raised EmbeddingIndexError" in run.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x), rtol=1e-6, atol=1e-7)
