"""How the shared Redis cache stores values: JSON, never pickle.

Django's Redis cache pickles what it stores and unpickles what it reads, so anyone able to write one key
to the Redis server (a neighbour on an unauthenticated Redis, a leaked password) would run code in every
web process on its next read. The broker already carries JSON only (``celery_app``); with this, nothing
read from Redis is ever unpickled. The cache holds counters and numbers (quota figures): integers stay
plain, as Django's own serializer keeps them, so that INCR works on them; a value that is not JSON reads
as missing.
"""

from __future__ import annotations

import json


class JSONSerializer:
    def dumps(self, value):
        if type(value) is int:  # not bool: Redis's INCR and DECR work on the plain number
            return value
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except ValueError:  # not ours (a planted pickle, another program's bytes): as if absent
            return None
