from django.dispatch import Signal

#: Sent after a job's success is committed: ``job`` and its ``outputs``.
job_succeeded = Signal()
