"""The layer zoo, with Keras's class names."""
from gcomp.frontend.layer import Layer
from gcomp.frontend.layers.conv import Conv1D, Conv2D, Convolution1D, Convolution2D
from gcomp.frontend.layers.core import (Activation, Dense, Dropout, Embedding, Flatten, LeakyReLU, ReLU, Reshape,
                                        Softmax)
from gcomp.frontend.layers.input_layer import Input, InputLayer
from gcomp.frontend.layers.merge import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add,
                                         average, concatenate, maximum, minimum, multiply, subtract)
from gcomp.frontend.layers.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D,
                                           GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAvgPool1D,
                                           GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPooling1D,
                                           GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from gcomp.frontend.layers.recurrent import GRU, LSTM, Bidirectional

__all__ = [
    "Layer", "Input", "InputLayer", "Dense", "Embedding", "Activation", "ReLU", "LeakyReLU", "Softmax", "Dropout",
    "Flatten", "Reshape",
    "Conv1D", "Conv2D", "Convolution1D", "Convolution2D",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "MaxPool1D", "MaxPool2D",
    "AvgPool1D", "AvgPool2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
    "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
    "concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum", "LSTM", "GRU", "Bidirectional",
]
