from django.dispatch import Signal

#: Sent after a run's end is committed, once per run: ``run_id``. A run has ended when it is succeeded, failed or
#: cancelled and no worker is still scoring it (an image run ends when its scores are stored, or scoring is given
#: up). Each way a run ends sends it from the transaction that changed the run under its row lock, so one end sends
#: it once; receivers that must never act twice key on the run id all the same (the webhook's event id does).
evaluation_run_finished = Signal()

#: Sent after a due watch's start failed and the failure was committed, for the first failure of a streak only (the
#: next run the watch starts ends it; ``watch.start_due``): ``schedule_id``, ``code`` and ``message`` (why, as the
#: watch's ``last_skip`` says it) and ``failed_at`` (the tick's time, the streak's start: one streak, one event id).
evaluation_watch_failed_to_start = Signal()
