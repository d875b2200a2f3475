"""The lab's Flask-AppBuilder app: one Contact model (Faker zh_CN personal data) with FAB's
generic web views (/contactmodelview/...) and REST API (/api/v1/contact/...).

    LAB_DIR=<work dir> gunicorn -w 3 -b 10.213.0.1:8000 'app:create_app()'
"""
from flask import Flask
from flask_appbuilder import AppBuilder, Model, ModelRestApi, ModelView
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.utils.legacy import get_sqla_class
from sqlalchemy import Column, Date, Integer, String

db = get_sqla_class()()


class Contact(Model):
    __tablename__ = "contact"
    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False)
    mobile = Column(String(20))
    id_number = Column(String(18))
    birthday = Column(Date)
    address = Column(String(200))
    email = Column(String(100))
    company = Column(String(100))

    def __repr__(self):
        return self.name


class ContactModelView(ModelView):
    datamodel = SQLAInterface(Contact)
    list_columns = ["name", "mobile", "id_number", "company"]
    show_columns = ["name", "mobile", "id_number", "birthday", "address", "email", "company"]
    search_columns = ["name", "mobile", "company"]
    page_size = 25


class ContactModelApi(ModelRestApi):
    resource_name = "contact"
    datamodel = SQLAInterface(Contact)
    list_columns = ["id", "name", "mobile", "id_number", "email", "company"]
    show_columns = ["id", "name", "mobile", "id_number", "birthday", "address", "email", "company"]


def create_app():
    app = Flask(__name__)
    app.config.from_object("config")
    with app.app_context():
        db.init_app(app)
        appbuilder = AppBuilder(app, db.session)
        appbuilder.add_view(ContactModelView, "Contacts", icon="fa-address-book", category="Contact")
        appbuilder.add_api(ContactModelApi)
        db.create_all()
    return app
