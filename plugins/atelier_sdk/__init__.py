"""The Atelier plugin SDK: everything a model plugin needs, and nothing of Django.

    from atelier_sdk import Plugin, Manifest, Modality, ResourceClass, OutputItem

See README.md, "Writing a plugin".
"""

from atelier_sdk.editing import EDITABLE, editable, editable_paths, is_editable, protected_changes
from atelier_sdk.errors import (InvalidPlugin, JobCancelled, PluginError, TransientPluginError, input_error,
                                 is_out_of_memory)
from atelier_sdk.manifest import Manifest, Modality, ResourceClass
from atelier_sdk.plugin import (Artifact, GenerationRequest, ItemResult, NoParams, OutputItem, Plugin, Regeneration,
                                RunContext, require_model_dir)
from atelier_sdk.retrieval import Passage, Retriever
from atelier_sdk.registry import ENTRY_POINT_GROUP, PluginRecord, PluginRegistry, validate_plugin_class

__all__ = [
    "EDITABLE",
    "ENTRY_POINT_GROUP",
    "Artifact",
    "GenerationRequest",
    "InvalidPlugin",
    "ItemResult",
    "JobCancelled",
    "Manifest",
    "Modality",
    "NoParams",
    "OutputItem",
    "Passage",
    "Plugin",
    "PluginError",
    "PluginRecord",
    "PluginRegistry",
    "Regeneration",
    "ResourceClass",
    "Retriever",
    "RunContext",
    "TransientPluginError",
    "editable",
    "editable_paths",
    "input_error",
    "is_editable",
    "is_out_of_memory",
    "protected_changes",
    "require_model_dir",
    "validate_plugin_class",
]
