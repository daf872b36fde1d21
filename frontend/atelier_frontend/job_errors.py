"""Why a job did not succeed, in words for the person who submitted it, and what they can do about it.

A job's ``error_code`` and ``error_message`` are written by the platform, the worker runtime and the plugins
(``PluginError(message, code=...)``) in English, for the API's callers and for whoever debugs the job. The
dashboard shows each code as a translated explanation (what happened, what to do: try again, change the
input, ask an owner) and keeps the code and message at hand, folded away, to quote when asking for help.
A code not known here (a third-party plugin's) gets the general explanation.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

#: What to offer beside the explanation: the job's form filled with its request again.
TRY_AGAIN, CHANGE_INPUT, NOTHING = "try_again", "change_input", "nothing"


@dataclass(frozen=True)
class Explanation:
    what_happened: str
    what_to_do: str
    offer: str  # TRY_AGAIN, CHANGE_INPUT or NOTHING


_ASK_AN_OWNER_TO_CHECK_THE_MODEL = _("Trying again will not help until the model is fixed: ask a project owner to "
                                    "check the model version chosen for this plugin in the project's settings.")

#: Each code the platform (jobs.lifecycle, jobs.submission), the worker runtime (atelier_workers.runtime) and the
#: SDK and built-in plugins write, with (what happened, what to do, what to offer).
EXPLANATIONS = {
    "invalid_input": (_("The plugin could not work with this input."),
                      _("Change the input (the technical details below say what the plugin refused) and submit it "
                        "again."), CHANGE_INPUT),
    "input_blocked": (_("Screening blocked this request: its input breaks the project's safety policy."),
                      _("Reword the parts marked in the input below and submit it again."), CHANGE_INPUT),
    "out_of_memory": (_("The job needed more memory than the worker has, even on its own."),
                      _("Ask for less (a shorter reply, fewer or smaller images) and submit it again, or ask a "
                        "project owner for a larger worker."), CHANGE_INPUT),
    "time_limit": (_("The job ran past its time limit and was stopped."),
                   _("Ask for less (a shorter reply, fewer steps or images) and submit it again."), CHANGE_INPUT),
    "worker_lost": (_("The worker running this job stopped responding, on every attempt."),
                    _("Try again later. If it keeps happening the job may be too large for the worker: ask for less, "
                      "or tell a project owner."), TRY_AGAIN),
    "model_load_failed": (_("The worker could not load the plugin's model."),
                          _("Try again later. If it keeps failing, tell a project owner: the workers page says why."),
                          TRY_AGAIN),
    "model_missing": (_("The plugin's model is not installed on the worker."), _ASK_AN_OWNER_TO_CHECK_THE_MODEL,
                      NOTHING),
    "model_not_found": (_("The model version this project uses for the plugin was not found on the worker."),
                        _ASK_AN_OWNER_TO_CHECK_THE_MODEL, NOTHING),
    "model_error": (_("The plugin's model files are damaged or do not fit the plugin."),
                    _ASK_AN_OWNER_TO_CHECK_THE_MODEL, NOTHING),
    "plugin_unavailable": (_("No worker running now has this plugin installed."),
                           _("Try again later. If it keeps failing, ask a project owner to install the plugin on a "
                             "worker."), TRY_AGAIN),
    "retrieval_failed": (_("The project's knowledge base could not be searched for this reply."),
                         _("Try again in a moment, or submit it without the knowledge base."), TRY_AGAIN),
    "store_failed": (_("The result was made but could not be saved."),
                     _("Try again. If it keeps failing, tell a project owner and quote the technical details below."),
                     TRY_AGAIN),
    "transient_error": (_("A passing problem kept the job from finishing, even after several attempts."),
                        _("Try again in a while."), TRY_AGAIN),
    "plugin_crashed": (_("The plugin stopped with an unexpected error."),
                       _("Try again. If it fails again, tell a project owner and quote the technical details below."),
                       TRY_AGAIN),
    "plugin_contract": (_("The plugin returned a result the platform cannot use: a fault in the plugin."),
                        _("Trying again will not help: tell a project owner and quote the technical details below."),
                        NOTHING),
    "plugin_error": (_("The plugin could not complete this job."),
                     _("The technical details below say why: change the input and submit it again, or ask a project "
                       "owner."), CHANGE_INPUT),
    "cancelled": (_("This job was cancelled: its outputs, if any, were discarded."),
                  _("Submit it again if you still need it."), TRY_AGAIN),
}

#: Any other code: a third-party plugin's own, or one written after this list.
GENERAL = (_("The job failed."), _("Try again. If it fails again, tell a project owner and quote the technical "
                                   "details below."), TRY_AGAIN)


def explain(code: str) -> Explanation:
    """What a job's ``error_code`` means to its submitter, in the page's language."""
    what_happened, what_to_do, offer = EXPLANATIONS.get(code, GENERAL)
    return Explanation(str(what_happened), str(what_to_do), offer)
