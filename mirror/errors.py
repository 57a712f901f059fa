"""The mirror's own exceptions, raised by the library layers and mapped to exit codes in `cli.py`.

    MirrorError                 base; `exit_code` is what cron sees
    ├── InputError              2: bad IDs, unreadable file, bad option values
    ├── FatalError              3: the run cannot go on
    │   ├── ApiKeyRejected          the API answered 401/403
    │   ├── ApiRedirected           the API answered a redirect: --base-url is not its address
    │   ├── ProxyRejected           the proxy in between answered 407: its credentials
    │   ├── ApiUnreachable          the API does not answer: not reached, or silent behind a gateway
    │   ├── DatabaseUnavailable     cannot connect, wrong password, not a database
    │   │   └── TransientDatabaseError  may pass (a lost session, ...): tried once more first
    │   ├── TooManyDeletions        the deletion guard: implausibly many 404s of mirrored images
    │   ├── ListingRunaway          the order listing repeats a page token or never ends
    │   ├── SpoolFailed             the run's list of image IDs found no room in TMPDIR
    │   ├── SchemaMismatch          the database's revision is newer than / unknown to this code
    │   ├── NoMirror                `status`/`db current`: no mirror there (nothing is created)
    │   └── OutputFailed            standard output could not be written (a full disk)
    ├── LockHeld                75: another sync holds the database's lock
    │   └── DatabaseBusy            another process held a SQLite lock past the timeout
    └── Interrupted             130: SIGINT/SIGTERM/SIGHUP, fetched work committed

    InvalidPayload              one image's body is unusable: recorded as a failure, the run goes on

Messages say what was wrong and what to do; they never carry the API key or a password.
"""

from __future__ import annotations


class MirrorError(Exception):
    exit_code = 1


class InputError(MirrorError):
    exit_code = 2


class FatalError(MirrorError):
    exit_code = 3


class ApiKeyRejected(FatalError):
    pass


class ApiRedirected(FatalError):
    pass


class ProxyRejected(FatalError):
    pass


class ApiUnreachable(FatalError):
    pass


class DatabaseUnavailable(FatalError):
    pass


class TransientDatabaseError(DatabaseUnavailable):
    """A database error that may pass, its transaction rolled back whole: the session ended
    under a statement (a restart, a terminated session), a serialization failure or deadlock,
    a cancelled statement, an I/O error (the driver's OperationalError; not SQLite's lock held
    by another process, which has been waited for already). A step that meets one is done
    once more, on a new session if need be, before the run gives up."""


class SchemaMismatch(FatalError):
    pass


class TooManyDeletions(FatalError):
    pass


class ListingRunaway(FatalError):
    pass


class NoMirror(FatalError):
    pass


class SpoolFailed(FatalError):
    """The temporary file that holds a run's image IDs could not be made or written (TMPDIR
    full or not writable): before anything is fetched."""


class LockHeld(MirrorError):
    exit_code = 75


class DatabaseBusy(LockHeld):
    pass


class Interrupted(MirrorError):
    exit_code = 130


class InvalidPayload(ValueError):
    """A response body that is not a JSON object for the requested image (per image, not fatal)."""


class OutputFailed(FatalError):
    pass
