"""Knowledge-base documents, conversations, and output file downloads."""

from __future__ import annotations

import re

from django.db.models import Count
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.access import parent_in_project
from atelier_platform.api.filters import KnowledgeDocumentFilter
from atelier_platform.api.idempotency import idempotent
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.pagination import NewestFirstCursorPagination, SourceIdCursorPagination, ThreadCursorPagination
from atelier_platform.api.schema import IDEMPOTENCY_PARAMETER, error_responses
from atelier_platform.api.serializers import (
    ConversationMessageSerializer,
    ConversationSerializer,
    ConversationSummarySerializer,
    KnowledgeDocumentCreateSerializer,
    KnowledgeDocumentSerializer,
)
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.conversations.services import with_erasure, with_turn_counts
from atelier_platform.jobs import erasure
from atelier_platform.jobs.models import WITHHELD_REVIEW_STATES, OutputFile
from atelier_platform.knowledge import services as knowledge
from atelier_platform.knowledge.models import KnowledgeDocument

CONVERSATION_ID = OpenApiParameter("conversation_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
PAGE_SIZE_PARAMETER = OpenApiParameter(
    "page_size", OpenApiTypes.INT, description="How many of the latest turns to show (default 50, at most 200).")


class KnowledgeDocumentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Documents the chatbot answers from. Posting a known ``source_id`` again updates it."""

    required_capabilities = {
        "list": Capability.JOBS_READ,
        "retrieve": Capability.JOBS_READ,
        "create": Capability.ADMIN,
        "destroy": Capability.ADMIN,
        "reindex": Capability.ADMIN,
    }
    serializer_class = KnowledgeDocumentSerializer
    lookup_value_converter = "uuid"
    pagination_class = SourceIdCursorPagination
    filterset_class = KnowledgeDocumentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return KnowledgeDocument.objects.none()
        return KnowledgeDocument.objects.filter(project=self.request.access.project).annotate(chunk_count=Count("chunks"))

    @extend_schema(responses={200: KnowledgeDocumentSerializer(many=True), **error_responses(400, 403)},
                   summary="Knowledge documents by source_id (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: KnowledgeDocumentSerializer, **error_responses(403, 404)})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(responses={204: None, **error_responses(403, 404)})
    def destroy(self, request, *args, **kwargs):
        if not knowledge.delete_document(self.get_object(), actor=actor_of(request)):
            raise NotFound("No such document: it was deleted meanwhile.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=KnowledgeDocumentCreateSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: KnowledgeDocumentSerializer, 200: KnowledgeDocumentSerializer,
                              **error_responses(400, 403, 409, 413, 422)},
                   description="Posting a known source_id again updates that document (so a retry is harmless even "
                               "without an Idempotency-Key).")
    @idempotent
    def create(self, request):
        incoming = KnowledgeDocumentCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        document, changed = knowledge.upsert_document(request.access.project, actor=actor_of(request), **incoming.validated_data)
        fresh = self.get_queryset().get(pk=document.pk)
        created = changed and document.revision == 1  # this call's own row: another post may have updated it since
        return Response(KnowledgeDocumentSerializer(fresh).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: KnowledgeDocumentSerializer, **error_responses(403, 404)})
    @action(detail=True, methods=["post"])
    def reindex(self, request, pk=None):
        document = knowledge.request_reindex(self.get_object(), actor=actor_of(request))
        fresh = self.get_queryset().filter(pk=document.pk).first() if document is not None else None
        if fresh is None:  # deleted by another request since this one found it
            raise NotFound("No such document: it was deleted meanwhile.")
        return Response(KnowledgeDocumentSerializer(fresh).data)


class ConversationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The project's threads, newest first; a thread with its latest turns (its earlier turns are pages of
    ``ConversationMessageViewSet``); a thread erased, with its jobs' content."""

    # erasing one is for good and reaches the jobs of the thread: the scope ``JobViewSet.destroy`` needs
    required_capabilities = {"list": Capability.JOBS_READ, "retrieve": Capability.JOBS_READ,
                             "destroy": Capability.CONTENT_ERASE}
    serializer_class = ConversationSerializer
    pagination_class = NewestFirstCursorPagination
    lookup_value_converter = "uuid"

    def get_serializer_class(self):
        return ConversationSummarySerializer if self.action == "list" else ConversationSerializer

    @extend_schema(responses={200: ConversationSummarySerializer(many=True), **error_responses(400, 403)},
                   summary="Conversations, newest first (cursor pages)",
                   description="Each thread's id, plugin, times and number of turns; GET one for its turns, DELETE it "
                               "to erase it.")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={204: None, **error_responses(403, 404, 409)},
                   summary="Erase a conversation: its turns, and the content of every job of it",
                   description="The thread goes (GET answers 404 afterwards, and a job naming its conversation_id is "
                               "refused); each of its jobs stays as an erased tombstone, as DELETE /jobs/{id}/ leaves it. "
                               "409 job_running when one of its jobs is running: cancel it and erase the conversation "
                               "once it has stopped. Nothing is erased when it is refused.")
    def destroy(self, request, *args, **kwargs):
        conversation = self.get_object()
        if erasure.erase_conversation(request.access.project, conversation.pk, actor_of(request)) is None:
            raise NotFound("No such conversation: it was erased meanwhile.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[PAGE_SIZE_PARAMETER], responses={200: ConversationSerializer, **error_responses(403, 404)},
                   summary="A conversation with its latest turns",
                   description="A long thread is never answered whole: `messages` holds its latest turns and "
                               "`earlier_messages` links to the turns before them.")
    def retrieve(self, request, *args, **kwargs):
        conversation = self.get_object()
        turns_url = request.build_absolute_uri(reverse("conversation-message-list", kwargs={"conversation_id": conversation.pk}))
        shown, earlier = ThreadCursorPagination().latest_page(with_erasure(conversation.messages.all()), request,
                                                              turns_url)
        return Response(ConversationSerializer({
            "id": conversation.pk, "plugin_id": conversation.plugin_id, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at, "message_count": conversation.messages.count(), "messages": shown,
            "earlier_messages": earlier,
        }).data)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Conversation.objects.none()
        conversations = Conversation.objects.filter(project=self.request.access.project)
        if self.action == "list":
            return with_turn_counts(conversations)
        return conversations


class ConversationMessageViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """A thread's turns, a cursor page at a time, newest first."""

    required_capabilities = {"list": Capability.JOBS_READ}
    serializer_class = ConversationMessageSerializer
    pagination_class = ThreadCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ConversationMessage.objects.none()
        conversation = parent_in_project(Conversation.objects, self.request.access.project,
                                         self.kwargs.get("conversation_id"), "No such conversation.")
        return with_erasure(conversation.messages.all())

    @extend_schema(parameters=[CONVERSATION_ID], responses={200: ConversationMessageSerializer(many=True),
                                                            **error_responses(403, 404)},
                   summary="A conversation's turns, newest first (cursor pages; next leads to earlier turns)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


#: Generated files a browser shows inline: pictures it decodes and never runs (the dashboard's <img> tags and
#: lightbox show them). Any other type (SVG, HTML, XML, PDF: what a plugin could make run script) is a download.
INLINE_FILE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
#: A generated file opened in a browser is a document of no origin that runs nothing: even one a browser
#: renders despite the attachment cannot reach the dashboard's session, cookies or API.
FILE_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}\Z")


class OutputFileDownloadView(APIView):
    """A generated file, to callers of the project that owns it (others get 404).

    The media type is the plugin's word: anything but a picture is sent as an attachment, and every file
    with a sandboxing Content-Security-Policy, so that a plugin's output never runs in the dashboard's origin.
    """

    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(responses={(200, "application/octet-stream"): bytes, **error_responses(403, 404)})
    def get(self, request, output_id, file_id):
        stored = (
            OutputFile.objects.filter(pk=file_id, output_id=output_id, output__job__project=request.access.project)
            .exclude(output__review_state__in=WITHHELD_REVIEW_STATES)  # blocked or rejected: never handed out
            .only("file", "media_type")
            .first()
        )
        if stored is None:
            raise NotFound("No such file.")
        if not stored.file.name:  # the row is kept for the usage report, the file erased with its job's content
            raise NotFound("This file was erased with its job's content.")
        try:
            handle = stored.file.open("rb")
        except FileNotFoundError:
            raise NotFound("The file is missing from storage.") from None
        media_type = stored.media_type.split(";", 1)[0].strip().lower()
        if not _MEDIA_TYPE.match(media_type):  # not a media type (a header's line break, a bare word): bytes
            media_type = "application/octet-stream"
        response = FileResponse(handle, content_type=media_type, as_attachment=media_type not in INLINE_FILE_TYPES,
                                filename=stored.file.name.rsplit("/", 1)[-1])
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
        return response
