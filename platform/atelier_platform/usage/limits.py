"""Operator caps on what one job may ask for, on top of each plugin's own schema.

A plugin's schema says what its model can do (an image of up to 1024 x 1024, 100 steps); an
operator may want less on a given fleet (small GPUs, a public demo). Caps are kept per plugin id
and field path, so that the check knows nothing of any plugin:

- ``ATELIER_PLUGIN_LIMITS`` (JSON) sets caps for any plugin: ``{"image": {"input.steps": 30}}``;
- the named settings are shorthands for the built-in plugins' fields (table ``NAMED_CAPS``);
  ``ATELIER_PLUGIN_LIMITS`` wins where both name the same field.

A path's value is compared as a number, or by its length when it is a string or a list; ``[]``
checks each item of a list, ``a*b`` the product of two numbers (width times height). A field that
is absent or empty (``null``: the model's native size) is not checked.

A cap limits what a job asks for: a number the plugin's schema filled in, which neither the caller nor
the project's defaults asked for (the chatbot's 128 new tokens, the image's 25 steps), is lowered to
the cap instead of refusing a request that never named it (``lower_unasked``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from atelier_platform.config import AtelierConfig, get_config, parse_plugin_limits
from atelier_platform.usage.errors import LimitExceeded

#: setting -> {plugin id: [field paths]} for the built-in plugins
NAMED_CAPS: dict[str, dict[str, list[str]]] = {
    "max_prompt_chars": {
        "chatbot": ["input.messages[].content"],
        "image": ["input.prompt", "input.negative_prompt"],
        "recommender_copy": ["input.profile.interests"],
    },
    "max_new_tokens": {"chatbot": ["params.max_new_tokens"]},
    "max_image_pixels": {"image": ["input.width*input.height"]},
    "max_image_steps": {"image": ["input.steps"]},
    "max_image_count": {"image": ["input.count"]},
}


def caps_from(config: AtelierConfig) -> dict[str, dict[str, tuple[float, str]]]:
    """plugin id -> {path: (cap, the setting that set it)}."""
    caps: dict[str, dict[str, tuple[float, str]]] = {}
    for setting, per_plugin in NAMED_CAPS.items():
        value = getattr(config, setting)
        if value is None:
            continue
        for plugin_id, paths in per_plugin.items():
            for path in paths:
                caps.setdefault(plugin_id, {})[path] = (float(value), f"ATELIER_{setting.upper()}")
    for plugin_id, own in parse_plugin_limits(config.plugin_limits).items():
        for path, value in own.items():
            caps.setdefault(plugin_id, {})[path] = (value, "ATELIER_PLUGIN_LIMITS")
    return caps


@lru_cache(maxsize=4)
def _caps(config: AtelierConfig) -> dict[str, dict[str, tuple[float, str]]]:
    return caps_from(config)


def _values(data: Any, parts: list[str], trail: str) -> Iterator[tuple[str, Any]]:
    """(concrete path, value) for every value a path with ``[]`` names."""
    if not parts:
        yield trail, data
        return
    head, rest = parts[0], parts[1:]
    each = head.endswith("[]")
    name = head[:-2] if each else head
    if not isinstance(data, dict) or data.get(name) is None:
        return
    value, here = data[name], f"{trail}.{name}" if trail else name
    if each:
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _values(item, rest, f"{here}.{index}")
    else:
        yield from _values(value, rest, here)


def _set(data: Any, concrete_path: str, value: Any) -> None:
    *parents, last = concrete_path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


def lower_unasked(plugin_id: str, input_data: dict[str, Any], params: dict[str, Any], *, asked_input: dict[str, Any],
                  asked_params: dict[str, Any], config: AtelierConfig | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``input_data`` and ``params`` as validated (the plugin's defaults filled in), with each number over a
    cap that ``asked_input`` / ``asked_params`` (the request, under the project's defaults) do not hold
    lowered to the cap; the same objects when nothing was lowered. ``check`` then judges what was asked."""
    caps = _caps(config or get_config()).get(plugin_id)
    if not caps:
        return input_data, params
    job = {"input": input_data, "params": params}
    asked = {"input": asked_input, "params": asked_params}
    lowered: dict[str, Any] = {}
    for path, (cap, _) in caps.items():
        if "*" in path:  # a product (width * height): its defaults are the model's native size, never over
            continue
        named = {where for where, _ in _values(asked, path.split("."), "")}
        for where, value in _values(job, path.split("."), ""):
            if where not in named and isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
                lowered[where] = math.floor(cap) if isinstance(value, int) else cap
    if not lowered:
        return input_data, params
    job = copy.deepcopy(job)
    for where, value in lowered.items():
        _set(job, where, value)
    return job["input"], job["params"]


def _measure(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (str, list, dict)):
        return float(len(value))
    return None


def _describe(cap: float) -> str:
    return str(int(cap)) if cap == math.floor(cap) else str(cap)


@dataclass(frozen=True)
class Excess:
    """A value of a job over a cap: where (``params.max_new_tokens``; a product's first factor), the cap and the
    setting that set it, what was asked (a string's or list's length), and the message ``check`` gives."""

    where: str
    cap: float
    setting: str
    asked: float
    message: str

    @property
    def cap_shown(self) -> str:
        return _describe(self.cap)


def excesses(plugin_id: str, input_data: dict[str, Any], params: dict[str, Any], *,
             config: AtelierConfig | None = None) -> list[Excess]:
    """Every value of the job over a cap of this server, in the caps' order (none: within them all)."""
    caps = _caps(config or get_config()).get(plugin_id)
    if not caps:
        return []
    job = {"input": input_data, "params": params}
    found: list[Excess] = []
    for path, (cap, setting) in caps.items():
        factors = path.split("*")
        if len(factors) == 1:
            for where, value in _values(job, factors[0].split("."), ""):
                measured = _measure(value)
                if measured is not None and measured > cap:
                    unit = " characters" if isinstance(value, str) else " items" if isinstance(value, (list, dict)) else ""
                    found.append(Excess(where, cap, setting, measured,
                                        f"At most {_describe(cap)}{unit} on this server ({setting}); got {_describe(measured)}."))
        else:
            product, names = 1.0, []
            for factor in factors:
                measures = [_measure(v) for _, v in _values(job, factor.split("."), "")]
                if len(measures) != 1 or measures[0] is None:
                    break
                product *= measures[0]
                names.append(factor)
            else:
                if product > cap:
                    found.append(Excess(names[0], cap, setting, product,
                                        f"{' * '.join(names)} is at most {_describe(cap)} on this server ({setting}); "
                                        f"got {_describe(product)}."))
    return found


def check(plugin_id: str, input_data: dict[str, Any], params: dict[str, Any], *, config: AtelierConfig | None = None) -> None:
    """Raise ``LimitExceeded`` (400, details per field) when the job asks for more than a cap allows."""
    problems: dict[str, list[str]] = {}
    for excess in excesses(plugin_id, input_data, params, config=config):
        problems.setdefault(excess.where, []).append(excess.message)
    if problems:
        raise LimitExceeded("The job asks for more than this server allows.", details=problems)
