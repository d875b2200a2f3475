"""Django settings of the lab's admin site (configuration only: the application is
django.contrib.admin). Started by the recorder with gunicorn in the lab's server namespace:

    DJANGO_SETTINGS_MODULE=settings LAB_DIR=<work dir> gunicorn -w 3 -b 10.213.0.1:8000 wsgi
"""
import os
from pathlib import Path

LAB_DIR = Path(os.environ.get("LAB_DIR", "/tmp/apitap-django"))
SECRET_KEY = "apitap-lab-not-secret-3b1f9c"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "people",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": LAB_DIR / "django.sqlite3"}}
# The lab's two shared cores cannot afford PBKDF2's 10^6 iterations per attempt for 400
# accounts and thousands of attempts; the login flow (form, CSRF, 200 on failure, 302 +
# sessionid on success) is unchanged.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "zh-hans"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = LAB_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
