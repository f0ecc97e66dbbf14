"""Settings fail loudly; credentials are encrypted at rest and rotate; ensure_admin."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from crmext.envconf import StrictEnv
from integrations.models import ProviderAccount

ROOT = Path(__file__).resolve().parent.parent


class _Env:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def str(self, name: str, default=None):
        return self.values.get(name, default)


@pytest.mark.parametrize("raw,expected", [("true", True), ("False", False), ("1", True), ("off", False)])
def test_bool_accepts_true_and_false(raw, expected):
    assert StrictEnv(_Env({"FLAG": raw})).bool("FLAG", default=not expected) is expected


def test_bool_rejects_garbage_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be true or false"):
        StrictEnv(_Env({"DEBUG": "yes please"})).bool("DEBUG", default=False)


def test_int_rejects_garbage_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="Q_WORKERS must be a whole number"):
        StrictEnv(_Env({"Q_WORKERS": "two"})).int("Q_WORKERS", default=1)
    with pytest.raises(ImproperlyConfigured, match="Q_WORKERS must be at least 1"):
        StrictEnv(_Env({"Q_WORKERS": "0"})).int("Q_WORKERS", default=1, minimum=1)


def test_float_settings_are_strict_too():
    assert StrictEnv(_Env({"PARSE_BUDGET_SECONDS": "2.5"})).float("PARSE_BUDGET_SECONDS", default=5.0) == 2.5
    with pytest.raises(ImproperlyConfigured, match="PARSE_BUDGET_SECONDS must be a number"):
        StrictEnv(_Env({"PARSE_BUDGET_SECONDS": "soon"})).float("PARSE_BUDGET_SECONDS", default=5.0)
    with pytest.raises(ImproperlyConfigured, match="must be at least 0.1"):
        StrictEnv(_Env({"PARSE_BUDGET_SECONDS": "nan"})).float("PARSE_BUDGET_SECONDS", default=5.0, minimum=0.1)


def test_bad_setting_stops_start_up_with_its_name():
    env = {**os.environ, "DEBUG": "maybe"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DEBUG must be true or false, got 'maybe'" in result.stderr


def test_production_refuses_to_start_without_secret_key():
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "", "SALT_KEY": "salt"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_credentials_are_encrypted_at_rest(account):
    account.credentials = {"password": "hunter2-very-secret", "port": 993}
    account.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_provideraccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()[0]
    assert "hunter2" not in stored and "password" not in stored
    assert ProviderAccount.objects.get(pk=account.pk).credentials == {"password": "hunter2-very-secret", "port": 993}


@pytest.mark.django_db
def test_credentials_survive_key_rotation(account, settings):
    account.credentials = {"token": "abc"}
    account.save()
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-brand-new-secret-key-for-rotation-test-0123456789"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    field = ProviderAccount._meta.get_field("credentials")
    field.__dict__.pop("keys", None)
    field.__dict__.pop("f", None)
    try:
        assert ProviderAccount.objects.get(pk=account.pk).credentials == {"token": "abc"}
        settings.SECRET_KEY_FALLBACKS = []
        field.__dict__.pop("keys", None)
        field.__dict__.pop("f", None)
        with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
            ProviderAccount.objects.get(pk=account.pk)
    finally:
        field.__dict__.pop("keys", None)
        field.__dict__.pop("f", None)


@pytest.mark.django_db
def test_ensure_admin_generates_a_password_once(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("ADMIN_USERNAME", "boss")
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="boss").check_password(password)
    again = io.StringIO()
    call_command("ensure_admin", stdout=again)
    assert again.getvalue() == ""
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


@pytest.mark.django_db
def test_ensure_admin_uses_the_configured_password(monkeypatch):
    monkeypatch.setenv("ADMIN_USERNAME", "boss")
    monkeypatch.setenv("ADMIN_PASSWORD", "configured-pw-123")
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "configured-pw-123" not in out.getvalue()
    assert get_user_model().objects.get(username="boss").check_password("configured-pw-123")


def test_empty_values_mean_default():
    env = StrictEnv(_Env({"A": "", "B": "  ", "C": ""}))
    assert env.bool("A", default=True) is True
    assert env.list("B", default=["x"]) == ["x"]
    assert env.int("C", default=7) == 7


def test_env_example_lists_every_variable_the_project_reads():
    import re

    sources = (ROOT / "crmext" / "settings.py").read_text()
    sources += (ROOT / "integrations" / "management" / "commands" / "ensure_admin.py").read_text()
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', sources))
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert len(read) > 20
    assert read - listed == set()


def _env_without(*names: str, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(values)
    return env


def test_debug_is_off_unless_asked_for():
    # No DEBUG at all: production mode, which needs real secrets to start.
    env = _env_without("DEBUG", "SECRET_KEY", "SALT_KEY")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("weak", ["short", "django-insecure-" + "x" * 60, "ab" * 40])
def test_production_refuses_a_weak_secret_key(weak):
    env = _env_without("DEBUG", SECRET_KEY=weak, SALT_KEY="salt")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "SECRET_KEY is too weak" in result.stderr
    assert weak not in result.stderr  # the key itself is never echoed


def test_deploy_check_passes_clean_with_production_settings():
    import secrets

    env = _env_without("DEBUG", SECRET_KEY=secrets.token_urlsafe(50), SALT_KEY="salt")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_production_settings_turn_on_https_protections():
    import secrets

    env = _env_without("DEBUG", SECRET_KEY=secrets.token_urlsafe(50), SALT_KEY="salt")
    code = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0)")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.stdout.split() == ["True", "True", "True", "True"], result.stderr


def test_development_key_files_are_private_and_agreed_on_by_racing_processes(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from crmext import settings as project_settings

    monkeypatch.setattr(project_settings, "VAR_DIR", tmp_path)
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: project_settings._local_secret("secret_key"), range(16)))
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no scratch files left
