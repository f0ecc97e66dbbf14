from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from integrations.tasks import ensure_schedule

        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="integrations.ensure_schedule")
