"""Atelier's built-in plugins, registered through the ``atelier.plugins`` entry-point group."""
