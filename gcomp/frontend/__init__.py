"""The Keras-style front end: symbolic tensors, layers, Model and Sequential."""
