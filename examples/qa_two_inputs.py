"""The seed's two-input question-answering model (text and question -> answer over 500 words).

Seed fixes: Embedding's arguments are (input_dim, output_dim), i.e. (vocabulary size, vector size);
the seed reverses them (Embedding(64, text_vocabulary_size)), which gcomp reports as an index out of
range at predict time. The seed also assigns the question embedding to `embedded_text` and then
reads the undefined `embedded_question`; it is named `embedded_question` here.
"""
import numpy as np

from gcomp import Input, layers
from gcomp.models import Model

text_vocabulary_size = 10000
question_vocabulary_size = 10000
answer_vocabulary_size = 500

text_input = Input(shape=(None,), dtype="int32", name="text")
embedded_text = layers.Embedding(text_vocabulary_size, 64)(text_input)
encoded_text = layers.LSTM(32)(embedded_text)

question_input = Input(shape=(None,), dtype="int32", name="question")
embedded_question = layers.Embedding(question_vocabulary_size, 32)(question_input)
encoded_question = layers.LSTM(16)(embedded_question)

concatenated = layers.concatenate([encoded_text, encoded_question], axis=-1)
answer = layers.Dense(answer_vocabulary_size, activation="softmax")(concatenated)

model = Model([text_input, question_input], answer)

if __name__ == "__main__":
    model.summary()
    num_samples, max_length = 8, 100
    rng = np.random.default_rng(0)
    text = rng.integers(1, text_vocabulary_size, size=(num_samples, max_length))
    question = rng.integers(1, question_vocabulary_size, size=(num_samples, max_length))
    by_list = model.predict([text, question])
    by_name = model.predict({"text": text, "question": question})
    print(by_list.shape, np.abs(by_list - by_name).max())
