"""Core statements compiled once per backend and run on the driver's connection directly: the hot path's statements.

SQLAlchemy spends 50–60 µs of CPU around each statement it runs for us on the async engine (a greenlet, an execution
context, a result object), where SQLite itself takes 2–3 µs for a small indexed statement. A `Prepared` statement is
compiled once per dialect into its SQL text, the order of its parameters, the values it carries itself (a status
written into the statement) and the type processing of its parameters and result columns (the same processors
SQLAlchemy would use: JSON, UTC datetimes); `run` hands the text to the driver in the caller's transaction
(a connection from `Database.connection()`, or an ORM session's) and returns plain rows.

What stays SQLAlchemy's: the transaction (begin, commit, rollback, the pool; except `Database.run()`'s on SQLite) and
every other statement. Errors from
the driver are raised as SQLAlchemy raises them (`OperationalError`, `DataError`, … with the parameters hidden), so
callers tell a transient failure from a bad value the same way.

Only for statements whose parameters are all named `bindparam`s (no IN lists expanded at run time), with result
column names unique (as a `Row`'s attributes).
"""

from __future__ import annotations

import operator
import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import psycopg
from sqlalchemy import ColumnDefault, Float, Numeric, bindparam, insert, inspect, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from storage import postgres_statements
from storage.db import DRIVER, Database, Raw, SessionOnDemand
from storage.sqlite_inline import InlineConnection

Processor = Callable[[Any], Any] | None
Where = AsyncConnection | AsyncSession | Raw | SessionOnDemand  # a transaction prepared statements run in
_NOT_FIXED = object()  # a parameter the caller gives (not a value the statement carries)


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str  # with positional parameters: `?` for SQLite, `$1`, `$2` … for PostgreSQL
    wire: bytes  # `sql` encoded, as libpq takes it
    # The parameters in order: name, bind processor, fixed value (one the statement carries itself) or _NOT_FIXED
    positional: tuple[tuple[str, Processor, Any], ...]
    row: Any  # the row type (a namedtuple), or None without result columns
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # the result columns that have a processor, by position


@dataclass(frozen=True, slots=True)
class Ran:
    """What a prepared statement returned: its rows (with the result columns as attributes), and the rows it changed."""

    rows: list[Any]
    rowcount: int

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Prepared:
    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found

    async def run(
        self, where: Where, parameters: Mapping[str, Any], *, commit: bool = False
    ) -> Ran:
        """Run in the transaction of `where`: `Database.run()`'s, a Core connection's, or an ORM session's (one
        made on demand, or not yet made).
        `commit`: see `run_together`."""
        raw = await raw_of(where)
        driver = raw.driver
        if isinstance(driver, InlineConnection):  # SQLite, where a statement costs a few µs: no list of one made
            compiled = self.compiled(raw.dialect)
            try:
                rows, rowcount = await driver.run(compiled.sql, _positional(compiled, parameters))
            except sqlite3.Error as exc:
                raise _as_sqlalchemy(exc, compiled.sql) from exc
            return self._ran(compiled, rows, rowcount)
        (ran,) = await run_together(where, (self, parameters), commit=commit)
        return ran

    async def run_grouped(self, db: Database, parameters: Mapping[str, Any], *, order: int) -> Ran:
        """PostgreSQL: run whole on its own, urgently, in the transaction of the statements that arrive in the same
        pass of the event loop (`Database.run_grouped`: one round trip and one commit for all; `order`, the key they
        run in the order of)."""
        compiled = self.compiled(db.engine.dialect)
        statement = (compiled.wire, _positional(compiled, parameters), compiled.row is not None)
        try:
            rows, rowcount = await db.run_grouped(statement, order=order)
        except psycopg.Error as exc:
            raise _as_sqlalchemy(exc, compiled.sql) from exc
        return self._ran(compiled, rows, rowcount)

    def _ran(self, compiled: _Compiled, rows: list[Any], rowcount: int) -> Ran:
        if compiled.row is None:
            return Ran([], rowcount)
        make = compiled.row._make
        if not compiled.results:
            return Ran([make(row) for row in rows], rowcount)
        return Ran([make(_processed(compiled.results, row)) for row in rows], rowcount)


async def run_together(
    where: Where, *runs: tuple[Prepared, Mapping[str, Any]], commit: bool = False
) -> list[Ran]:
    """Run prepared statements one after another in the transaction of `where`, and what each returned. On
    PostgreSQL they go to the server together: one round trip for all (each is still a statement of its own: a later
    one sees what an earlier one did), except on a connection in autocommit (one round trip each, each its own
    transaction). The first failure is raised as SQLAlchemy raises it; those after it are not run.

    `commit` (the transaction's last statements): on PostgreSQL the transaction is committed in the same round trip
    when none failed (a session's pending changes are flushed first), and the block's own commit then finds nothing
    to do; on SQLite, where a commit costs no round trip, the block commits as ever."""
    if commit:
        await flushed(where)
    raw = await raw_of(where)
    driver, dialect = raw.driver, raw.dialect
    compiled = [prepared.compiled(dialect) for prepared, _parameters in runs]
    try:
        if isinstance(driver, InlineConnection):
            outcomes = [
                await driver.run(each.sql, _positional(each, parameters))
                for each, (_prepared, parameters) in zip(compiled, runs, strict=True)
            ]
        else:
            outcomes = await postgres_statements.execute(
                driver,
                *(
                    (each.wire, _positional(each, parameters), each.row is not None)
                    for each, (_prepared, parameters) in zip(compiled, runs, strict=True)
                ),
                commit=commit,
            )
    except (sqlite3.Error, psycopg.Error) as exc:
        raise _as_sqlalchemy(exc, "; ".join(each.sql for each in compiled)) from exc
    return [
        prepared._ran(each, rows, rowcount)
        for (prepared, _parameters), each, (rows, rowcount) in zip(runs, compiled, outcomes, strict=True)
    ]


def _as_sqlalchemy(exc: sqlite3.Error | psycopg.Error, sql: str) -> StatementError:
    """The driver's error as SQLAlchemy raises it (`OperationalError`, `DataError`, … with the parameters hidden)."""
    base = sqlite3.Error if isinstance(exc, sqlite3.Error) else psycopg.Error
    return DBAPIError.instance(sql, None, exc, base, hide_parameters=True)


def _processed(results: tuple[tuple[int, Callable[[Any], Any]], ...], row: Any) -> list[Any]:
    """A row's values through its columns' result processors (only the columns that have one)."""
    values = list(row)
    for index, processor in results:
        values[index] = processor(values[index])
    return values


def _positional(compiled: _Compiled, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parameters in the statement's order, each through its type's bind processor."""
    values = []
    for name, processor, fixed in compiled.positional:
        value = parameters[name] if fixed is _NOT_FIXED else parameters.get(name, fixed)
        values.append(value if processor is None else processor(value))
    return tuple(values)


async def raw_of(where: Where) -> Raw:
    """The driver connection (and dialect) under `where`'s transaction."""
    if isinstance(where, Raw):
        return where
    if isinstance(where, SessionOnDemand):  # its session, if made, runs in that transaction too
        where = where.where
        if isinstance(where, Raw):
            return where
    if isinstance(where, AsyncSession):
        info = where.info
        kept = info.get(DRIVER)
        if kept is not None:
            return cast(Raw, kept)
        raw = _raw(await where.connection())
        if DRIVER in info:  # a `Database.transaction()`'s session: its connection is its own until the block ends
            info[DRIVER] = raw
        return raw
    return _raw(where)


def _raw(connection: AsyncConnection) -> Raw:
    return Raw(connection.sync_connection.connection.driver_connection, connection.dialect)  # type: ignore[union-attr]


_PYFORMAT = re.compile(r"%\(([^)]+)\)s|%%")


def _dollar_numbered(sql: str, escaped: Mapping[str, str]) -> tuple[str, list[str]]:
    """psycopg's named placeholders (`%(name)s`, `%%` for a percent sign) as PostgreSQL's `$1`, `$2` …, one number a
    name however often it appears; and the parameters' names in their numbers' order (`escaped`: the compiler's
    names for parameters whose own name it could not write, `a.b` as `a_b`, by their own)."""
    own = {written: name for name, written in escaped.items()}
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        written = match.group(1)
        if written is None:
            return "%"
        name = own.get(written, written)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PYFORMAT.sub(number, sql), order


def _compile(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    fixed: dict[str, Any] = {}
    binds: list[tuple[str, Processor]] = []
    for name, bind in compiled.binds.items():
        if bind.expanding:
            raise ValueError(f"{name}: a prepared statement takes no IN list expanded at run time")
        if not bind.required:
            fixed[name] = bind.effective_value
        binds.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect)))
    columns = list(getattr(statement, "exported_columns", ()))
    row_type: Any = None
    results: list[tuple[int, Callable[[Any], Any]]] = []
    if columns:
        row_type = _row_type([column.key for column in columns])
        for index, column in enumerate(columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, _column_type_id(column, dialect))
            if processor is not None:
                results.append((index, processor))
    sql = compiled.string
    if dialect.positional:  # SQLite's qmark
        order = list(compiled.positiontup or ())
    elif dialect.driver == "psycopg" and dialect.paramstyle == "pyformat":
        sql, order = _dollar_numbered(sql, compiled.escaped_bind_names or {})
    else:
        raise ValueError(f"{dialect.name}+{dialect.driver}: no prepared statements for its parameter style")
    processors = dict(binds)
    positional = tuple((name, processors[name], fixed.get(name, _NOT_FIXED)) for name in order)
    return _Compiled(sql, sql.encode(), positional, row_type, tuple(results))


def _column_type_id(column: Any, dialect: Dialect) -> int | None:
    """The type id of a result column as the server describes it, where a type's result processing depends on it:
    PostgreSQL's numbers (a Float comes as float8, 701; a Numeric as numeric, 1700). None elsewhere."""
    if dialect.name != "postgresql" or not isinstance(column.type, (Numeric, Float)):
        return None
    return 701 if isinstance(column.type, Float) else 1700


def _row_type(names: list[str]) -> Any:
    """Rows with the result columns as attributes (and positions)."""
    return namedtuple("Row", names)


class Entity:
    """A mapped class's columns in a prepared statement, and its rows made into the ORM's objects without the ORM's
    query (which costs 200–500 µs of CPU for a few rows): as the ORM's loader makes them, persistent, for a session to
    take in (storage.db.SessionOnDemand) and flush their changes. `prefix` keeps the labels of several entities in
    one statement apart."""

    def __init__(self, model: type[Any], prefix: str) -> None:
        mapper = inspect(model)
        properties = list(mapper.column_attrs)
        self._mapper = mapper
        self._keys = tuple(prop.key for prop in properties)
        self._columns = tuple(prop.columns[0] for prop in properties)
        self._labels = tuple(f"{prefix}{key}" for key in self._keys)
        (primary,) = mapper.primary_key  # (one-column primary keys only)
        self._primary = self._labels[self._columns.index(primary)]
        self._manager = mapper.class_manager
        self._identity_class = mapper._identity_class
        self._getters: dict[type, Callable[[Any], tuple[Any, ...]]] = {}  # a statement's row class → its values

    def columns(self) -> list[Any]:
        """The entity's columns, labelled, for a statement's select list."""
        return [column.label(label) for column, label in zip(self._columns, self._labels, strict=True)]

    def _values(self, row: Any) -> tuple[Any, ...]:
        """The entity's values in `row`, in its keys' order: for a prepared statement's rows (named tuples), by
        position, one getter a row class made once."""
        if not isinstance(row, tuple):
            return tuple(getattr(row, label) for label in self._labels)
        getter = self._getters.get(type(row))
        if getter is None:
            fields = type(row)._fields  # type: ignore[attr-defined]
            positions = [fields.index(label) for label in self._labels]
            getter = self._getters[type(row)] = _getter(positions)
        return getter(row)

    def detached(self, row: Any) -> Any:
        """The object of the entity's columns in `row`, as the ORM's loader makes it for a row it has not seen
        (sqlalchemy.orm.loading): a new instance with the row's values and its identity key, persistent but in no
        session yet (None where an outer join found no row). `SessionOnDemand.hold` gives it to a session when one
        is made. (`make_transient_to_detached` and `Session.add` did the same at four times the CPU: they check
        cascades and events a plain row has none of.)"""
        primary = getattr(row, self._primary)
        if primary is None:
            return None
        instance = self._manager.new_instance()
        state = instance_state(instance)
        state.dict.update(zip(self._keys, self._values(row), strict=True))
        state.key, state.identity_token = (self._identity_class, (primary,), None), None
        return instance


# Rows a turn reads and writes while its ORM session is not made ------------------------------------------------------

Model = TypeVar("Model")


async def flushed(where: Where) -> None:
    """What waits to be written in `where`'s transaction (a session's changes, or held rows' on a `SessionOnDemand`),
    written before a statement that should see it, as the ORM's autoflush does before its queries."""
    if isinstance(where, SessionOnDemand):
        if where.changed():
            await where.flush()
    elif isinstance(where, AsyncSession) and (where.new or where.dirty or where.deleted):
        await where.flush()


class Lookup(Generic[Model]):
    """The rows of a mapped class that meet `criteria` (with named `bindparam`s), as the ORM's objects, in any
    transaction. On a turn's transaction whose session is not made (a `SessionOnDemand`): a prepared statement, run
    after the held rows' changes are written (`flushed`), whose rows are made into the ORM's objects (`Entity`) and,
    where `held`, held for the session (a row held already is returned as held: it may carry a change of this turn);
    changes to a held object are written at the turn's end (`write_held`) or taken in by the session if one is made.
    Otherwise (a session, one made on demand included) the ORM's own query, whose identity map answers for its rows.
    Rows nobody changes in a turn (a course's lessons and questions) are not held, and made again at each look-up."""

    def __init__(self, model: type[Model], *criteria: Any, order_by: tuple[Any, ...] = (), held: bool = True) -> None:
        self._entity = Entity(model, "")
        self._prepared = Prepared(select(*self._entity.columns()).where(*criteria).order_by(*order_by))
        self._orm = select(model).where(*criteria).order_by(*order_by)
        self._held = held

    async def all(self, where: AsyncSession | SessionOnDemand, parameters: Mapping[str, Any]) -> list[Model]:
        if isinstance(where, SessionOnDemand) and not where.made():
            await flushed(where)
            made = [self._entity.detached(row) for row in (await self._prepared.run(where, parameters)).rows]
            return [where.hold(each) for each in made] if self._held else made
        session = where.session if isinstance(where, SessionOnDemand) else where
        return list(await session.scalars(self._orm, parameters))

    async def first(self, where: AsyncSession | SessionOnDemand, parameters: Mapping[str, Any]) -> Model | None:
        found = await self.all(where, parameters)
        return found[0] if found else None


class RowById(Lookup[Model]):
    """A mapped row by its primary key, as `Session.get` finds it: a row the turn holds already is returned without
    a statement."""

    def __init__(self, model: type[Model], *, held: bool = True) -> None:
        (primary,) = inspect(model).primary_key
        super().__init__(model, primary == bindparam("id"), held=held)
        self._model = model

    async def get(self, where: AsyncSession | SessionOnDemand, primary: Any) -> Model | None:
        if isinstance(where, SessionOnDemand) and not where.made():
            found = where.held(identity_key(self._model, primary))
            if found is not None:
                return cast(Model, found)
            return await self.first(where, {"id": primary})
        session = where.session if isinstance(where, SessionOnDemand) else where
        return await session.get(self._model, primary)


_UPDATES: dict[tuple[Any, tuple[str, ...]], Prepared] = {}
_INSERTS: dict[tuple[Any, tuple[str, ...]], tuple[Prepared, tuple[str, ...]]] = {}


async def write_held(where: SessionOnDemand, instances: list[Any]) -> None:
    """The changes of held rows (`SessionOnDemand.hold`) written without a session: for each changed row, one prepared
    UPDATE of the columns whose value changed, with the columns the ORM sets on every update (`onupdate`), by its
    primary key, all in one round trip (`run_together`); the rows are then as the ORM leaves them after a flush
    (nothing pending). A row no longer there raises StaleDataError, as the ORM's flush does."""
    runs: list[tuple[Prepared, dict[str, Any]]] = []
    written: list[Any] = []
    for instance in instances:
        state = instance_state(instance)
        if not state.modified:
            continue
        written.append(state)
        mapper = state.mapper
        values: dict[str, Any] = {}
        for key, before in state.committed_state.items():
            now = state.dict.get(key)
            if key in mapper.column_attrs and now != before:
                values[key] = now
        if not values:
            continue
        for prop in mapper.column_attrs:
            onupdate = prop.columns[0].onupdate
            if onupdate is not None and prop.key not in values and isinstance(onupdate, ColumnDefault):
                values[prop.key] = state.dict[prop.key] = onupdate.arg(None) if onupdate.is_callable else onupdate.arg
        (primary,) = mapper.primary_key
        parameters = {f"set_{key}": value for key, value in values.items()}
        parameters["row_id"] = state.dict[mapper.get_property_by_column(primary).key]
        runs.append((_update_of(mapper, tuple(sorted(values))), parameters))
    if runs:
        for ran, (_prepared, parameters) in zip(await run_together(where, *runs), runs, strict=True):
            if ran.rowcount != 1:
                raise StaleDataError(f"a held row to update is no longer there (id {parameters['row_id']})")
    for state in written:
        state._commit_all(state.dict)


def _update_of(mapper: Any, keys: tuple[str, ...]) -> Prepared:
    found = _UPDATES.get((mapper, keys))
    if found is None:
        (primary,) = mapper.primary_key
        found = _UPDATES[mapper, keys] = Prepared(
            update(mapper.local_table).where(primary == bindparam("row_id")).values(_set_values(mapper, keys))
        )
    return found


def _set_values(mapper: Any, keys: tuple[str, ...]) -> dict[Any, Any]:
    """The columns of the attributes `keys`, each set to the parameter `set_<key>` (of the column's type)."""
    columns = {key: mapper.column_attrs[key].columns[0] for key in keys}
    return {column: bindparam(f"set_{key}", type_=column.type) for key, column in columns.items()}


async def add_row(where: AsyncSession | SessionOnDemand, instance: Any) -> None:
    """A new row (a mapped object not yet written) inserted in `where`'s transaction. On a turn's whose session is
    not made: one prepared INSERT of what the ORM's flush would insert (`_inserted`), its primary key and the columns
    it leaves to the database returned; the object is then as the ORM leaves it after a flush, and held for the turn.
    Otherwise added to the session and flushed."""
    if not (isinstance(where, SessionOnDemand) and not where.made()):
        session = where.session if isinstance(where, SessionOnDemand) else where
        session.add(instance)
        await session.flush()
        return
    state = instance_state(instance)
    mapper = state.mapper
    values = _inserted(mapper, state.dict)
    statement, returned = _insert_of(mapper, tuple(sorted(values)))
    ran = await statement.run(where, {f"set_{k}": v for k, v in values.items()})
    state.dict.update(values)
    if returned:
        state.dict.update(zip(returned, ran.first(), strict=True))
    state.key, state.identity_token = identity_key(instance=instance), None
    state._commit_all(state.dict)
    where.hold(instance)


def _inserted(mapper: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values the ORM's flush inserts for an object whose attributes are `given`: each value given, but a None
    (on a column whose type does not write None as a value of its own, as JSON does) counts as not given; a column
    not given takes its default (`default`), else None, except where the database gives it a value (a server
    default, the primary key) or None would be written as a value (JSON null): those are left out of the INSERT."""
    values: dict[str, Any] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        value = given.get(prop.key)
        if value is not None or (prop.key in given and column.type.should_evaluate_none):
            values[prop.key] = value
        elif isinstance(column.default, ColumnDefault):
            default = column.default
            values[prop.key] = default.arg(None) if default.is_callable else default.arg
        elif not (column.primary_key or column.server_default is not None or column.type.should_evaluate_none):
            values[prop.key] = None
    return values


def _insert_of(mapper: Any, keys: tuple[str, ...]) -> tuple[Prepared, tuple[str, ...]]:
    """The INSERT of the columns `keys`, and the attributes it returns (those of every other column)."""
    found = _INSERTS.get((mapper, keys))
    if found is None:
        returned = [prop for prop in mapper.column_attrs if prop.key not in keys]
        statement = insert(mapper.local_table).values(_set_values(mapper, keys))
        if returned:
            statement = statement.returning(*(prop.columns[0] for prop in returned))
        found = _INSERTS[mapper, keys] = (Prepared(statement), tuple(prop.key for prop in returned))
    return found


def _getter(positions: list[int]) -> Callable[[Any], tuple[Any, ...]]:
    """A tuple's items at `positions`, as a tuple (itemgetter returns a lone item bare)."""
    if len(positions) == 1:
        (position,) = positions
        return lambda row: (row[position],)
    return operator.itemgetter(*positions)
