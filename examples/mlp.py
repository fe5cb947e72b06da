"""The seed's first example: a Sequential MLP and its functional equivalent (64 features -> 10 classes).

Seed fix: `from keras.import layers` is a syntax error; it is `from gcomp import layers` here.
"""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model, Sequential

# Sequential model
seq_model = Sequential()
seq_model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
seq_model.add(layers.Dense(32, activation="relu"))
seq_model.add(layers.Dense(10, activation="softmax"))

# Functional equivalent
input_tensor = Input(shape=(64,))
x = layers.Dense(32, activation="relu")(input_tensor)
x = layers.Dense(32, activation="relu")(x)
output_tensor = layers.Dense(10, activation="softmax")(x)

model = Model(input_tensor, output_tensor)

if __name__ == "__main__":
    model.summary()
    seq_model.summary()
    # Same weights, same predictions: the two definitions are one model.
    seq_model.set_weights(model.get_weights())
    data = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    print(np.abs(model.predict(data) - seq_model.predict(data)).max())
