"""Atelier's built-in safety checks (no Django): each a ``SafetyCheck`` with a manifest.

Registered through the ``atelier.safety_checks`` entry-point group like third-party checks; see
``atelier_sdk.safety_registry.discover_safety_checks``. Heavy libraries (the profanity model,
NudeNet/onnxruntime) are imported in each check's ``load()``, not here.
"""

from atelier_plugins.safety.blocklist import BlocklistCheck, InvalidBlocklistTerm, compile_blocklist, validate_term
from atelier_plugins.safety.nudity import NudityCheck
from atelier_plugins.safety.personal_data import PersonalDataCheck, mask
from atelier_plugins.safety.profanity import ProfanityCheck
from atelier_plugins.safety.prompt_injection import PromptInjectionCheck

BUILTIN_CHECKS = (BlocklistCheck, ProfanityCheck, PersonalDataCheck, PromptInjectionCheck, NudityCheck)

__all__ = [
    "BUILTIN_CHECKS",
    "BlocklistCheck",
    "InvalidBlocklistTerm",
    "NudityCheck",
    "PersonalDataCheck",
    "ProfanityCheck",
    "PromptInjectionCheck",
    "compile_blocklist",
    "mask",
    "validate_term",
]
