"""Flask-AppBuilder configuration of the lab's contact directory (the application is FAB's
generic CRUD views, REST API and security; app.py only declares the model and its views)."""
import os

LAB_DIR = os.environ.get("LAB_DIR", "/tmp/apitap-fab")
SECRET_KEY = "apitap-lab-not-secret-8a2e71"
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(LAB_DIR, "fab.sqlite3")
SQLALCHEMY_TRACK_MODIFICATIONS = False
APP_NAME = "客户通讯录"
AUTH_TYPE = 1  # AUTH_DB: FAB's own user table, form login at /login/
# CSRF on the login form is off so that hydra's http-post-form can submit it directly
# (FAB enables Flask-WTF CSRF by default). The REST API login never uses CSRF.
WTF_CSRF_ENABLED = False
# Defaults kept: AUTH_RATE_LIMITED = False, FAB_API_MAX_PAGE_SIZE = 100.
# scrypt (FAB's default) costs ~0.1 s of the lab's two shared cores per attempt; PBKDF2
# with fewer rounds keeps the login flow identical at a tenth of the cost.
FAB_PASSWORD_HASH_METHOD = "pbkdf2:sha256:20000"
JWT_ACCESS_TOKEN_EXPIRES = 3600
# Staff may read and edit contacts (web views and REST API), nothing else.
FAB_ROLES = {
    "Staff": [
        [".*Contact.*", "can_list"],
        [".*Contact.*", "can_show"],
        [".*Contact.*", "can_get"],
        [".*Contact.*", "can_info"],
        [".*Contact.*", "can_edit"],
        [".*Contact.*", "can_put"],
        ["Contacts", "menu_access"],
        ["Contact", "menu_access"],
        ["UserInfoEditView", "can_this_form_get"],
        ["UserDBModelView", "can_userinfo"],
        ["ResetMyPasswordView", "can_this_form_get"],
        ["ResetMyPasswordView", "can_this_form_post"],
    ]
}
LANGUAGES = {"zh": {"flag": "cn", "name": "Chinese"}, "en": {"flag": "gb", "name": "English"}}
BABEL_DEFAULT_LOCALE = "zh"
