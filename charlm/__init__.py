"""charlm: train, sample and score recurrent language models on the CPU."""

__version__ = "0.1.0"
