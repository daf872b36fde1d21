from django.dispatch import Signal

#: Sent after a job's success is committed: ``job`` and its ``outputs``.
job_succeeded = Signal()

#: Sent after a job's failure is committed: ``job`` (its ``error_code`` and ``error_message`` say why).
job_failed = Signal()

#: Sent after a job's cancellation is committed: ``job``.
job_cancelled = Signal()
