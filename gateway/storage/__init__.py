"""Persistence: one `Store` protocol, a SQLite backend (embedded default) and a PostgreSQL one.

Both backends pass the same test suite (tests/integration/test_store.py runs it against each).
Every consent and discontinuance table is append-only: the database itself refuses UPDATE and
DELETE (triggers), and the current state is derived from the history.

The protocol and what the backends share live in `gateway.storage.seams`, exported here on
first use (PEP 562): importing one backend module does not load every store's dependencies.
The SQLite log writer process (`sqlite_writer`) imports the SQLite ledger alone, and stays
clear of pydantic and asyncpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.storage.seams import ClientStore, ConsentRow, ConsentStore, Store, states_of

__all__ = ["ClientStore", "ConsentRow", "ConsentStore", "Store", "states_of"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gateway.storage import seams

        return getattr(seams, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
