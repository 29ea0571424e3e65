"""Numba kernels: the recurrent loops of each cell, forward and backward through time.

Every kernel is private, takes only arrays and scalars, and writes into arrays it is given
(no allocation in the time loop). Layout is time-major: (T, B, ...), so each step is contiguous.
Each cell's file (lstm.py, gru.py, rnn.py, leaky.py) ends with the cell interface that
charlm.nn.cells lists: plain functions that run its kernels on a layer's RecurrentCache, its
row step and its compiled sampling loop.
"""
