"""Text model utilities shared by the built-in text plugins (no Django)."""
