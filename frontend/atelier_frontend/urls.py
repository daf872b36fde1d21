from django.urls import path

from atelier_frontend import views

urlpatterns = [path("", views.home, name="home")]
