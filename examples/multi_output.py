"""The seed's three-output model: posts -> age (regression), income (10 groups), gender (binary)."""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model

vocabulary_size = 50000
num_income_groups = 10

posts_input = Input(shape=(None,), dtype="int32", name="posts")
# Seed fix: Embedding(input_dim=vocabulary_size, output_dim=256); the seed reverses the arguments.
embedded_posts = layers.Embedding(vocabulary_size, 256)(posts_input)

x = layers.Conv1D(128, 5, activation="relu")(embedded_posts)
x = layers.MaxPooling1D(5)(x)
x = layers.Conv1D(256, 5, activation="relu")(x)
x = layers.Conv1D(256, 5, activation="relu")(x)
x = layers.MaxPooling1D(5)(x)
x = layers.Conv1D(256, 5, activation="relu")(x)
x = layers.Conv1D(256, 5, activation="relu")(x)
x = layers.GlobalMaxPooling1D()(x)
x = layers.Dense(128, activation="relu")(x)

age_prediction = layers.Dense(1, name="age")(x)
income_prediction = layers.Dense(num_income_groups, activation="softmax", name="income")(x)
gender_prediction = layers.Dense(1, activation="sigmoid", name="gender")(x)

model = Model(posts_input, [age_prediction, income_prediction, gender_prediction])

if __name__ == "__main__":
    model.summary()
    posts = np.random.default_rng(0).integers(1, vocabulary_size, size=(4, 500))
    age, income, gender = model.predict(posts)
    print(age.shape, income.shape, gender.shape)
