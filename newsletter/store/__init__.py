"""The store: papers, source state, issues, subscribers and deliveries behind named methods.

Each part is a class over one :class:`~newsletter.store.database.Database` (the engine and
its transactions): papers and sources (``papers.py``), subscribers, the send ledger,
sign-ups, bounces and interests.  :class:`Store` is all of them over one connection pool,
so ``store.claim(...)`` and ``store.add_subscriber(...)`` are methods of one object; a
part can also be opened alone (``LedgerStore.open(url)``).  The schema is created and
migrated on first use.
"""

from __future__ import annotations

from newsletter.store.bounces import BounceStore
from newsletter.store.database import Database
from newsletter.store.interests import InterestStore
from newsletter.store.ledger import LedgerStore
from newsletter.store.papers import PaperStore, UpsertResult
from newsletter.store.personal import PersonalStore
from newsletter.store.signup import SignupStore
from newsletter.store.subscribers import ImportResult, SubscriberStore

__all__ = ["Database", "ImportResult", "Store", "UpsertResult"]


class Store(
    PaperStore,
    SubscriberStore,
    LedgerStore,
    SignupStore,
    BounceStore,
    InterestStore,
    PersonalStore,
):
    """Named operations on the database; open with :meth:`open`."""
