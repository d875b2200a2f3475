from django.contrib import admin

from .models import Person


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "phone", "id_number", "city", "company")
    search_fields = ("name", "phone", "id_number")
    list_filter = ("city",)
    list_per_page = 20
