"""The NumPy reference implementation: the specification every backend is checked against.

``rnn`` holds the vanilla RNN's equations and ``lstm`` and ``gru`` those of the gated
cells; ``stack`` builds deep and bidirectional networks from them, and ``kernels`` adapts
them to the kernel contract shared by all backends (see ``fastrnn.backends``).
"""
from .rnn import (activation, activation_derivative, bptt, cross_entropy, input_term,
                  log_softmax, loss_and_output_grad, rnn_forward, sgd_update, squared_error)

__all__ = ["activation", "activation_derivative", "bptt", "cross_entropy", "input_term",
           "log_softmax", "loss_and_output_grad", "rnn_forward", "sgd_update",
           "squared_error"]
