from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "atelier_platform.accounts"
    label = "accounts"
    verbose_name = "Accounts and projects"
