from django.dispatch import Signal

#: Sent after an export's end is committed, once per export: ``export_id``. An export ends succeeded (its file stored),
#: failed or cancelled; each way it ends changes its row from unfinished under the row's lock, so one end sends it
#: once, and receivers that must never act twice key on the export's id all the same (the webhook's event id does).
export_finished = Signal()
