"""What gcomp says about each mistake in the seed notes (run: python examples/seed_mistakes.py).

Python's own mistakes (syntax errors, undefined names) surface when `gcomp build`/`summary` runs the
model file: one line naming the file and line. Model mistakes surface where the layer is called or
where the data meets the model, naming the layer, the shapes or the index.
"""
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from gcomp import Input, layers
from gcomp.errors import GcompError
from gcomp.model_file import load_model
from gcomp.models import Model


def model_file_error(source: str) -> str:
    """The one-line error `gcomp summary` prints for a model file with this source."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.py"
        path.write_text(textwrap.dedent(source))
        try:
            load_model(path)
        except GcompError as e:
            return str(e).replace(str(path), "model.py")
    return "no error"


def reversed_embedding() -> str:
    """Embedding(64, 10000): 64 rows for indices up to 9,999. Keras-JAX silently clamps; gcomp raises."""
    text_input = Input(shape=(None,), dtype="int32", name="text")
    embedded_text = layers.Embedding(64, 10000, name="text_embedding")(text_input)
    model = Model(text_input, layers.GlobalAveragePooling1D()(embedded_text))
    text = np.random.default_rng(0).integers(1, 10000, size=(2, 100))
    try:
        model.predict(text)
    except GcompError as e:
        return str(e)
    return "no error"


def inception_valid_padding() -> str:
    """The seed's Inception branches with the default padding "valid": 16x16 against 15x15."""
    x = Input(shape=(32, 32, 64))
    branch_a = layers.Conv2D(128, 1, activation="relu", strides=2)(x)
    branch_b = layers.Conv2D(128, 1, activation="relu")(x)
    branch_b = layers.Conv2D(128, 3, activation="relu", strides=2)(branch_b)
    try:
        layers.concatenate([branch_a, branch_b], axis=-1)
    except GcompError as e:
        return str(e)
    return "no error"


MISTAKES = {
    "`from keras.import layers`": lambda: model_file_error("from gcomp.import layers\n"),
    "Embedding arguments reversed": reversed_embedding,
    "`embedded_question` never defined": lambda: model_file_error("""\
        from gcomp import Input, layers
        question_input = Input(shape=(None,), dtype='int32', name='question')
        embedded_text = layers.Embedding(10000, 32)(question_input)
        encoded_question = layers.LSTM(16)(embedded_question)
        """),
    "Inception with padding 'valid'": inception_valid_padding,
    "`x` never defined in the Inception snippet": lambda: model_file_error("""\
        from gcomp import layers
        branch_a = layers.Conv2D(128, 1, activation='relu', strides=2)(x)
        """),
    "`lstm(left_input))`": lambda: model_file_error("""\
        from gcomp import Input, layers
        lstm = layers.LSTM(32)
        left_input = Input(shape=(None, 128))
        left_output = lstm(left_input))
        """),
    "`predictionar`, the truncated last line": lambda: model_file_error("predictionar\n"),
}

if __name__ == "__main__":
    for what, run in MISTAKES.items():
        print(f"{what}:\n    {run()}\n")
