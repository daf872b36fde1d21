from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.i18n import set_language

from atelier_frontend import (evaluation_views, export_views, invitation_views, library_views, settings_views, views,
                              workers_views)

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="atelier_frontend/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("project/", views.switch_project, name="switch-project"),
    path("language/", set_language, name="set_language"),
    path("create/", views.create_index, name="create"),
    path("create/<str:plugin_id>/", views.create_plugin, name="create-plugin"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/status/", views.jobs_status, name="jobs-status"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job"),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("library/", library_views.library_page, name="library"),
    path("exports/", export_views.exports_part, name="exports"),
    path("exports/start/", export_views.export_start, name="export-start"),
    path("exports/<uuid:export_id>/cancel/", export_views.export_cancel, name="export-cancel"),
    path("jobs/<uuid:job_id>/erase/", views.job_erase, name="job-erase"),
    path("chat/", views.chat, name="chat"),
    path("chat/<uuid:conversation_id>/", views.chat, name="chat-thread"),
    path("usage/", views.usage_page, name="usage"),
    path("settings/", settings_views.project_settings, name="settings"),
    path("evaluation/runs/<uuid:run_id>/", evaluation_views.run_page, name="evaluation-run"),
    path("evaluation/runs/<uuid:run_id>/cancel/", evaluation_views.run_cancel, name="evaluation-run-cancel"),
    path("evaluation/sets/<uuid:set_id>/", evaluation_views.set_page, name="evaluation-set"),
    path("evaluation/sets/<uuid:set_id>/compare/", evaluation_views.set_compare, name="evaluation-set-compare"),
    path("evaluation/sets/<uuid:set_id>/evaluate/", evaluation_views.set_evaluate, name="evaluation-set-evaluate"),
    path("evaluation/sets/<uuid:set_id>/pin/", evaluation_views.set_pin, name="evaluation-set-pin"),
    path("evaluation/sets/<uuid:set_id>/watch/", evaluation_views.set_watch, name="evaluation-set-watch"),
    path("evaluation/sets/<uuid:set_id>/watch/delete/", evaluation_views.set_watch_delete,
         name="evaluation-set-watch-delete"),
    path("invite/<str:token>/", invitation_views.invitation, name="invitation"),
    path("workers/", workers_views.workers_page, name="workers"),
    path("review/", views.review, name="review"),
    path("review/items/<int:item_id>/", views.review_panel, name="review-panel"),
    path("review/bulk-approve/", views.review_bulk_approve, name="review-bulk-approve"),
    path("review/standing/", views.review_standing, name="review-standing"),
]
