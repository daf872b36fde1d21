from django.dispatch import Signal

#: Sent after the success of jobs stored together is committed: ``finished``, a list of (job, its outputs).
jobs_succeeded = Signal()

#: Sent after a job's failure is committed: ``job`` (its ``error_code`` and ``error_message`` say why).
job_failed = Signal()

#: Sent after a job's cancellation is committed: ``job``.
job_cancelled = Signal()

#: Sent after the cancellation of jobs cancelled together is committed (``lifecycle.cancel_jobs``): ``jobs``, a list,
#: instead of ``job_cancelled`` for each. A receiver of one listens to both.
jobs_cancelled = Signal()

#: Sent after an erasure of jobs' content is committed (``jobs.erasure.erase_jobs``): ``project`` and ``job_ids``, the
#: jobs it erased (not those it found erased already).
jobs_erased = Signal()
