from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from automation.receivers import queue_new_communications, queue_trigger_evaluation
        from automation.triggers.cards import register_card_extra
        from automation.writeback import wanted_capabilities
        from integrations import grants
        from integrations.signals import communications_created

        communications_created.connect(queue_new_communications, dispatch_uid="automation.queue_suggestions")
        communications_created.connect(queue_trigger_evaluation, dispatch_uid="automation.queue_triggers")
        register_card_extra()
        grants.register("automation.write_back", wanted_capabilities)
