"""A real, throw-away Dovecot IMAP server for tests.

:class:`DovecotServer` writes a self-contained Dovecot 2.3 configuration into a
directory of its own, runs the ``dovecot`` master in the foreground as a child
of the test process, and manages ``passwd-file`` ``{PLAIN}`` users.  No
system configuration (``/etc/dovecot``) is read or modified.

Requirements: the ``dovecot-imapd`` package (Debian), running as root (Dovecot
drops privileges to the ``dovecot``/``dovenull`` system users itself), and a
``base_dir`` whose ancestors those users can traverse (see
:func:`ensure_traversable`).
"""

from __future__ import annotations

import atexit
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import imapclient

__all__ = [
    "DovecotServer",
    "DovecotError",
    "append_many",
    "ensure_traversable",
    "find_dovecot",
    "make_base_dir",
]

MAIL_USER = "dovecot"
LOGIN_USER = "dovenull"

# unix(7): sun_path is 108 bytes including the NUL.  Dovecot's longest socket
# below base_dir is "token-login/tokenlogin" (22 chars) plus a separator.
_MAX_RUN_DIR_LEN = 107 - 23

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}$")
_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)

_running: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or configured."""


def find_dovecot() -> str | None:
    """Return the path of the ``dovecot`` binary, or ``None`` if not installed.

    ``/usr/sbin`` is checked explicitly because it is often not on a non-root
    user's (or a CI job's) ``PATH``.
    """
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_traversable(path: pathlib.Path) -> None:
    """Make sure unprivileged users can reach ``path`` (``o+x`` on ancestors).

    Dovecot's mail and auth processes run as ``dovecot`` and must resolve
    absolute paths under the server directory.  Raises :class:`DovecotError`
    naming the first ancestor that blocks traversal.  It deliberately does not
    chmod ancestors: e.g. pytest resets ``/tmp/pytest-of-<user>`` to 0700 at
    every session start, which would break a server of a concurrent session.
    Use :func:`make_base_dir` for a suitable directory.
    """
    path = path.resolve()
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise DovecotError(
                f"{parent} is not traversable by other users (mode "
                f"{oct(mode & 0o777)}); Dovecot's '{MAIL_USER}' processes "
                f"cannot reach {path}. Put the server directory somewhere "
                f"world-traversable (e.g. under /tmp)."
            )


def make_base_dir(prefix: str = "dovecot-", parent: pathlib.Path | None = None) -> pathlib.Path:
    """Create and return a fresh, empty, world-traversable directory for a server.

    Defaults to the system temp dir (``/tmp``, mode 1777).  The caller removes
    it (``shutil.rmtree``) after :meth:`DovecotServer.stop`.
    """
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=parent)).resolve()
    path.chmod(0o755)
    ensure_traversable(path)
    return path


def _pick_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Dovecot sets SO_REUSEADDR too, so TIME_WAIT leftovers don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3, after the parenthesised command name (which may contain spaces).
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _sleep_into_next_second() -> None:
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.01)


def _parse_uid_set(raw: bytes) -> list[int]:
    uids: list[int] = []
    for part in raw.split(b","):
        if b":" in part:
            lo, hi = sorted(int(x) for x in part.split(b":"))
            uids.extend(range(lo, hi + 1))
        else:
            uids.append(int(part))
    return uids


class DovecotServer:
    """One Dovecot instance living entirely under ``base_dir``.

    Layout::

        base_dir/etc/dovecot.conf   generated config (rewritten on every start)
        base_dir/etc/users/<user>   passwd-file passdb, one file per user
        base_dir/run/               Dovecot base_dir (sockets, master.pid)
        base_dir/state/             Dovecot state_dir
        base_dir/log/dovecot.log    everything Dovecot logs
        base_dir/mail/<user>/       user homes; mail in ``Maildir/`` below

    Contract:

    * :meth:`start` returns only once the IMAP port accepts connections; on
      failure it raises :class:`DovecotError` (a ``RuntimeError``) containing
      the tail of the Dovecot log.
    * :meth:`stop` returns only after the master process has exited, so the
      same ``base_dir`` can be started again (by this or another instance);
      users and mail persist across stop/start.
    * :attr:`port` is picked at the first start and kept across restarts
      while it stays free, so clients holding ``(host, port)`` keep working.
    * :meth:`add_user` takes effect immediately, also while running.
      :meth:`set_password` / :meth:`remove_user` take effect when they return,
      which can take up to one second (see :meth:`_write_user_file`).
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        base_dir: pathlib.Path,
        *,
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.base_dir = pathlib.Path(base_dir).resolve()
        self.binary = binary or find_dovecot()
        self.startup_timeout = startup_timeout
        self.instance_name = f"pytest-dovecot-{uuid.uuid4().hex[:12]}"
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._users: dict[str, str] = self._read_users()

    # -- paths ---------------------------------------------------------------

    @property
    def etc_dir(self) -> pathlib.Path:
        return self.base_dir / "etc"

    @property
    def run_dir(self) -> pathlib.Path:
        """Dovecot's ``base_dir`` (sockets and ``master.pid``)."""
        return self.base_dir / "run"

    @property
    def state_dir(self) -> pathlib.Path:
        return self.base_dir / "state"

    @property
    def mail_root(self) -> pathlib.Path:
        return self.base_dir / "mail"

    @property
    def config_path(self) -> pathlib.Path:
        return self.etc_dir / "dovecot.conf"

    @property
    def users_dir(self) -> pathlib.Path:
        """One passwd-file per user, named after the user."""
        return self.etc_dir / "users"

    @property
    def log_path(self) -> pathlib.Path:
        return self.base_dir / "log" / "dovecot.log"

    @property
    def pid_path(self) -> pathlib.Path:
        return self.run_dir / "master.pid"

    def home_dir(self, user: str) -> pathlib.Path:
        """The user's home directory (``mail_root/<user>``)."""
        return self.mail_root / user

    def mail_dir(self, user: str) -> pathlib.Path:
        """The user's Maildir root (INBOX); other folders are ``.<Name>`` below.

        It only exists after the user's first login (Dovecot creates it).
        """
        return self.home_dir(user) / "Maildir"

    # -- state ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The IMAP port on :attr:`host`; only valid once started."""
        if self._port is None:
            raise DovecotError("DovecotServer has not been started yet")
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def users(self) -> dict[str, str]:
        """A copy of ``{username: password}``."""
        with self._lock:
            return dict(self._users)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the Dovecot log (empty if none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start Dovecot and wait until the IMAP port accepts connections.

        Raises :class:`DovecotError` if the binary is missing, the directory
        is unusable, or the server does not come up within
        ``startup_timeout`` seconds.
        """
        with self._lock:
            if self.running:
                return
            if not self.binary:
                raise DovecotError("dovecot binary not found (install the 'dovecot-imapd' package)")
            if os.geteuid() != 0:
                raise DovecotError("DovecotServer must run as root")
            self._prepare_dirs()
            self._kill_stale_master()

            last_error: DovecotError | None = None
            # A port picked by bind(0) can be grabbed by someone else before
            # Dovecot binds it, so retry a few times with a fresh one.
            for attempt in range(3):
                if self._port is None or attempt > 0 or not _port_is_free(self.host, self._port):
                    self._port = _pick_free_port(self.host)
                self._write_config()
                try:
                    self._spawn_and_wait()
                    _running.add(self)
                    return
                except DovecotError as exc:
                    last_error = exc
                    if "Address already in use" not in str(exc):
                        raise
            assert last_error is not None
            raise last_error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Dovecot and wait for the master to exit; no-op if not running.

        The master is signalled via ``run/master.pid`` (SIGTERM, escalating to
        SIGKILL after ``timeout``), which also covers a master left behind by
        an earlier process using the same ``base_dir``.
        """
        with self._lock:
            pid = self._read_pid()
            if pid is None and self._proc is not None and self._proc.poll() is None:
                pid = self._proc.pid
            if pid is not None:
                self._terminate(pid, timeout)
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None
            _running.discard(self)
            self._end_sessions()

    def _end_sessions(self) -> None:
        """Ends this instance's imap processes, which outlive the master on Dovecot 2.3.

        Without this a "stopped" server would keep serving a client already logged in,
        and a test of a server going away mid-sync would test nothing. Only processes
        whose title carries this server's unique instance name are signalled.
        """
        marker = f"{self.instance_name}/imap".encode()
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in title:
                try:
                    os.kill(int(entry.name), signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def restart(self) -> None:
        """:meth:`stop` then :meth:`start`; users, mail and (if free) port persist."""
        self.stop()
        self.start()

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- users ---------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Create a user; usable immediately, also while running.

        Raises ``ValueError`` for an existing user or unsafe name/password
        (names are used in paths; ``:`` and line breaks would corrupt the
        passwd-file).
        """
        self._validate(name, password)
        with self._lock:
            if name in self._users:
                raise ValueError(f"user {name!r} already exists")
            self._write_user_file(name, password)
            self._users[name] = password

    def set_password(self, name: str, password: str, *, wait: bool = True) -> None:
        """Change an existing user's password (``KeyError`` if unknown).

        With ``wait`` (default) this blocks until Dovecot is guaranteed to
        see the change (<= 1 s); without it the old password may keep working
        for up to a second.
        """
        self._validate(name, password)
        with self._lock:
            if name not in self._users:
                raise KeyError(name)
            self._write_user_file(name, password)
            self._users[name] = password
        if wait:
            _sleep_into_next_second()

    def remove_user(self, name: str, *, wait: bool = True) -> None:
        """Delete a user's login (``KeyError`` if unknown); mail is kept.

        ``wait`` as for :meth:`set_password`.
        """
        with self._lock:
            del self._users[name]
            (self.users_dir / name).unlink(missing_ok=True)
        if wait:
            _sleep_into_next_second()

    def client(self, user: str, password: str, *, timeout: float | None = 30.0) -> imapclient.IMAPClient:
        """Return a plaintext :class:`imapclient.IMAPClient` logged in as ``user``.

        The caller owns the connection (call ``logout()``).  A failed login
        raises ``imapclient.exceptions.LoginError`` and closes the socket.
        """
        conn = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            conn.login(user, password)
        except BaseException:
            try:
                conn.shutdown()
            except OSError:
                pass
            raise
        return conn

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _validate(name: str, password: str) -> None:
        if not _USERNAME_RE.match(name):
            raise ValueError(f"unsupported username {name!r}")
        if not password or any(c in password for c in ":\r\n\0"):
            raise ValueError("password must be non-empty without ':' or line breaks")

    def _read_users(self) -> dict[str, str]:
        users: dict[str, str] = {}
        if not self.users_dir.is_dir():
            return users
        for path in self.users_dir.iterdir():
            if path.name.startswith("."):
                continue
            fields = path.read_text().split(":")
            if len(fields) >= 2 and fields[1].startswith("{PLAIN}"):
                users[fields[0]] = fields[1].rstrip("\n")[len("{PLAIN}") :]
        return users

    def _write_user_file(self, name: str, password: str) -> None:
        """Atomically (re)write ``name``'s passwd-file.

        Why one file per user: Dovecot 2.3's passwd-file driver stats a file
        at most once per second (``passwd_file_sync``: ``last_sync_time ==
        ioloop_time`` serves the cached copy).  With a single shared file, a
        user added in the same second as any other login would be rejected.
        A per-user path (``%u`` in the passdb args) means a new user's file
        has never been cached, so :meth:`add_user` is instant; rewrites of an
        existing file are only guaranteed visible from the next second on,
        which the callers wait for.
        """
        self.users_dir.mkdir(parents=True, exist_ok=True)
        target = self.users_dir / name
        tmp = self.users_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        tmp.chmod(0o644)
        # Dovecot reloads when (mtime in whole seconds, size) differ from the
        # cached copy; force a new mtime second so same-length passwords
        # written within one second are still detected.
        mtime_s = time.time_ns() // 1_000_000_000
        if target.exists():
            mtime_s = max(mtime_s, target.stat().st_mtime_ns // 1_000_000_000 + 1)
        os.utime(tmp, ns=(mtime_s * 1_000_000_000,) * 2)
        os.replace(tmp, target)

    def _prepare_dirs(self) -> None:
        if len(str(self.run_dir)) > _MAX_RUN_DIR_LEN:
            raise DovecotError(
                f"{self.run_dir} is too long for unix socket paths "
                f"(max {_MAX_RUN_DIR_LEN} chars); use a shorter base_dir"
            )
        for d in (self.base_dir, self.etc_dir, self.run_dir, self.state_dir, self.log_path.parent, self.mail_root):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        ensure_traversable(self.base_dir)
        try:
            pw = pwd.getpwnam(MAIL_USER)
            pwd.getpwnam(LOGIN_USER)
        except KeyError as exc:
            raise DovecotError(f"system user missing ({exc}); is dovecot-core installed?") from None
        os.chown(self.mail_root, pw.pw_uid, pw.pw_gid)
        self.users_dir.mkdir(exist_ok=True)
        self.users_dir.chmod(0o755)

    def _write_config(self) -> None:
        assert self._port is not None
        # %u in the home path is safe: usernames are validated on add_user.
        conf = f"""\
# Generated by tests/dovecot.py - rewritten on every start.
instance_name = {self.instance_name}
base_dir = {self.run_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
protocols = imap
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 0
auth_verbose = yes
auth_failure_delay = 0
default_login_user = {LOGIN_USER}
default_internal_user = {MAIL_USER}
first_valid_uid = 1
shutdown_clients = yes

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_USER} home={self.mail_root}/%u
}}

mail_location = maildir:~/Maildir
# Test data is disposable; fsync would dominate bulk seeding time.
mail_fsync = never
maildir_copy_with_hardlinks = yes
mail_max_userip_connections = 1000

namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self._port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = 1024
}}
# Without this socket auth cannot reach anvil and disables its per-IP penalty,
# which would otherwise delay every login from 127.0.0.1 (all tests share it)
# by up to 15 s after a test deliberately fails one.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        self.config_path.write_text(conf)
        self.config_path.chmod(0o644)

    def _read_pid(self) -> int | None:
        """The master pid from ``run/master.pid`` if it is this directory's master.

        A stale pid file (master SIGKILLed) may name a recycled pid, so the
        process must also be alive and started with our config path.
        """
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if str(self.config_path).encode() not in cmdline.split(b"\0"):
            return None
        return pid if _pid_alive(pid) else None

    def _kill_stale_master(self) -> None:
        # A master left behind by a crashed test run would make Dovecot refuse
        # to start ("already running") on this base_dir.
        pid = self._read_pid()
        if pid is not None:
            self._terminate(pid, 10.0)

    def _terminate(self, pid: int, timeout: float) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._wait_exit(pid, timeout):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not self._wait_exit(pid, 5.0):
            raise DovecotError(f"dovecot master {pid} did not exit after SIGKILL")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        own = self._proc is not None and self._proc.pid == pid
        while time.monotonic() < deadline:
            if own:
                assert self._proc is not None
                try:
                    self._proc.wait(timeout=0.05)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not _pid_alive(pid):
                return True
            time.sleep(0.02)
        return False

    def _spawn_and_wait(self) -> None:
        assert self.binary is not None and self._port is not None
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        console = self.base_dir / "log" / "console.log"
        with console.open("ab") as out:
            # -F keeps the master as our child, so stop() can reap it and
            # never sees an unreaped zombie that looks alive.
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self._port), timeout=1.0) as s:
                    s.settimeout(2.0)
                    if s.recv(256).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)

        rc = self._proc.poll()
        if rc is None:
            self.stop()
            outcome = f"did not accept connections within {self.startup_timeout:g}s"
        else:
            outcome = f"exited with code {rc}"
        self._proc = None
        log = self._log_since(log_offset)
        console_tail = "\n".join(console.read_text(errors="replace").splitlines()[-20:]) if console.exists() else ""
        raise DovecotError(
            f"dovecot on {self.host}:{self._port} {outcome}.\n"
            f"--- dovecot output ---\n{console_tail}\n"
            f"--- tail of {self.log_path} ---\n{log}"
        )

    def _log_since(self, offset: int, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def append_many(
    client: imapclient.IMAPClient,
    folder: str,
    messages: Iterable[bytes],
    flags: Sequence[str | bytes] = (),
    *,
    batch_size: int = 500,
) -> list[int]:
    """Append ``messages`` to ``folder`` quickly; return their UIDs in order.

    Uses MULTIAPPEND (RFC 3502) with LITERAL+ in batches of ``batch_size``, so
    each batch is one pipelined command instead of two round trips per
    message (imapclient's ``append``); falls back to plain ``append`` when the
    server lacks either.  Every message goes through Dovecot, so UIDs,
    MODSEQs and indexes are exactly as for any client append; each batch is
    atomic.  ``flags`` apply to every message.  Raises
    ``imapclient.exceptions.IMAPClientError`` if the server refuses a batch.

    UIDs come from APPENDUID (UIDPLUS); the list is empty if not advertised.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    flag_list = list(flags)
    uids: list[int] = []
    pipelined = client.has_capability("MULTIAPPEND") and client.has_capability("LITERAL+")

    if not pipelined:
        for msg in messages:
            resp = client.append(folder, msg, flags=flag_list)
            m = _APPENDUID_RE.search(resp if isinstance(resp, bytes) else resp.encode())
            if m:
                uids.extend(_parse_uid_set(m.group(2)))
        return uids

    it: Iterator[bytes] = iter(messages)
    while batch := list(islice(it, batch_size)):
        items = [{"msg": m, "flags": flag_list} for m in batch] if flag_list else batch
        typ, data = client.multiappend(folder, items)
        text = b" ".join(d for d in data if isinstance(d, bytes))
        if typ != "OK":
            raise imapclient.exceptions.IMAPClientError(
                f"APPEND of {len(batch)} messages to {folder!r} failed: {typ} {text!r}"
            )
        m = _APPENDUID_RE.search(text)
        if m:
            uids.extend(_parse_uid_set(m.group(2)))
    return uids


@atexit.register
def _stop_leftover_servers() -> None:
    # Dovecot runs as a separate process tree; don't leave it behind if a test
    # session dies without running fixture teardown.
    for server in list(_running):
        try:
            server.stop(timeout=5.0)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
