"""One way to run a sync storage function on the store: what the async facades are made of.

A facade lists its methods as the sync core functions they run, and on which connection:

    class Ledger(Facade):
        earn = writes(operations.earn)
        balance = looks_up(queries.balance)

`await ledger.earn(member_id, points, kind=..., ...)` then runs
`operations.earn(conn, member_id, points, kind=..., ...)` as one `Store.write` transaction,
and mypy checks the call against the sync function's own parameters (ParamSpec). A function
with a `now` parameter gets the store's clock when the caller leaves `now` out (or None).
Anything more than that pass-through (a cache, a batching loop) is an explicit method.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, overload

from storage.sql import marked_like, sole_operation
from storage.store import Store

P = ParamSpec("P")
T = TypeVar("T")
Connection = Literal["write", "read", "lookup"]


class Facade:
    """Base of the async facades: the store, and how a write, read or lookup runs on it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` as one whole write transaction (nested `atomic` blocks add no savepoint)."""
        return await self._store.write(sole_operation(fn))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader thread (scans, reports, sweeps)."""
        return await self._store.read(fn)

    async def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inline on the event loop (a short indexed read)."""
        return await self._store.lookup(fn)


class StoreCall(Generic[P, T]):
    """A facade method that runs one sync storage function on the store, typed like it."""

    def __init__(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], connection: Connection
    ) -> None:
        self._fn = fn
        self._connection = connection
        self._name = fn.__name__
        params = list(inspect.signature(fn).parameters.values())[1:]  # all but the connection
        self.__signature__ = inspect.signature(fn).replace(parameters=params)
        names = [p.name for p in params]
        self._has_now = "now" in names
        # Where `now` sits among the positional arguments (None: keyword-only or absent).
        self._now_at: int | None = None
        if self._has_now and params[names.index("now")].kind is not inspect.Parameter.KEYWORD_ONLY:
            self._now_at = names.index("now")

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, facade: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, facade: Facade, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(
        self, facade: Facade | None, owner: type[Any]
    ) -> Self | Callable[P, Coroutine[Any, Any, T]]:
        if facade is None:
            return self
        run: Callable[[Callable[[sqlite3.Connection], T]], Coroutine[Any, Any, T]]
        run = getattr(facade, f"_{self._connection}")
        # The ParamSpec types the caller's side; inside, the arguments are passed on as given.
        fn: Callable[..., T] = self._fn
        store, has_now, now_at = facade._store, self._has_now, self._now_at

        async def call(*args: Any, **kwargs: Any) -> T:
            if has_now:
                if now_at is not None and len(args) > now_at:
                    if args[now_at] is None:
                        args = (*args[:now_at], store.now(), *args[now_at + 1 :])
                elif kwargs.get("now") is None:
                    kwargs["now"] = store.now()

            def work(conn: sqlite3.Connection) -> T:
                return fn(conn, *args, **kwargs)

            return await run(marked_like(fn, work))

        call.__name__ = call.__qualname__ = self._name
        call.__doc__ = self._fn.__doc__
        call.__signature__ = self.__signature__  # type: ignore[attr-defined]
        # Bound once per facade object: later look-ups find it in the instance, not here.
        facade.__dict__[self._name] = call
        return call


def writes(fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> StoreCall[P, T]:
    """A facade method running `fn` as one write transaction on the single writer."""
    return StoreCall(fn, "write")


def reads(fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> StoreCall[P, T]:
    """A facade method running `fn` on the reader thread (a consistent snapshot)."""
    return StoreCall(fn, "read")


def looks_up(fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> StoreCall[P, T]:
    """A facade method running `fn` inline on the event loop (a short indexed read)."""
    return StoreCall(fn, "lookup")
