"""``accounts.members``: the rules the settings page and the API share, where only the service can hold them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from atelier_platform.accounts import members
from atelier_platform.accounts.models import Membership
from atelier_platform.accounts.roles import Capability, Role
from tests.factories import MembershipFactory, ProjectFactory

EVERY = frozenset(Capability.values)


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """Each demotion locks the owners before it counts them: the second waits for the first to commit, then finds
    itself the last owner (409 last_owner) rather than both going and leaving a project nobody manages, and the
    two wait for each other without a deadlock (the owners are locked in one order, before the member)."""
    for _attempt in range(5):
        project = ProjectFactory()
        first = MembershipFactory(project=project, role=Role.OWNER)
        second = MembershipFactory(project=project, role=Role.OWNER)
        start = threading.Barrier(2)
        outcomes = []

        def demote(who, by):
            try:
                start.wait()
                members.change_role(project, who, f"user:{by.user_id}", role=Role.EDITOR, granted_by=EVERY)
                outcomes.append("demoted")
            except members.MembershipConflict as refusal:
                outcomes.append(refusal.code)
            except Exception as error:  # a deadlock, a lock refused: what must not happen
                outcomes.append(repr(error))
            finally:
                connection.close()

        threads = [threading.Thread(target=demote, args=(first, second)),
                   threading.Thread(target=demote, args=(second, first))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["demoted", "last_owner"], outcomes
        assert Membership.objects.filter(project=project, role=Role.OWNER).count() == 1


@pytest.mark.django_db
def test_a_caller_changes_only_members_whose_role_it_could_give(project):
    owner = MembershipFactory(project=project, role=Role.OWNER)
    MembershipFactory(project=project, role=Role.OWNER)
    viewer = MembershipFactory(project=project, role=Role.VIEWER)
    reader = frozenset({"admin", "jobs:read"})
    with pytest.raises(members.RoleNotGrantable) as refused:
        members.remove(project, owner, "key:x", granted_by=reader)
    assert refused.value.role == "owner" and "reviews:write" in refused.value.missing
    with pytest.raises(members.RoleNotGrantable):
        members.change_role(project, viewer, "key:x", role=Role.REVIEWER, granted_by=reader)
    members.remove(project, viewer, "key:x", granted_by=reader)
    assert set(Membership.objects.filter(project=project).values_list("role", flat=True)) == {"owner"}
    assert members.change_role(project, owner, "user:1", role=Role.VIEWER, granted_by=EVERY).membership.role == Role.VIEWER
