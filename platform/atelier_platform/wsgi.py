import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")
application = get_wsgi_application()

# Each web process gets ready before it serves, not in its first requests, which would all wait: it
# loads the safety checks every submission is screened with (their models: about 1 s for the built-in
# ones), imports its views (the URL configuration: about 0.1 s) and, with Redis, subscribes for the
# finish notices that wake waiting requests.
from django.urls import get_resolver  # noqa: E402

from atelier_platform.jobs.waiting import start_listening  # noqa: E402
from atelier_platform.moderation.checks import get_safety_checks  # noqa: E402

get_safety_checks()
get_resolver().url_patterns  # noqa: B018 (reading it imports the views)
start_listening()
