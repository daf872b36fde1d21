"""Database backends of Atelier's own (Django's ``ENGINE`` setting names them)."""
