import factory
from django.contrib.auth import get_user_model

from atelier_platform.accounts.models import Membership, Project
from atelier_platform.accounts.roles import Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.EDITOR


def colleagues(*users, role=Role.VIEWER) -> Project:
    """A project of its own that each of ``users`` is a member of: people who share it may add each other to another
    project by username (``accounts.members.may_add_directly``)."""
    project = ProjectFactory()
    for user in users:
        MembershipFactory(project=project, user=user, role=role)
    return project
