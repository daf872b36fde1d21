from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from atelier_platform.accounts.models import Membership
from atelier_platform.jobs.models import Job


@login_required
def home(request):
    """The signed-in person's projects and their most recent jobs."""
    memberships = Membership.objects.filter(user=request.user).select_related("project")
    recent = (
        Job.objects.filter(project__memberships__user=request.user)
        .select_related("project")
        .order_by("-created_at")[:20]
    )
    return render(request, "atelier_frontend/home.html", {"memberships": memberships, "recent_jobs": recent})
