"""The seed's shared-LSTM model: one LSTM layer reads two sentences; its weights serve both.

Seed fixes: `lstm(left_input))` has one parenthesis too many, and the snippet stops at
`predictionar`; the prediction head below (a sigmoid over the merged encodings) completes it.
"""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model

lstm = layers.LSTM(32)  # one layer instance, called twice: shared weights

left_input = Input(shape=(None, 128), name="left")
left_output = lstm(left_input)

right_input = Input(shape=(None, 128), name="right")
right_output = lstm(right_input)

merged = layers.concatenate([left_output, right_output], axis=-1)
predictions = layers.Dense(1, activation="sigmoid", name="similarity")(merged)

model = Model([left_input, right_input], predictions)

if __name__ == "__main__":
    model.summary()
    rng = np.random.default_rng(0)
    left = rng.normal(size=(4, 100, 128)).astype("float32")
    right = rng.normal(size=(4, 100, 128)).astype("float32")
    print(model.predict([left, right]).shape)  # (4, 1)
