"""Atelier's Django project: settings, URLs, the Celery app and the domain apps.

Imported as ``atelier_platform`` so that nothing shadows the standard library's ``platform``.
"""
