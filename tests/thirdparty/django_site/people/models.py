from django.db import models


class Person(models.Model):
    """A customer record with personal data (Faker zh_CN)."""

    name = models.CharField("姓名", max_length=50)
    phone = models.CharField("手机号", max_length=20)
    id_number = models.CharField("身份证号", max_length=18)
    birthday = models.DateField("出生日期")
    address = models.CharField("地址", max_length=200)
    email = models.EmailField("邮箱")
    company = models.CharField("公司", max_length=100)
    city = models.CharField("城市", max_length=50)

    class Meta:
        verbose_name = "客户"
        verbose_name_plural = "客户"

    def __str__(self):
        return self.name
