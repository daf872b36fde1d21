"""Mounted at /v1/ (the OpenAI clients' base URL is ``http://host/v1``). Paths take no trailing slash, as OpenAI's."""

from django.urls import path

from atelier_platform.openai_compat import views

urlpatterns = [
    path("models", views.ModelListView.as_view(), name="openai-models"),
    path("models/<str:model_id>", views.ModelDetailView.as_view(), name="openai-model"),
    path("chat/completions", views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("responses", views.ResponsesView.as_view(), name="openai-responses"),
    path("responses/<str:response_id>", views.ResponseDetailView.as_view(), name="openai-response"),
    path("responses/<str:response_id>/input_items", views.ResponseInputItemsView.as_view(), name="openai-response-input-items"),
    path("responses/<str:response_id>/cancel", views.ResponseCancelView.as_view(), name="openai-response-cancel"),
    path("images/generations", views.ImageGenerationsView.as_view(), name="openai-images-generations"),
    path("<path:rest>", views.not_found),
]
