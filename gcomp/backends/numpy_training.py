"""The generated training module: forward, test_step and train_step rendered from the model's
inference, evaluation and training graphs, with the NumPy training runtime. `fit` runs this module;
`gcomp build --target numpy` writes it out."""
from __future__ import annotations

from gcomp.autodiff import add_losses, compiled_losses, training_graph
from gcomp.backends.numpy_backend import TRAINING_RUNTIME, render_module
from gcomp.ir.graph import ValueRef

FORWARD_DOC = ("Inference: `params` maps PARAM_SHAPES' names to arrays, `inputs` is a list in INPUT_NAMES\n"
               "    order. Returns the outputs in OUTPUT_NAMES order.")
TEST_DOC = ("Evaluation: inputs are CONFIG['test_inputs']; returns each loss (CONFIG['losses'] order), then\n"
            "    the predictions.")
TRAIN_DOC = ("One training step: forward, losses, backward and the optimizer update (in place, through\n"
             "    ctx.apply_gradients). Inputs are CONFIG['train_inputs']; returns each loss, the predictions,\n"
             "    then the optimizer's step count.")


def render_training_module(model, compile_config: dict | None) -> str:
    """The model's program: inference only if it was never compiled (or has no loss)."""
    graph = model._current_graph()
    outputs = [name for name, _ in graph.outputs]
    config = {
        "model": model.name,
        "inputs": list(graph.inputs),
        "input_dtypes": [graph.value_type(ValueRef(n)).dtype for n in graph.inputs],
        "outputs": outputs,
        "output_shapes": {name: tuple(t.shape) for name, t in zip(outputs, model.outputs)},
        "losses": [], "metrics": {}, "optimizer": None, "trainable": [],
    }
    functions = [("forward", graph, FORWARD_DOC)]
    losses = (compile_config or {}).get("losses") or []
    if losses:
        specs, loss_scale = compiled_losses(compile_config)
        train, layout = training_graph(graph, specs, loss_scale)
        test, test_layout = add_losses(graph, specs)
        config.update(losses=losses, metrics=compile_config["metrics"],
                      weighted_metrics=compile_config.get("weighted_metrics", {}), optimizer=compile_config["optimizer"],
                      trainable=layout.trainable, train_inputs=list(train.inputs), test_inputs=list(test.inputs),
                      regularized=layout.regularization is not None)
        functions += [("test_step", test, TEST_DOC), ("train_step", train, TRAIN_DOC)]
    title = f'Program of model "{model.name}" ({"training and inference" if losses else "inference only"})'
    return render_module(title, functions, TRAINING_RUNTIME, config)

