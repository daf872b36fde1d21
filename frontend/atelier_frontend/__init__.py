"""The dashboard and the moderation UI (templates, static assets and their views)."""
