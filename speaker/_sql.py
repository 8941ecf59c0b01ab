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
from typing import Iterable, Iterator, Sequence

from .model_io import ModelError

__all__ = ["StoreError", "Database", "store_location", "one_snapshot"]

_PG_LOCK = 0x676d6d657874                                  # pg_advisory_xact_lock key of the store's writers
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class StoreError(ModelError):
    """A speaker store that cannot be used (unreadable, malformed, another UBM or version),
    or an operation it refuses (unknown speaker, nothing usable to enrol)."""


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
        self._local = threading.local()

    # ------------------------------------------------------------------ the engine
    def connect(self) -> None:
        """Make the engine (its pool gives each transaction, hence each thread, a connection)."""
        import sqlalchemy as sa
        if self.file is not None:
            uri = self.file.absolute().as_uri() + "?mode=rwc"
            timeout = self.timeout

            def creator():
                db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
                try:
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

    def close(self) -> None:
        """Close the database connections (of every thread)."""
        if self.engine is not None:
            self.engine.dispose()

    def fail(self, why: str):
        """Raise StoreError: the store is not usable, because ``why``."""
        raise StoreError(f"{self.path}: not a usable speaker store: {why}")

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
            self.fail(f"cannot connect: {first_line(exc)}")
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
                raise StoreError(f"{self.path}: cannot {'write' if write else 'read'}: {first_line(exc)}") from None
            self._local.conn, self._local.write = conn, write
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._local.conn = None
            try:
                conn.commit()                          # e.g. disk full: nothing of the transaction stays
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                raise StoreError(f"{self.path}: {first_line(exc)}") from None
        finally:
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
            self.fail(first_line(exc))

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

    def create(self, metadata, tables: Sequence[str]) -> None:
        """Create ``tables`` of a SQLAlchemy ``MetaData`` that do not exist yet."""
        with self.tx() as conn, self._errors():
            metadata.create_all(conn, tables=[metadata.tables[t] for t in tables], checkfirst=True)
