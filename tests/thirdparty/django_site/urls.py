"""URLs: Django's admin, its static files (served by Django itself: no web server in
front), and a health endpoint for the monitoring poller."""
import time

from django.contrib import admin
from django.http import JsonResponse
from django.urls import path, re_path
from django.views.static import serve

from settings import STATIC_ROOT

STARTED = time.time()


def healthz(_request):
    return JsonResponse({"status": "ok", "uptime_s": round(time.time() - STARTED, 1)})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": STATIC_ROOT}),
]
