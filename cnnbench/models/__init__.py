"""Models composed from YAML: the op registry, the built-in ops, the builder and the zoo's Python API."""

from cnnbench.models.api import ZooError, create_model, list_models, model_spec
from cnnbench.models.builder import ModelBuildError, Network, build_model, count_parameters
from cnnbench.models.outputs import ModelOutput, classification_loss, main_logits
from cnnbench.models.registry import OPS, BuildOptions, OpContext, register_op

__all__ = [
    "OPS", "BuildOptions", "ModelBuildError", "ModelOutput", "Network", "OpContext", "ZooError", "build_model",
    "classification_loss", "count_parameters", "create_model", "list_models", "main_logits", "model_spec",
    "register_op",
]
