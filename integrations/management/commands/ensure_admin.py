"""Creates the first admin user if there is none; used by `make run`."""
from __future__ import annotations

import secrets
from typing import Any

import environ
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser from ADMIN_USERNAME/ADMIN_PASSWORD (or a generated password) if none exists."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        env = environ.Env()
        username = env.str("ADMIN_USERNAME", default="admin") or "admin"
        password = env.str("ADMIN_PASSWORD", default="")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email=env.str("ADMIN_EMAIL", default=""), password=password)
        if generated:
            # Printed once, on purpose: it is the only way to learn it. It is not logged.
            self.stdout.write(self.style.WARNING(f"Created admin user {username!r} with password: {password}"))
            self.stdout.write("Change it in the admin, or set ADMIN_PASSWORD in .env before the first run.")
        else:
            self.stdout.write(f"Created admin user {username!r} (password from ADMIN_PASSWORD).")
