"""What every programme function works with: the rules in force, the one clock, the stores."""

from __future__ import annotations

from datetime import datetime

from bot.clock import Clock
from bot.config import Config
from bot.programme.game_rules import RandomSource
from storage.api_keys import ApiKeys
from storage.badges import Badges
from storage.dependants import Dependants
from storage.events import Events
from storage.family import Families
from storage.games import Games
from storage.green import Green
from storage.ledger import Ledger
from storage.mall import Mall
from storage.members import Members
from storage.pushes import Pushes
from storage.referrals import Referrals
from storage.store import Store
from storage.submissions import Submissions
from storage.surveys import Surveys
from storage.tasks import Tasks
from storage.tiers import Tiers
from storage.transfers import Transfers


class Programme:
    """The programme's state as its functions see it (no Telegram types); the application's
    services extend it."""

    config: Config
    clock: Clock
    store: Store
    members: Members
    ledger: Ledger
    mall: Mall
    games: Games
    surveys: Surveys
    families: Families
    transfers: Transfers
    tasks: Tasks
    badges: Badges
    submissions: Submissions
    green: Green
    dependants: Dependants
    events: Events
    referrals: Referrals
    tiers: Tiers
    pushes: Pushes
    api_keys: ApiKeys
    # Where game prizes are drawn from: the CSPRNG; only tests put a seeded source here.
    game_random: RandomSource

    def now(self) -> datetime:
        """Now, on the programme's one clock."""
        return self.clock()
