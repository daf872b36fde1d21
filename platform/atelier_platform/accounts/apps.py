from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "atelier_platform.accounts"
    label = "accounts"
    verbose_name = "Accounts and projects"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from atelier_platform.accounts.signin import record_failure

        user_login_failed.connect(record_failure, dispatch_uid="atelier-sign-in-failures")
