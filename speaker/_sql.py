"""The speaker store's SQL plumbing: where a store is, the engine, transactions, dialects.

:class:`Database` is one SQLite file (WAL mode) or one PostgreSQL database reached through
SQLAlchemy Core; it knows nothing about speakers.  Every query runs in the calling thread's
transaction (:meth:`Database.tx`): a read snapshot, or the write lock that writers take one at a
time (``BEGIN IMMEDIATE`` on SQLite; a transaction-level advisory lock on PostgreSQL, which then
reads at READ COMMITTED so each writer sees the previous writer's commit).  Nested calls join the
thread's current transaction, so a method that opens one makes every query below it see one
state of the store.  Readers see a consistent snapshot (WAL on SQLite, REPEATABLE READ on
PostgreSQL).  Each transaction takes its own connection from the engine's pool, so one
``Database`` may be used from many threads at once.  Every database error raises
:class:`StoreError` naming the store and the reason (its first line).

SQLAlchemy is imported when a database is connected, not when this module is.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from ._interrupt import check as check_interrupt
from ._interrupt import deferred
from .model_io import ModelError

__all__ = ["StoreError", "StoreUnavailable", "StoreInvalid", "Database", "store_location", "one_snapshot",
           "unavailable"]

_PG_LOCK = 0x676d6d657874                                  # pg_advisory_xact_lock key of the store's writers
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class StoreError(ModelError):
    """A speaker store that cannot be used (unreadable, malformed, another UBM or version),
    or an operation it refuses (unknown speaker, nothing usable to enrol)."""


class StoreUnavailable(StoreError):
    """The store cannot be read or written *now*: a read-only file or database, a full disk, an
    I/O error, a lock held too long, a server that cannot be reached.  Its contents are not in
    question; the service answers 503, the command line says the store cannot be written."""


class StoreInvalid(StoreError):
    """The store's contents are not valid (malformed rows, objects the store did not create,
    another format): the service answers 500."""


#: SQLite errors (sqlite3.OperationalError messages) and PostgreSQL SQLSTATE codes or classes
#: that say the store is unavailable rather than invalid.
_SQLITE_UNAVAILABLE = ("full", "readonly", "read-only", "locked", "busy", "disk i/o", "unable to open", "no space",
                       "permission")
_PG_UNAVAILABLE = ("08", "53", "57", "58", "25006", "42501", "55P03", "40001", "40P01")


def unavailable(exc: BaseException) -> bool:
    """True when a (DBAPI) exception says the store cannot be used now (see :class:`StoreUnavailable`)."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    if state:
        return any(state.startswith(p) for p in _PG_UNAVAILABLE)
    if type(orig).__module__.startswith("psycopg"):
        return type(orig).__name__ == "OperationalError"      # no SQLSTATE: the connection itself
    if isinstance(orig, OSError) or (type(orig).__module__.startswith("sqlalchemy") and orig is exc):
        return True                                   # e.g. the pool's timeout: no connection free
    text = str(orig).lower()
    return isinstance(orig, sqlite3.OperationalError) and any(p in text for p in _SQLITE_UNAVAILABLE)


def store_location(location: str | os.PathLike) -> tuple[str, str, Path | None]:
    """(backend, name, path) of a store given as a path or a database URL.

    ``backend`` is ``"sqlite"`` (a path, or ``sqlite:///relative.db`` / ``sqlite:////absolute.db``)
    or ``"postgresql"`` (``postgresql://`` or ``postgresql+psycopg://``; ``postgres://`` is
    accepted too); ``name`` is what messages print (the path, or the URL without its password);
    ``path`` the SQLite file (None for PostgreSQL).  Only parses: raises StoreError for an
    unsupported URL, and imports nothing heavy.
    """
    text = os.fspath(location)
    if not isinstance(text, str) or not _URL.match(text):
        return "sqlite", str(text), Path(text)
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+pysqlite"):
        if rest.startswith("/") and rest[1:] and "?" not in rest:
            return "sqlite", rest[1:], Path(rest[1:])
        raise StoreError(f"{text}: a SQLite store URL names a file, sqlite:///relative.db or "
                         "sqlite:////absolute/path.db (no in-memory database, no query options)")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return "postgresql", "postgresql://" + re.sub(r"^([^:@/]*):[^@/]*@", r"\1:***@", rest), None
    raise StoreError(f"{text}: unsupported store URL (a path, sqlite:///FILE or postgresql://...; "
                     "PostgreSQL through the psycopg 3 driver)")


#: SQLite's own tables (ANALYZE statistics, AUTOINCREMENT counters): not the store's, not refused.
_SQLITE_INTERNAL = frozenset({"sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"})


def _check_type():
    import sqlalchemy as sa
    return sa.CheckConstraint


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of a (DBAPI) exception, for one-line messages."""
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {msg[0] if msg else ''}"


@functools.lru_cache(maxsize=256)
def _text(query: str):
    """``?`` placeholders -> SQLAlchemy ``text()`` with named parameters ``:p0, :p1, ...``."""
    import sqlalchemy as sa
    parts = query.split("?")
    return sa.text("".join(p + (f":p{i}" if i < len(parts) - 1 else "") for i, p in enumerate(parts)))


def _params(params: Sequence) -> dict:
    return {f"p{i}": v for i, v in enumerate(params)}


def one_snapshot(method):
    """Run a method of an object with a ``_db`` (:class:`Database`) in one read transaction
    (its queries see one state of the store)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._db.tx():
            return method(self, *args, **kwargs)
    return run


class Database:
    """One SQLite file or PostgreSQL database behind a pooled SQLAlchemy engine.

    ``location``: a path, ``sqlite:///FILE`` or ``postgresql://...`` (:func:`store_location`);
    ``timeout``: seconds a write waits for another writer (and a PostgreSQL connection for the
    pool).  :meth:`connect` makes the engine; until then only the parsed location is known.
    """

    def __init__(self, location: str | os.PathLike, *, timeout: float = 60.0) -> None:
        self.location = location
        self.backend, self.name, self.file = store_location(location)
        #: What messages print: the SQLite file, or the URL without its password.
        self.path: Path | str = self.file if self.file is not None else self.name
        self.timeout = float(timeout)
        self.engine = None
        #: The SQLite file is read only (not writable, or its folder is not; :meth:`_sqlite_mode`).
        self.read_only = self.immutable = False
        self._local = threading.local()

    # ------------------------------------------------------------------ the engine
    def connect(self) -> None:
        """Make the engine (its pool gives each transaction, hence each thread, a connection)."""
        import sqlalchemy as sa
        if self.file is not None:
            self.check_files()
            mode = self._sqlite_mode()
            uri = self.file.absolute().as_uri() + "?mode=" + mode
            timeout = self.timeout

            def creator():
                db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
                try:
                    db.execute("PRAGMA trusted_schema=OFF")   # no function runs from the schema itself
                    if mode == "rwc":
                        db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA foreign_keys=ON")
                    db.execute("PRAGMA synchronous=NORMAL")
                except BaseException:
                    db.close()
                    raise
                return db
            # connections are cheap: as many as there are threads at once (max_overflow=-1)
            engine = sa.create_engine("sqlite+pysqlite://", creator=creator, poolclass=sa.pool.QueuePool,
                                      pool_size=4, max_overflow=-1)

            @sa.event.listens_for(engine, "begin")
            def begin(conn):                           # pysqlite's own transaction handling is off
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("gmmext_write")
                                     else "BEGIN")
            self.engine = engine
            return
        try:
            import psycopg  # noqa: F401  (the driver; a clear message if it is missing)
        except ImportError:
            raise StoreError(f"{self.path}: PostgreSQL stores need the psycopg 3 driver: "
                             "pip install 'psycopg[binary]' (or the package's [postgres] extra)") from None
        url = sa.engine.make_url(os.fspath(self.location))
        url = url.set(drivername="postgresql+psycopg")
        try:
            self.engine = sa.create_engine(url, pool_size=4, max_overflow=28, pool_timeout=self.timeout,
                                           pool_pre_ping=True, isolation_level="REPEATABLE READ",
                                           connect_args={"connect_timeout": max(1, int(min(self.timeout, 30)))})
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise StoreError(f"{self.path}: bad database URL: {exc}") from None

    def _sqlite_mode(self) -> str:
        """How to open the SQLite file: ``rwc`` (read and write, create), ``ro`` (the file is not
        writable: readers need no write access), or ``ro&immutable=1``.

        A store in WAL mode is read through its ``-shm`` file, which SQLite must be able to create
        in the store's folder.  When the folder is not writable and there is no ``-shm`` file, the
        file is opened *immutable*: read as it is, without locks.  The trade-off: SQLite then
        assumes nobody changes the file, so a writer with write access to the folder would go
        unseen (or be read half-way); and a ``-wal`` file's changes, not yet copied into the
        store file, would be ignored, so a non-empty ``-wal`` is refused (StoreUnavailable)
        instead.  (``attributes`` of the read-only modes: :attr:`read_only`, :attr:`immutable`.)
        """
        f = self.file
        folder = f.parent if str(f.parent) else Path(".")
        wal, shm = (f.with_name(f.name + s) for s in ("-wal", "-shm"))
        self.read_only = self.immutable = False
        if not f.exists():
            return "rwc"
        if os.access(f, os.W_OK) and os.access(folder, os.W_OK | os.X_OK):
            return "rwc"
        self.read_only = True
        if os.access(folder, os.W_OK | os.X_OK) or shm.exists():
            return "ro"
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreUnavailable(f"{self.path}: cannot read: its -wal file holds changes not yet in the store file, "
                                   "and reading them needs write access to the store's folder")
        self.immutable = True
        return "ro&immutable=1"

    def check_files(self) -> None:
        """The SQLite file and its companions (``-wal``, ``-shm``, ``-journal``) are regular files
        or absent: SQLite would open a FIFO (hanging) or a device and create ``NAME-journal``
        beside it."""
        import stat
        from ._atomic import file_kind
        for f in (self.file, *(self.file.with_name(self.file.name + s) for s in ("-wal", "-shm", "-journal"))):
            try:
                mode = os.stat(f).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.fail(f"{f}: {exc.strerror or exc}")
            if not stat.S_ISREG(mode):
                self.fail(f"{f} is {file_kind(mode)}, not a SQLite file")

    def close(self) -> None:
        """Close the database connections (of every thread)."""
        if self.engine is not None:
            with deferred(raise_after=False):          # as in tx()
                self.engine.dispose()

    def fail(self, why: str):
        """Raise StoreError: the store is not usable, because ``why``."""
        raise StoreInvalid(f"{self.path}: not a usable speaker store: {why}")

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def tx(self, write: bool = False) -> Iterator:
        """The calling thread's transaction (a read snapshot, or the write lock); nested calls
        join the thread's current transaction."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            if write and not self._local.write:
                raise RuntimeError("a write inside a read transaction")
            yield current
            return
        import sqlalchemy as sa
        try:
            conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, "cannot connect: ") from None
        try:
            try:
                if self.backend == "sqlite":
                    conn.execution_options(gmmext_write=write)
                    conn.begin()
                else:
                    conn.begin()
                    if write:                          # one writer at a time, each sees the last commit
                        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"),
                                     {"t": f"{int(self.timeout * 1000)}ms"})
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                    else:
                        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            except sa.exc.DBAPIError as exc:
                raise self._error(exc, f"cannot {'write' if write else 'read'}: ") from None
            self._local.conn, self._local.write = conn, write
            try:
                yield conn
                if write:
                    check_interrupt()          # a Ctrl-C swallowed on the way: nothing is committed
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._local.conn = None
            try:
                conn.commit()                          # e.g. disk full: nothing of the transaction stays
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                raise self._error(exc, "cannot write: " if write else "") from None
        finally:
            # SQLAlchemy logs, with a traceback, an interrupt that cuts a connection's reset or close;
            # after a commit the work is done: the next check raises an interrupt recorded now
            with deferred(raise_after=False):
                conn.close()

    def write(self):
        """The write transaction (one writer at a time; see the module's docstring)."""
        return self.tx(write=True)

    # ------------------------------------------------------------------ queries
    @contextlib.contextmanager
    def _errors(self):
        import sqlalchemy as sa
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException, what: str = "") -> StoreError:
        """The StoreError of a database error: :class:`StoreUnavailable` (the store cannot be used
        now: "cannot write" when a write failed) or :class:`StoreInvalid`."""
        if unavailable(exc):
            write = getattr(self._local, "write", False) or what == "cannot write: "
            return StoreUnavailable(f"{self.path}: {what or ('cannot write: ' if write else 'cannot read: ')}"
                                    f"{first_line(exc)}")
        return StoreInvalid(f"{self.path}: not a usable speaker store: {what}{first_line(exc)}")

    def run(self, query: str, params: Sequence = ()):
        """Execute ``query`` (``?`` placeholders) in the thread's transaction (or a new one)."""
        with self.tx() as conn, self._errors():
            return conn.execute(_text(query), _params(params))

    def rows(self, query: str, params: Sequence = ()) -> list[tuple]:
        """Rows of a query (``?`` placeholders), as tuples."""
        with self.tx() as conn, self._errors():
            return [tuple(r) for r in conn.execute(_text(query), _params(params)).fetchall()]

    def many(self, query: str, rows: Iterable[Sequence]) -> None:
        """Execute ``query`` once per parameter row, in the thread's (write) transaction."""
        rows = [_params(r) for r in rows]
        if rows:
            with self.tx() as conn, self._errors():
                conn.execute(_text(query), rows)

    def tables(self) -> set[str]:
        """The names of the database's tables."""
        import sqlalchemy as sa
        with self.tx() as conn, self._errors():
            return set(sa.inspect(conn).get_table_names())

    def check_schema(self, metadata, tables: Sequence[str], optional: Sequence[str] = (),
                     prefixes: Mapping[str, int] | None = None) -> None:
        """Refuse (:meth:`fail`) a database holding anything the store did not create.

        The store's objects are the ``tables`` of the SQLAlchemy ``metadata`` (and, if present, the
        ``optional`` ones), each with exactly its columns in order (``prefixes``: the table may
        have only its first N or more columns, a store of an earlier format), no column default,
        generated or identity column, exactly its foreign keys and named CHECK constraints, and
        no index or unique constraint beyond its primary key.  Anything else is refused: other
        tables, views, materialized views, sequences, foreign tables, triggers, PostgreSQL rules
        and row-level policies (in the store's schema), SQLite virtual tables.  A planted
        trigger would run on the store's next write, a rule rewrite it, a column default or a
        foreign key with ``ON DELETE CASCADE`` change what it writes or deletes.  (PostgreSQL
        event triggers, which are database-wide and need a superuser, are not looked at.)
        """
        import sqlalchemy as sa
        prefixes = dict(prefixes or {})
        allowed = set(tables) | set(optional)
        with self.tx() as conn, self._errors():
            ins = sa.inspect(conn)
            names = set(ins.get_table_names())
            extra = sorted(n for n in names - allowed if not (self.backend == "sqlite" and n in _SQLITE_INTERNAL))
            if extra:
                self.fail(f"tables the store did not create: {extra[:10]} (a store needs a database of its own)")
            missing = sorted(set(tables) - names)
            if missing:
                self.fail(f"missing tables {missing}")
            others = [("view", v) for v in ins.get_view_names()]
            if self.backend == "sqlite":
                for kind, name, sql in conn.exec_driver_sql("SELECT type, name, sql FROM sqlite_master"):
                    if kind in ("table", "index", "view"):
                        if kind == "table" and name not in _SQLITE_INTERNAL and \
                                not str(sql or "").lstrip().upper().startswith("CREATE TABLE"):
                            others.append(("virtual table", name))
                    else:
                        others.append((kind, name))
            else:
                others += [("materialized view", v) for v in ins.get_materialized_view_names()]
                others += [("sequence", v) for v in ins.get_sequence_names()]
                others += [("foreign table", v) for v in ins.get_foreign_table_names()]
                for kind, query in (("trigger", "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                                                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"),
                                    ("rule", "SELECT rulename FROM pg_rules WHERE schemaname = current_schema()"),
                                    ("row-level policy", "SELECT policyname FROM pg_policies "
                                                         "WHERE schemaname = current_schema()")):
                    others += [(kind, name) for name, in conn.exec_driver_sql(query)]
            if others:
                self.fail("objects the store did not create: " + ", ".join(f"{k} {n!r}" for k, n in others[:10]))
            for t in sorted(names & allowed):
                self._check_table(ins, metadata.tables[t], prefixes.get(t))

    def _check_table(self, ins, table, prefix: int | None) -> None:
        """One table against its definition (see :meth:`check_schema`)."""
        cols = ins.get_columns(table.name)
        have, want = [c["name"] for c in cols], [c.name for c in table.columns]
        if have != want[:len(have)] or len(have) < (len(want) if prefix is None else prefix):
            self.fail(f"table {table.name} has the columns {have[:40]}, not the store's {want}")
        odd = [c["name"] for c in cols if c.get("default") is not None or c.get("computed") or c.get("identity")]
        if odd:
            self.fail(f"table {table.name}: columns with a default or generated value the store did not create: {odd}")
        fks = sorted((tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                      ((fk.get("options") or {}).get("ondelete") or "").upper()) for fk in ins.get_foreign_keys(table.name))
        ours = sorted((tuple(fk.column_keys), fk.referred_table.name, tuple(e.column.name for e in fk.elements),
                       (fk.ondelete or "").upper()) for fk in table.foreign_key_constraints)
        if fks != ours:
            self.fail(f"table {table.name}: foreign keys {fks} are not the store's {ours}")
        checks = sorted(c.get("name") or "" for c in ins.get_check_constraints(table.name))
        if checks != sorted(c.name for c in table.constraints if isinstance(c, _check_type())):
            self.fail(f"table {table.name}: CHECK constraints the store did not create: {checks}")
        extra = [i["name"] for i in ins.get_indexes(table.name)] + [u["name"] for u in ins.get_unique_constraints(table.name)]
        if extra:
            self.fail(f"table {table.name}: indexes or unique constraints the store did not create: {extra[:10]}")

    def create(self, metadata, tables: Sequence[str]) -> None:
        """Create ``tables`` of a SQLAlchemy ``MetaData`` that do not exist yet."""
        with self.tx() as conn, self._errors():
            metadata.create_all(conn, tables=[metadata.tables[t] for t in tables], checkfirst=True)
