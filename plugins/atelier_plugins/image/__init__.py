"""The built-in text-to-image plugin (``atelier_plugins.image.plugin:ImagePlugin``) and its demo model.

- ``plugin``: schemas and the plugin class (no torch at import: the web process reads the schemas);
- ``pipeline``: loading any diffusers text-to-image pipeline directory and rendering batches;
- ``png``: PNG files with generation metadata and the AI-generated label, and ``read_png_metadata``;
- ``demo``: ``prepare_demo_model`` trains the small digits model offline; ``evaluate_demo`` scores it.
"""

from atelier_plugins.image.png import is_labelled_ai_generated, read_png_metadata

__all__ = ["is_labelled_ai_generated", "read_png_metadata"]
