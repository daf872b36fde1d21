"""Webhooks: projects subscribe URLs to events; deliveries are signed (Standard Webhooks) and retried."""
