"""The network: the model, its recurrent layers and their Numba kernels, the output softmax."""
