from django.db import models


class Company(models.Model):
    name = models.CharField(max_length=100)


class Contact(models.Model):
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=30, blank=True)
    company = models.ForeignKey(Company, null=True, on_delete=models.SET_NULL)


class Tag(models.Model):
    """A text primary key: refused as a source of model events (PrimaryKey is an integer)."""

    code = models.CharField(max_length=10, primary_key=True)
