"""Forms of the Connections pages: connecting (any provider's credentials form), sharing, and mbox uploads.

Connect forms are built from the provider's ConnectMethod (integrations.providers.connect):
its serializers describe the fields and validate them, so a new provider needs no form or
template here. Uploads stream straight into MBOX_IMPORT_DIR and are never held in memory.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import StopFutureHandlers, TemporaryFileUploadHandler
from django.utils import timezone
from django.utils.text import get_valid_filename

from integrations.accounts import connect_account, same_account, update_account
from integrations.models import ProviderAccount
from integrations.providers.base import AuthError, ProviderError
from integrations.providers.connect import CredentialsConnect
from integrations.providers.mbox import MboxProvider

# --- connecting with credentials ----------------------------------------------------------------


def _form_field(described: dict[str, Any]) -> forms.Field:
    """A form field for one entry of ConnectMethod.fields()."""
    options: dict[str, Any] = {
        # A choice with a default always has a value: not optional to the eye.
        "required": described["type"] != "boolean" and (
            described["required"] or (described["type"] == "choice" and described["default"] is not None)),
        "label": described["name"].replace("_", " ").capitalize(),
        "help_text": described["help_text"],
        "initial": described["default"],
    }
    kind = described["type"]
    if described["secret"]:
        return forms.CharField(strip=False, widget=forms.PasswordInput(render_value=False), **options)
    if kind == "integer":
        return forms.IntegerField(**options)
    if kind in ("choice", "multiple_choice"):
        choices = [(choice, choice) for choice in described["choices"] or []]
        if kind == "multiple_choice":
            return forms.MultipleChoiceField(choices=choices, widget=forms.CheckboxSelectMultiple, **options)
        return forms.ChoiceField(choices=choices, **options)
    if kind == "boolean":
        return forms.BooleanField(**options)
    if kind == "list":
        options["help_text"] = " ".join(filter(None, [options["help_text"], "One per line."]))
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **options)
    if kind == "email":
        return forms.EmailField(**options)
    return forms.CharField(**options)


def _messages(errors: Any) -> list[str]:
    """The messages of a DRF error detail (a list, or a dict per list item), flattened."""
    if isinstance(errors, dict):
        return [message for value in errors.values() for message in _messages(value)]
    if isinstance(errors, list):
        return [message for value in errors for message in _messages(value)]
    return [str(errors)]


class CredentialsForm(forms.Form):
    """The fields of a CredentialsConnect (settings, then secrets), validated by its serializers.

    ``connect()`` / ``reconnect()`` then test the login and save through the account
    services; a refused login becomes an error next to the secret field, a server that
    cannot be reached an error above the form. Secrets are never rendered back.
    """

    def __init__(self, *args: Any, method: CredentialsConnect, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.sections: dict[str, list[str]] = {"config": [], "credentials": []}
        for described in method.fields():
            self.fields[described["name"]] = _form_field(described)
            self.sections[described["section"]].append(described["name"])
        self.config: dict[str, Any] = {}
        self.credentials: dict[str, Any] = {}

    def _section_data(self, section: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.sections[section]:
            value = self.cleaned_data.get(name)
            if isinstance(self.fields[name].widget, forms.Textarea):
                value = [line.strip() for line in (value or "").splitlines() if line.strip()]
            if value in (None, "", []):
                continue
            data[name] = value
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        for section, serializer_class in (("config", self.method.config_serializer),
                                          ("credentials", self.method.credentials_serializer)):
            serializer = serializer_class(data=self._section_data(section))
            if serializer.is_valid():
                setattr(self, section, dict(serializer.validated_data))
                continue
            for name, detail in serializer.errors.items():
                for message in _messages(detail):
                    self.add_error(name if name in self.fields else None, message)
        return cleaned

    def _secret_field(self) -> str | None:
        return self.sections["credentials"][0] if self.sections["credentials"] else None

    def _login(self, save: Any) -> ProviderAccount | None:
        """Runs ``save()`` (which tests the login first); provider errors become form errors."""
        try:
            return save()
        except AuthError as error:
            self.add_error(self._secret_field(), f"The login was refused: {error}")
        except ProviderError as error:
            self.add_error(None, f"Could not connect: {error}")
        return None


class ConnectForm(CredentialsForm):
    """A new account of ``provider`` for ``owner``."""

    display_name = forms.CharField(label="Name", required=False, max_length=200,
                                   help_text="How this account is shown in your list.")
    external_address = forms.CharField(label="Address", required=False, max_length=320,
                                       help_text="The account's e-mail address or phone number, if the login "
                                                 "name is not it.")

    def __init__(self, *args: Any, provider: str, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.provider, self.owner = provider, owner
        self.order_fields([*self.sections["config"], *self.sections["credentials"], "display_name",
                           "external_address"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors and same_account(self.owner, self.provider, self.config) is not None:
            self.add_error(None, "You have connected this account already. Use Reconnect on the Connections page "
                                 "to enter new credentials for it.")
        return cleaned

    def connect(self) -> ProviderAccount | None:
        """Tests the login, then saves the new account; None (with errors on the form) if it failed."""
        defaults = self.method.account_defaults(self.config)
        account = ProviderAccount(
            owner=self.owner, provider=self.provider, config=self.config,
            display_name=self.cleaned_data["display_name"] or defaults.get("display_name", ""),
            external_address=self.cleaned_data["external_address"] or defaults.get("external_address", ""),
        )
        return self._login(lambda: connect_account(account, self.credentials))


class ReconnectForm(CredentialsForm):
    """New credentials (and, if changed, settings) for ``account``; a disconnected account is enabled again."""

    def __init__(self, *args: Any, account: ProviderAccount, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {})
        super().__init__(*args, **kwargs)
        self.account = account
        for name, value in self.method.public_config(account.config).items():
            if name in self.fields:
                self.initial[name] = "\n".join(value) if isinstance(value, list) else value

    def reconnect(self) -> ProviderAccount | None:
        config = {**self.account.config, **self.config}
        changes = {"config": config} if config != self.account.config else {}
        enabled = True if self.account.status == ProviderAccount.Status.DISABLED else None
        return self._login(lambda: update_account(self.account, changes, credentials=self.credentials,
                                                  enabled=enabled))


class SyncRequestForm(forms.Form):
    """The account page's "more syncs": a full resync, or a historical sync of [since, until)."""

    kind = forms.ChoiceField(choices=[("delta", "Sync now"), ("full", "Full resync"),
                                      ("historical", "Fetch a date range")], required=False)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until (not included)",
                            widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["kind"] = data.get("kind") or "delta"  # the plain Sync now button sends no kind
        if data.get("kind") != "historical":
            data["since"] = data["until"] = None
            return data
        since, until = data.get("since"), data.get("until")
        if since is None or until is None:
            raise forms.ValidationError("Give both dates of the range to fetch.")
        if since >= until:
            raise forms.ValidationError("The range must start before it ends.")
        return data


class SharingForm(forms.ModelForm):
    class Meta:
        model = ProviderAccount
        fields = ["sharing"]
        labels = {"sharing": "Teammates see"}


class DisconnectForm(forms.Form):
    purge = forms.TypedChoiceField(
        label="Its messages", coerce=lambda value: value == "delete", initial="keep", widget=forms.RadioSelect,
        choices=[("keep", "Keep them: they stay searchable, and reconnecting later resumes the account"),
                 ("delete", "Delete them too: the account and all its messages are removed")],
    )


# --- mbox uploads -------------------------------------------------------------------------------

def import_root() -> Path:
    root = Path(settings.MBOX_IMPORT_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


class ImportDirUploadedFile(UploadedFile):
    """An upload being written to a hidden temporary file in MBOX_IMPORT_DIR (deleted on close
    unless it was renamed), so the finished file is renamed into place, never copied."""

    def __init__(self, name: str, content_type: str, size: int, charset: str | None,
                 content_type_extra: dict[str, Any] | None = None) -> None:
        file = tempfile.NamedTemporaryFile(dir=import_root(), prefix=".upload-", suffix=".part")
        super().__init__(file, name, content_type, size, charset, content_type_extra)

    def temporary_file_path(self) -> str:
        return self.file.name

    def close(self) -> None:
        try:
            self.file.close()
        except FileNotFoundError:
            pass  # renamed into place: nothing left to delete


class RefusedUpload(UploadedFile):
    """What the form receives for a file the upload handler refused: its name and why, no content."""

    def __init__(self, name: str, refusal: str, size: int) -> None:
        # The size received, so that the form's field gets to the refusal instead of "empty".
        super().__init__(None, name, "application/octet-stream", size, None)
        self.refusal = refusal

    def close(self) -> None:
        pass


def _free_bytes() -> int:
    return shutil.disk_usage(import_root()).free


def _too_big(size: int) -> str:
    return (f"is larger than this server takes ({size:,} bytes; the limit is {settings.UPLOAD_MAX_BYTES:,}). "
            "Split the mbox, or ask an administrator to raise UPLOAD_MAX_BYTES.")


def _no_room(needed: int) -> str:
    return (f"does not fit on this server's disk: {needed:,} more bytes would leave less than "
            f"{settings.UPLOAD_MIN_FREE_BYTES:,} free. Ask an administrator to free space, then upload it again.")


class ImportDirUploadHandler(TemporaryFileUploadHandler):
    """Streams every uploaded file into MBOX_IMPORT_DIR, whatever its size (no memory handler runs).

    A file over UPLOAD_MAX_BYTES, or one that would leave less than UPLOAD_MIN_FREE_BYTES of
    the disk free, is refused as it arrives: what was written is deleted, the rest is read
    and dropped (so the browser gets the answer), and the form says why.
    """

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any,
                         encoding: str | None = None) -> None:
        self.content_length = content_length  # the whole request: an upper bound known before any byte

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super(TemporaryFileUploadHandler, self).new_file(*args, **kwargs)
        self.received = 0
        self.refusal = ""
        self.file = ImportDirUploadedFile(self.file_name, self.content_type, 0, self.charset,
                                          self.content_type_extra)
        raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.refusal:
            return None
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_BYTES:
            self._refuse(_too_big(max(self.received, self.content_length or 0)))
        elif _free_bytes() - len(raw_data) < settings.UPLOAD_MIN_FREE_BYTES:
            self._refuse(_no_room(max(len(raw_data), (self.content_length or 0) - self.received)))
        else:
            return super().receive_data_chunk(raw_data, start)
        return None

    def _refuse(self, refusal: str) -> None:
        self.refusal = refusal
        self.file.close()  # deletes the partial file

    def file_complete(self, file_size: int) -> UploadedFile:
        if self.refusal:
            return RefusedUpload(self.file_name, self.refusal, self.received)
        return super().file_complete(file_size)


ARCHIVE_SUFFIXES = (".zip", ".tgz", ".tar.gz", ".tar")
COPY_CHUNK_BYTES = 1024 * 1024


class MboxUploadForm(forms.Form):
    file = forms.FileField(
        label="Mbox file or Google Takeout archive",
        help_text="An .mbox file, or the .zip / .tgz that Google Takeout made of your mail: its .mbox files "
                  "are imported.",
    )
    display_name = forms.CharField(label="Name", required=False, max_length=200,
                                   help_text="How the import is shown in your list. Default: the file's name.")

    def clean_file(self) -> UploadedFile:
        upload = self.cleaned_data["file"]
        if isinstance(upload, RefusedUpload):
            raise forms.ValidationError(f"{upload.name} {upload.refusal}")
        if not isinstance(upload, ImportDirUploadedFile):
            raise forms.ValidationError("The upload could not be stored: try again.")
        name = upload.name.lower()
        if name.endswith(ARCHIVE_SUFFIXES):
            self.sources = self._archive_members(upload)
        else:
            self._check_mbox(upload.file, upload.name)
            self.sources = []
        return upload

    @staticmethod
    def _check_mbox(handle: BinaryIO, name: str) -> None:
        handle.seek(0)
        start = handle.read(5)
        handle.seek(0)
        if start != b"From ":
            raise forms.ValidationError(f"{name} is not an mbox file: an mbox begins with a line \"From ...\". "
                                        "Export the mailbox as mbox, or upload the Takeout .zip or .tgz as it is.")

    def _archive_members(self, upload: ImportDirUploadedFile) -> list[str]:
        """The names of the .mbox files in a Takeout archive (ValidationError if it has none or is unreadable)."""
        path = upload.temporary_file_path()
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    sizes = {info.filename: info.file_size for info in archive.infolist()
                             if not info.is_dir() and info.filename.lower().endswith(".mbox")}
            else:
                with tarfile.open(path) as archive:
                    sizes = {member.name: member.size for member in archive if member.isfile()
                             and member.name.lower().endswith(".mbox")}
            names = list(sizes)
        except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
            raise forms.ValidationError(f"{upload.name} could not be read as a .zip or .tgz archive ({error}).")
        if not names:
            raise forms.ValidationError(f"{upload.name} holds no .mbox file. In Google Takeout, export Mail, "
                                        "and upload the archive it gives you.")
        # Sizes as the archive states them: extraction stops at them too (see _extract).
        self.member_sizes = sizes
        unpacked = sum(sizes.values())
        if unpacked > settings.UPLOAD_MAX_BYTES:
            raise forms.ValidationError(f"{upload.name}: its mbox files {_too_big(unpacked)}")
        if _free_bytes() - unpacked < settings.UPLOAD_MIN_FREE_BYTES:
            raise forms.ValidationError(f"{upload.name}: its mbox files, unpacked, {_no_room(unpacked)}")
        return names

    def save(self, owner: Any) -> list[ProviderAccount]:
        """Moves the upload (or each mbox of an archive) into place and creates an mbox account for each.

        Files are written under hidden temporary names and renamed when complete; their
        modification time is set back past the mbox provider's settle time, since they are
        known to be whole: the import then reads them to their last message at once.
        """
        upload: ImportDirUploadedFile = self.cleaned_data["file"]
        if not self.sources:
            files = [(upload.name, _publish(Path(upload.temporary_file_path()), upload.name, owner))]
        else:
            files = list(_extract(upload, self.sources, owner))
            upload.close()
        accounts = []
        for name, path in files:
            label = Path(name).name
            if self.cleaned_data["display_name"]:
                label = self.cleaned_data["display_name"] + (f" ({label})" if len(files) > 1 else "")
            accounts.append(ProviderAccount.objects.create(
                owner=owner, provider="mbox", display_name=label[:200], external_address=owner.email,
                config={"path": str(path)}, next_sync_at=None,  # imports run when asked, not on the schedule
            ))
        return accounts


def _publish(temporary: Path, name: str, owner: Any) -> Path:
    """Gives a complete file in MBOX_IMPORT_DIR its final name (never replacing another file) and backdates it."""
    stem = get_valid_filename(Path(name).name) or "upload.mbox"
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    settled = time.time() - MboxProvider.settle_seconds - 1
    os.utime(temporary, (settled, settled))
    for attempt in range(100):
        destination = temporary.parent / f"upload-{owner.pk}-{stamp}{f'-{attempt}' if attempt else ''}-{stem}"
        try:
            os.link(temporary, destination)  # unlike rename, fails if the name is taken
        except FileExistsError:
            continue
        temporary.unlink()
        return destination
    raise OSError(f"No free file name for {stem} in {temporary.parent}")


def _extract(upload: ImportDirUploadedFile, names: list[str], owner: Any) -> list[tuple[str, Path]]:
    """Streams each named member of the archive into its own file in MBOX_IMPORT_DIR."""
    path = upload.temporary_file_path()
    extracted = []
    is_zip = zipfile.is_zipfile(path)
    archive: Any = zipfile.ZipFile(path) if is_zip else tarfile.open(path)
    with archive:
        for name in names:
            source = archive.open(name) if is_zip else archive.extractfile(name)
            handle, temporary = tempfile.mkstemp(dir=import_root(), prefix=".extract-", suffix=".part")
            try:
                with source, os.fdopen(handle, "wb") as target:
                    shutil.copyfileobj(source, target, COPY_CHUNK_BYTES)
                extracted.append((name, _publish(Path(temporary), name, owner)))
            finally:
                Path(temporary).unlink(missing_ok=True)
    return extracted
