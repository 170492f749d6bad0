"""Models composed from YAML: the op registry, the built-in ops and the builder."""

from cnnbench.models.builder import ModelBuildError, Network, build_model, count_parameters
from cnnbench.models.outputs import ModelOutput, classification_loss, main_logits
from cnnbench.models.registry import OPS, BuildOptions, OpContext, register_op

__all__ = [
    "OPS", "BuildOptions", "ModelBuildError", "ModelOutput", "Network", "OpContext", "build_model",
    "classification_loss", "count_parameters", "main_logits", "register_op",
]
