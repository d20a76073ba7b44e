"""PyTorch bridge: H-matrix layers, compression baselines at one memory measure, empirical NTK.

Importing this module imports torch; ``import hmat`` alone never does.
"""

from .baselines import (
    METHODS,
    LowRankInt8Linear,
    LowRankLinear,
    QuantLinear,
    compress_layer,
    compress_network,
    csr_nbytes,
    deepcopy_model,
    dense_layer_nbytes,
    densify,
    dynamic_int8,
    effective_weight,
    layer_n_params,
    layer_nbytes,
    model_n_params,
    model_nbytes,
)
from .hlinear import HLinear, replace_linear
from .ntk import empirical_ntk, jacobian, pinn_ntk, relative_change, spectrum

__all__ = [
    "HLinear", "replace_linear", "METHODS", "LowRankLinear", "LowRankInt8Linear",
    "QuantLinear", "compress_layer",
    "compress_network", "csr_nbytes", "deepcopy_model", "dense_layer_nbytes", "densify",
    "dynamic_int8",
    "effective_weight", "layer_n_params", "layer_nbytes", "model_n_params", "model_nbytes",
    "jacobian", "empirical_ntk", "pinn_ntk", "relative_change", "spectrum",
]
