"""Words the dashboard shows that come from elsewhere (status names from the models, roles) or
that its JavaScript shows: marked here so that they are translated like the templates."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

WORDS = {
    # job statuses and review states, as the models name them
    "Queued": _("Queued"), "Running": _("Running"), "Succeeded": _("Succeeded"), "Failed": _("Failed"),
    "Cancelled": _("Cancelled"), "Blocked": _("Blocked"), "Pending review": _("Pending review"),
    "Approved": _("Approved"), "Rejected": _("Rejected"), "Released after screening": _("Released after screening"),
    "Blocked by screening": _("Blocked by screening"),
    # review modes and review decisions, as the moderation models name them
    "Review before release": _("Review before release"),
    "Release after screening, audit after": _("Release after screening, audit after"),
    "Approve": _("Approve"), "Reject": _("Reject"), "Edit and approve": _("Edit and approve"),
    "Ask for regeneration": _("Ask for regeneration"),
    # API key scopes, as accounts.roles.Capability describes them
    "Read jobs, outputs and plugins": _("Read jobs, outputs and plugins"), "Submit and cancel jobs": _("Submit and cancel jobs"),
    "See the review queue": _("See the review queue"), "Claim and decide reviews": _("Claim and decide reviews"),
    "Manage the project: members, keys, policies": _("Manage the project: members, keys, policies"),
    "Manage webhook endpoints and see their deliveries": _("Manage webhook endpoints and see their deliveries"),
    "Erase jobs' and conversations' content for good": _("Erase jobs' and conversations' content for good"),
    # webhook delivery statuses (the others are job words below)
    "pending": _("pending"),
    # roles
    "owner": _("owner"), "editor": _("editor"), "reviewer": _("reviewer"), "viewer": _("viewer"),
    # timeline steps (audit actions are shown with spaces for underscores)
    "created": _("created"), "started": _("started"), "succeeded": _("succeeded"), "failed": _("failed"),
    "cancelled": _("cancelled"), "blocked": _("blocked"), "input blocked": _("input blocked"),
    "output screened": _("output screened"),
    "lease claimed": _("lease claimed"), "lease renewed": _("lease renewed"), "lease released": _("lease released"),
    "review approve": _("review approve"), "review reject": _("review reject"), "review edit": _("review edit"),
    "review regenerate": _("review regenerate"), "approval recorded": _("approval recorded"),
    # the project's own changes, in the settings page's audit log
    "policy changed": _("policy changed"), "blocklist imported": _("blocklist imported"),
    "allowlist imported": _("allow list imported"), "blocklist terms removed": _("blocklist terms removed"),
    "allowlist entries removed": _("allow list entries removed"),
    "plugin configured": _("plugin configured"), "api key created": _("API key created"),
    "api key revoked": _("API key revoked"), "api key renamed": _("API key renamed"), "member added": _("member added"), "member removed": _("member removed"),
    "member role changed": _("member role changed"), "webhook created": _("webhook created"),
    "invitation created": _("invitation created"),
    "invitation revoked": _("invitation revoked"), "invitation accepted": _("invitation accepted"),
    "webhook updated": _("webhook updated"), "webhook deleted": _("webhook deleted"),
    "webhook secret rotated": _("webhook secret rotated"), "webhook disabled": _("webhook disabled"),
    "webhook delivery retried": _("webhook delivery retried"),
    "api key changed": _("API key changed"), "quota changed": _("quota changed"),
    "knowledge document created": _("knowledge document created"), "knowledge document updated": _("knowledge document updated"),
    "knowledge document reindexed": _("knowledge document reindexed"), "knowledge document deleted": _("knowledge document deleted"),
    "reference set created": _("reference set created"), "reference set changed": _("reference set changed"),
    "reference set deleted": _("reference set deleted"), "evaluation started": _("evaluation started"),
    # changes made in the Django admin
    "project renamed": _("project renamed"), "job deleted": _("job deleted"),
    # erasures (jobs.erasure): an owner's, an API key's, or the content retention's
    "job erased": _("content erased"), "conversation erased": _("conversation erased"),
    # who took data out (exports.trail): an export in the background asked for and downloaded, a streaming one sent
    "export requested": _("export requested"), "export downloaded": _("export downloaded"),
    "export streamed": _("export streamed"), "export cancelled": _("export cancelled"),
    "blocklist entry changed": _("blocklist entry changed"),
    # worker states, as fleet.models names them (and "lost", which the platform shows for a silent one)
    "starting": _("starting"), "ready": _("ready"), "busy": _("busy"), "unhealthy": _("unhealthy"),
    "stopped": _("stopped"), "lost": _("lost"),
}


def js_text() -> dict[str, str]:
    """Strings the dashboard's scripts show, in the request's language."""
    return {
        "status": {key: str(WORDS[label]) for key, label in (
            ("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
            ("cancelled", "Cancelled"), ("blocked", "Blocked"))},
        "approved": str(_("Approved.")),
        "second_needed": str(_("Approved: recorded; a second reviewer must confirm.")),
        "rejected": str(_("Rejected")),
        "edited": str(_("Edited and approved.")),
        "skipped": str(_("Skipped.")),
        "empty": str(_("Nothing to review. Checking again every few seconds.")),
        "empty_filtered": str(_("Nothing to review with these filters. Checking again every few seconds.")),
        "skipped_again": str(_("Nothing else is left: back to the items you skipped.")),
        "queue_empty": str(_("Queue empty")),
        "lease_over": str(_("Your lease ran out: another reviewer may take this item. Extend the lease to keep it, or press "
                             "n for the next one.")),
        "lease_until": str(_("until %(time)s")),
        "lease_extended": str(_("Lease extended: yours until %(time)s.")),
        "load_failed": str(_("Could not load the next item:")),
        "press_n_to_retry": str(_("Press n to try again.")),
        "lease_lapsed": str(_("Not saved: your lease on this item ran out. Extend the lease to keep it, or press n for "
                              "the next one.")),
        "lease_taken": str(_("Another reviewer took this item after your lease ran out: press n for the next one.")),
        "already_decided": str(_("This item was already decided: press n for the next one.")),
        "content_erased": str(_("This item's content was erased: there is nothing left to review. Press n for the next "
                                "one.")),
        "own_content": str(_("You submitted this job: another reviewer must approve it. You may reject it or "
                             "regenerate it.")),
        "bad_json": str(_("Not valid JSON:")),
        "editable_fields": str(_("You may change %(fields)s; the rest records how this output was made and stays as it is.")),
        "nothing_editable": str(_("Nothing in this output can be edited: it records how it was made. Approve, reject or "
                                  "regenerate it instead.")),
        "not_editable": str(_("Not saved: these fields record how the output was made and cannot be edited; put them "
                              "back as they were: %(fields)s")),
        "bulk_done": str(_("Approved without review:")),
        "regenerated": str(_("Sent back: a new job is generating.")),
        "see_new_job": str(_("See the new job")),
        "unreachable": str(_("The server could not be reached: check the connection and try again.")),
    }
