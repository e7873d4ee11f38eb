"""Deterministic fake data for the three providers, and the mutations incremental tests need.

Every provider's records come from its own `random.Random(f"{seed}/{provider}")`, so the same
settings always give byte-identical records, and resizing one provider leaves the others alone.
Timestamps lie in the two years before `base_time()`, which is at least a day before now.

Records are plain JSON-ready dicts, served in a shuffled order that is stable between requests.
A `Collection` replaces records copy-on-write: once handed out, a record is never modified,
so request handlers can serialise what they got without holding a lock.
"""

from __future__ import annotations

import json
import random
import threading
import time
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar

from sandbox import undocumented
from sandbox.settings import SandboxSettings

if TYPE_CHECKING:
    from sandbox.churn import ChurnSchedule

Record = dict[str, Any]
Key = str | int

_FIXED_BASE = datetime(2026, 6, 30, tzinfo=UTC)
_HISTORY = timedelta(days=730)


def base_time(now: datetime | None = None) -> datetime:
    """The newest moment initial data may carry: a fixed date, or a day ago if that is earlier."""
    yesterday = (now or datetime.now(UTC)) - timedelta(days=1)
    return min(_FIXED_BASE, yesterday.replace(hour=0, minute=0, second=0, microsecond=0))


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (much faster than `copy.deepcopy`)."""
    return json.loads(json.dumps(value))


# --- random helpers -------------------------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(4 * chars):0{chars}x}"


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.random()


def _maybe(rng: random.Random, probability: float, value: Any) -> Any:
    """`value` with the given probability, else None."""
    return value if rng.random() < probability else None


def _email(name: str, domain: str = "example.com") -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    local = ".".join("".join(c for c in part if c.isalnum()) for part in ascii_name.split())
    return f"{local.lower()}@{domain}"


class ObjectIds:
    """MongoDB-style 24-hex ids: creation second, a per-process random part, a counter."""

    def __init__(self, rng: random.Random) -> None:
        self._process = rng.getrandbits(40)
        self._counter = rng.getrandbits(24)

    def __call__(self, moment: datetime) -> str:
        self._counter = (self._counter + 1) % (1 << 24)
        return f"{int(moment.timestamp()):08x}{self._process:010x}{self._counter:06x}"


# --- storage --------------------------------------------------------------------------------


class Collection:
    """The records of one endpoint in served order, looked up by their primary key."""

    def __init__(self, key: str, records: Iterable[Record]) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._order = list(records)
        self._by_key: dict[Key, Record] = {record[key]: record for record in self._order}
        self._hidden: set[Key] = set()
        #: Whether records are served with fields the docs do not list (`sandbox.undocumented`).
        self.undocumented: Callable[[], bool] = lambda: False

    def __len__(self) -> int:
        return len(self._order)

    def snapshot(self) -> list[Record]:
        """All records in served order. Treat them as read-only."""
        with self._lock:
            order = list(self._order)
        if self.undocumented():
            return undocumented.add_to_list(clone(order), self.key)
        return order

    def matching(self, filters: Mapping[str, Any], within: str | None = None) -> list[Record]:
        """Records, in served order, whose fields equal every value in `filters`.

        With `within`, the fields are those of the record's nested object of that name."""
        records = self.snapshot()
        if not filters:
            return records
        return [
            record
            for record in records
            if all(
                (record[within] if within else record)[name] == value
                for name, value in filters.items()
            )
        ]

    def get(self, key: Key) -> Record | None:
        """The record for its detail endpoint; None if unknown or hidden by `hide`."""
        with self._lock:
            record = None if key in self._hidden else self._by_key.get(key)
            if record is None or not self.undocumented():
                return record
            position, count = self._order.index(record), len(self._order)
        return undocumented.add_fields(clone(record), self.key, position, count)

    def hide(self, keys: Iterable[Key]) -> None:
        """Keep these records in the list, but let their detail endpoint answer 404."""
        with self._lock:
            self._hidden.update(keys)

    def edit(self, change: Callable[[list[Record]], list[Record]]) -> None:
        """Replace the served order with `change(order)` (records are never modified)."""
        with self._lock:
            self._order = change(list(self._order))
            self._by_key = {record[self.key]: record for record in self._order}

    def unhide(self) -> None:
        """Let every detail endpoint answer again."""
        with self._lock:
            self._hidden.clear()

    def apply(self, changed: list[Record], added: list[Record], rng: random.Random) -> None:
        """Swap in new versions of records and insert new ones at random positions."""
        with self._lock:
            replacements = {record[self.key]: record for record in changed}
            order = [replacements.get(record[self.key], record) for record in self._order]
            for record in added:
                order.insert(rng.randint(0, len(order)), record)
            self._order = order
            self._by_key = {record[self.key]: record for record in order}


@dataclass(frozen=True)
class MutationResult:
    """Primary keys of the records `mutate` changed and added."""

    changed_keys: list[Key]
    added_keys: list[Key]


class Dataset(ABC):
    """One provider's generated records, and how they change over time.

    `conversations` holds the records whose update timestamp incremental syncs follow.
    Subclasses say how to format time and how to create and change one record.
    """

    provider: ClassVar[str]
    key: ClassVar[str]
    resolution: ClassVar[timedelta]

    conversations: Collection
    latest: datetime  # the newest update timestamp of any record

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"{seed}/{self.provider}")

    def populate(self, count: int, base: datetime) -> None:
        """Generate the initial records (subclasses call this once they are set up)."""
        records = [self.create(base - _HISTORY, base) for _ in range(count)]
        self.rng.shuffle(records)
        self.conversations = Collection(self.key, records)
        self.latest = max([self.updated(record) for record in records], default=base - _HISTORY)

    def mutate(self, changed: int, added: int) -> MutationResult:
        """Give `changed` records a new, newest update time and add `added` new records."""
        if not 0 <= changed <= len(self.conversations) or added < 0:
            raise ValueError(f"cannot change {changed} of {len(self.conversations)} records")
        now = self.tick_past(self.latest)
        picked = self.rng.sample(self.conversations.snapshot(), changed)
        new_versions = [self.change(clone(record), now) for record in picked]
        new_records = [self.create(self.latest, now, updated=now) for _ in range(added)]
        self.conversations.apply(new_versions, new_records, self.rng)
        self.latest = now
        return MutationResult(
            changed_keys=[record[self.key] for record in picked],
            added_keys=[record[self.key] for record in new_records],
        )

    def tick_past(self, moment: datetime) -> datetime:
        """The current time at this provider's resolution, waiting until it is after `moment`."""
        while True:
            now = self.truncate(datetime.now(UTC))
            if now > moment:
                return now
            time.sleep(min(self.resolution.total_seconds(), 0.01))

    def truncate(self, moment: datetime) -> datetime:
        return moment - (moment - datetime.min.replace(tzinfo=UTC)) % self.resolution

    @abstractmethod
    def updated(self, record: Record) -> datetime:
        """The moment a record was last updated."""

    @abstractmethod
    def create(self, start: datetime, end: datetime, updated: datetime | None = None) -> Record:
        """A new record whose timestamps lie in [start, end]; `updated` pins its update time."""

    @abstractmethod
    def change(self, record: Record, now: datetime) -> Record:
        """`record` (a private copy) visibly changed at `now`."""


# --- Perform & Engage 365 -------------------------------------------------------------------

_PE_PEOPLE = (
    "Adele Vance", "Jamie Jones", "Zoë O'Brien", "José Álvarez", "Mary Ann Smith",
    "Liam Chen", "Priya Natarajan", "Olivia Brown", "Noah Williams", "Sofia Rossi",
    "Lucas Müller", "Amara Okafor", "Ethan Clarke", "Mei Lin", "Hannah Schmidt",
    "Oliver Taylor", "Fatima Haddad", "Jack Wilson", "Chloé Dubois", "Daniel Kim",
    "Grace Murphy", "Mateo García", "Isla MacDonald", "Yusuf Demir", "Ava Johnson",
    "Ruairí Ó Súilleabháin", "Emma Lee", "Kwame Mensah", "Sara Nilsson", "Tom Harris",
)  # fmt: skip
_PE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "9-Box": ("Self Review", "Leader Review", "Calibration"),
    "Engagement Survey": ("Open", "Leader Review"),
    "Quarterly Check-in": ("Self Review", "Leader Review", "Sign-off"),
    "Annual Review": ("Self Review", "Peer Feedback", "Leader Review", "Calibration"),
    "1:1 Check-in": ("Preparation", "Meeting"),
    "Objectives & Key Results": ("Goal Setting", "Mid-point", "Leader Review"),
}
_PE_COHORTS = ("2025 H1", "2025 H2", "2026 H1", "Sales", "Engineering", "New starters")
_PE_FREQUENCIES = ("Every 2 weeks", "Every 4 weeks", "Every 3 months", "Every 6 months")
_PE_DEPARTMENTS = (
    "Senior Developers", "Sales", "Customer Success", "People & Culture", "Finance", "Operations",
)  # fmt: skip
_PE_STATUSES = ("draft", "final", "archived", "deleted")
_PE_STATUS_WEIGHTS = (45, 35, 12, 8)
_PE_NEXT_STATUS = {"draft": "final", "final": "archived", "archived": "draft", "deleted": "draft"}
_PE_ELEMENTS: dict[str, tuple[tuple[str, ...], tuple[str | None, ...]]] = {
    "nine_box": (("Performance vs Potential",), tuple(str(n) for n in range(1, 10))),
    "rating": (("Overall rating", "Collaboration", "Delivery"), ("1", "2", "3", "4", "5")),
    "text": (
        ("What went well?", "What could be improved?", "Development goals"),
        ("Great progress on the migration.", "More focus on documentation.", None),
    ),
    "multiple_choice": (
        ("Preferred working pattern", "Career interest"),
        ("Hybrid", "Remote", "Office", "Management track", "Specialist track"),
    ),
    "objective": (
        ("Deliver the Q3 roadmap", "Improve onboarding NPS"),
        ("On track", "At risk", "Achieved", None),
    ),
}
_PE_COMMENTS = ("Discussed in our 1:1.", "Agreed — see notes.", "Needs a follow-up in May.")
_PE_OFFSETS: tuple[tzinfo, ...] = (UTC, timezone(timedelta(hours=1)))


class PerformEngageData(Dataset):
    """Conversation plans, and conversations (with their detail `data`) on those plans."""

    provider = "perform_engage"
    key = "api_id"
    resolution = timedelta(microseconds=1)

    def __init__(self, seed: int, base: datetime, conversations: int, plans: int) -> None:
        super().__init__(seed)
        self.people = [self._person(name) for name in _PE_PEOPLE]
        self.templates = {name: f"580:{_uuid(self.rng)}" for name in _PE_TEMPLATES}
        self.stages = {
            name: [(stage, _maybe(self.rng, 0.7, f"580:{_uuid(self.rng)}")) for stage in stages]
            for name, stages in _PE_TEMPLATES.items()
        }
        self.plans = Collection("api_id", [self._plan(index) for index in range(plans)])
        self.populate(conversations, base)

    def updated(self, record: Record) -> datetime:
        return datetime.fromisoformat(record["updated_date"])

    def _person(self, name: str) -> dict[str, str]:
        return {"api_id": f"580:{_uuid(self.rng)}", "name": name, "email": _email(name)}

    def _plan(self, index: int) -> Record:
        rng = self.rng
        template = rng.choice(list(self.templates))
        plan = {
            "name": f"{template} — {rng.choice(_PE_COHORTS)} #{index + 1}",
            "api_id": f"580:{_uuid(rng)}",
            "template_name": template,
            "template_api_id": self.templates[template],
            "status": rng.choice(("draft", "active", "active")),
            "frequency": _maybe(rng, 0.6, rng.choice(_PE_FREQUENCIES)),
            "assigned_users": rng.sample(self.people, rng.randint(0, 5)),
            "assigned_departments": [
                {"api_id": f"442:{_uuid(rng)}", "name": name}
                for name in rng.sample(_PE_DEPARTMENTS, rng.randint(0, 3))
            ],
        }
        return _null_when_empty(plan, ("assigned_users", "assigned_departments"), plan["status"])

    def create(self, start: datetime, end: datetime, updated: datetime | None = None) -> Record:
        rng = self.rng
        plan = rng.choice(self.plans.snapshot())
        status = rng.choices(_PE_STATUSES, _PE_STATUS_WEIGHTS)[0]
        stage, stage_id = rng.choice(self.stages[plan["template_name"]])
        if status == "final":
            stage, stage_id = "Final", None
        updated = updated or _between(rng, start, end)
        generated = _between(rng, max(start, updated - timedelta(days=60)), updated)
        tz = rng.choice(_PE_OFFSETS)
        person, manager, reviewer = (rng.choice(self.people) for _ in range(3))
        manager = _maybe(rng, 0.85, manager)
        reviewer = manager if manager and rng.random() < 0.7 else _maybe(rng, 0.9, reviewer)
        record: Record = {
            "api_id": f"580:{_uuid(rng)}",
            "template_api_id": plan["template_api_id"],
            "template_name": plan["template_name"],
            "plan_api_id": plan["api_id"],
            "plan_name": plan["name"],
            "stage_name": stage,
            "stage_api_id": stage_id,
            "status": status,
            "updated_date": self._time(updated, tz),
            "completed_date": None,
            "generated_date": self._time(generated, tz),
            **_pe_person("person", person),
            **_pe_person("reviewer", reviewer),
            **_pe_person("second_reviewer", _maybe(rng, 0.25, rng.choice(self.people))),
            "data": [self._element() for _ in range(rng.randint(0, 6))],
            **_pe_person("manager", manager, order=("name", "email", "api_id")),
        }
        if status == "final":
            record["completed_date"] = self._time(_between(rng, generated, updated), tz)
        return _null_when_empty(record, ("data",), status)

    def _element(self) -> Record:
        rng = self.rng
        element_type = rng.choice(list(_PE_ELEMENTS))
        titles, values = _PE_ELEMENTS[element_type]
        return {
            "api_id": _maybe(rng, 0.6, f"580:{_uuid(rng)}"),
            "element_title": rng.choice(titles),
            "element_api_id": f"{rng.choice(('None', '580'))}:{_uuid(rng)}",
            "element_type": element_type,
            "value": rng.choice(values),
            "key": str(rng.randint(1000, 99999)),
            "comment": rng.choice(_PE_COMMENTS) if rng.random() < 0.3 else "",
        }

    def change(self, record: Record, now: datetime) -> Record:
        status = _PE_NEXT_STATUS[record["status"]]
        tz = self.updated(record).tzinfo
        record["status"] = status
        record["updated_date"] = self._time(now, tz)
        record["completed_date"] = self._time(now, tz) if status == "final" else None
        if status == "final":
            record["stage_name"], record["stage_api_id"] = "Final", None
        elif status == "draft":
            stages = self.stages[record["template_name"]]
            record["stage_name"], record["stage_api_id"] = self.rng.choice(stages)
        return record

    @staticmethod
    def _time(moment: datetime, tz: tzinfo | None) -> str:
        return moment.astimezone(tz).isoformat(timespec="microseconds")


def _null_when_empty(record: Record, arrays: tuple[str, ...], status: str) -> Record:
    """Drafts send `null` for an empty array, other records `[]`: the docs do not say which to
    expect, so the tap must take both. No random draw, so every other value stays the same."""
    for name in arrays:
        if status == "draft" and not record[name]:
            record[name] = None
    return record


def _pe_person(
    role: str, person: dict[str, str] | None, order: tuple[str, ...] = ("api_id", "name", "email")
) -> Record:
    """`{role}_api_id`, `{role}_name`, `{role}_email` of a person (all null without one)."""
    return {f"{role}_{field}": person[field] if person else None for field in order}


# --- onQ ------------------------------------------------------------------------------------

_ONQ_TOPICS = (
    "Leadership Essentials", "Inclusive Hiring", "Customer Empathy", "Data Literacy",
    "Feedback Fundamentals", "Remote Team Rituals", "Wellbeing at Work", "Coaching Conversations",
)  # fmt: skip
_ONQ_NEXT_STATUS = {"open": "started", "started": "ended", "ended": "open"}


class OnqData(Dataset):
    """onQ conversation exports: integer ids, second-resolution UTC timestamps."""

    provider = "onq"
    key = "id"
    resolution = timedelta(seconds=1)

    def __init__(self, seed: int, base: datetime, conversations: int) -> None:
        super().__init__(seed)
        self._ids = iter(self.rng.sample(range(10_000, 10_000 + 20 * conversations), conversations))
        self.next_id = 10_000 + 20 * conversations
        self.populate(conversations, base)

    def updated(self, record: Record) -> datetime:
        return datetime.fromisoformat(record["last_updated_on"])

    def _new_id(self) -> int:
        new_id = next(self._ids, None)
        if new_id is None:
            new_id, self.next_id = self.next_id, self.next_id + 1
        return new_id

    def create(self, start: datetime, end: datetime, updated: datetime | None = None) -> Record:
        rng = self.rng
        updated = updated or _between(rng, start, end)
        created = _between(rng, max(start, updated - timedelta(days=400)), updated)
        register = _between(rng, created, updated)
        started = _between(rng, created, updated)
        status = rng.choice(tuple(_ONQ_NEXT_STATUS))
        topic = rng.choice(_ONQ_TOPICS)
        kind = rng.choice(("course", "sequence", "resource"))
        max_users = rng.choice((0, 0, 20, 50, 200))
        return {
            "id": self._new_id(),
            "type": kind,
            "sub_type": rng.choice(("PUBLIC", "PRIVATE", "EXTERNAL")),
            "org_id": rng.choice((101, 102, 205)),
            "name": f"{topic}: cohort {rng.randint(1, 40)}",
            "content_name": f"{topic} ({kind}) v{rng.randint(1, 4)}",
            "status": status,
            "register_status": rng.choice(("available", "open", "closed")),
            "start_on": self._time(started),
            "end_on": self._time(_between(rng, started, updated)) if status == "ended" else None,
            "close_on": self._time(_maybe(rng, 0.6, _between(rng, register, updated))),
            "start_register_on": self._time(_maybe(rng, 0.7, register)),
            "last_updated_on": self._time(updated),
            "created_on": self._time(created),
            "visible": rng.random() < 0.7,
            "active": rng.random() < 0.8,
            "private_mode": rng.random() < 0.2,
            "external_code": _maybe(rng, 0.4, f"EXT-{rng.randint(1000, 99999)}"),
            "max_count": max_users and max_users + 5,
            "max_user_count": max_users,
            "max_facilitator_count": rng.choice((0, 1, 2, 5)),
            "registered_user_count": rng.randint(0, max_users or 300),
            "registered_facilitator_count": rng.randint(0, 3),
            "open_questions_count": rng.randint(0, 25),
            "to_facilitator_count": rng.randint(0, 12),
        }

    def change(self, record: Record, now: datetime) -> Record:
        record["status"] = _ONQ_NEXT_STATUS[record["status"]]
        record["last_updated_on"] = self._time(now)
        return record

    @staticmethod
    def _time(moment: datetime | None) -> str | None:
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


# --- Respondent -----------------------------------------------------------------------------

_RESPONDENT_PEOPLE = (
    ("Maya", "K"), ("Tariq", "S"), ("Lena", "W"), ("Chidi", "A"), ("Ingrid", "B"), ("Rafael", "M"),
    ("Aiko", "T"), ("Samuel", "O"), ("Nadia", "P"), ("Björn", "L"), ("Élodie", "R"), ("Kofi", "D"),
)  # fmt: skip
_RESPONDENT_STUDIES = ("Checkout redesign", "Onboarding diary study", "Pricing page usability")
_RESPONDENT_BODIES = (
    "Hi! Thanks for signing up for the study.",
    "Could you confirm your time slot for Thursday?",
    "Thursday at 14:00 works for me 👍",
    "Here is the link to the session: https://example.com/s/abc",
    "Sorry, I'm running 5 minutes late.",
    "Thanks again — the incentive has been sent.\nLet us know if anything is missing.",
    "Ça marche, merci !",
)


class RespondentData(Dataset):
    """Respondent messaging conversations with embedded participants and messages."""

    provider = "respondent"
    key = "uid"
    resolution = timedelta(milliseconds=1)

    def __init__(self, seed: int, base: datetime, conversations: int, projects: int) -> None:
        super().__init__(seed)
        self.object_id = ObjectIds(self.rng)
        self.project_ids = tuple(_hex(self.rng, 24) for _ in range(projects))
        self.owner = self._user("Sandbox", "A")
        self.people = [self._user(first, last) for first, last in _RESPONDENT_PEOPLE]
        self.populate(conversations, base)

    def updated(self, record: Record) -> datetime:
        return datetime.fromisoformat(record["updatedAt"])

    def _user(self, first_name: str, last_initial: str) -> Record:
        return {
            "uid": _hex(self.rng, 24),
            "firstName": first_name,
            "lastName": last_initial,
            "foreignId": _hex(self.rng, 24),
        }

    def create(self, start: datetime, end: datetime, updated: datetime | None = None) -> Record:
        rng = self.rng
        updated = updated or _between(rng, start, end)
        created = _between(rng, max(start, updated - timedelta(days=90)), updated)
        people = [self.owner, *rng.sample(self.people, rng.randint(1, 3))]
        project = rng.randrange(len(self.project_ids))
        sent = sorted(_between(rng, created, updated) for _ in range(rng.randint(0, 8)))
        messages = [self._message(rng.choice(people), moment, updated) for moment in sent]
        return {
            "createdAt": self._time(created),
            "uid": self.object_id(created),
            "name": f"{_RESPONDENT_STUDIES[project % 3]} — {people[1]['firstName']}",
            "deleted": rng.random() < 0.05,
            "locked": rng.random() < 0.1,
            "read": rng.random() < 0.6,
            "user": self.owner,
            "participants": [
                {**person, "read": rng.random() < 0.6, "deleted": rng.random() < 0.1}
                for person in people
            ],
            "messages": messages,
            "latestMessage": _latest(messages),
            "messagesCount": len(messages),
            "updatedAt": self._time(updated),
            "metadata": {
                "projectId": self.project_ids[project],
                "surveyResponseId": _maybe(rng, 0.7, _hex(rng, 24)),
                "externalResearcherId": f"researcher-{rng.randint(1, 3)}",
                "externalTeamId": _maybe(rng, 0.8, f"team-{rng.randint(1, 2)}"),
                "externalCompanyId": _maybe(rng, 0.5, "company-1"),
            },
        }

    def _message(self, sender: Record, sent: datetime, latest_edit: datetime) -> Record:
        edited = _between(self.rng, sent, latest_edit) if self.rng.random() < 0.1 else sent
        return {
            "createdAt": self._time(sent),
            "uid": self.object_id(sent),
            "body": self.rng.choice(_RESPONDENT_BODIES),
            "sender": {key: sender[key] for key in ("uid", "firstName", "lastName", "foreignId")},
            "updatedAt": self._time(edited),
        }

    def change(self, record: Record, now: datetime) -> Record:
        sender = self.rng.choice(record["participants"])
        record["messages"].append(self._message(sender, now, now))
        record["latestMessage"] = _latest(record["messages"])
        record["messagesCount"] = len(record["messages"])
        record["updatedAt"] = self._time(now)
        record["read"] = False
        return record

    @staticmethod
    def _time(moment: datetime) -> str:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _latest(messages: list[Record]) -> Record | None:
    if not messages:
        return None
    return {key: messages[-1][key] for key in ("createdAt", "uid", "body", "updatedAt")}


# --- everything together --------------------------------------------------------------------


class SandboxData:
    """All providers' records. The public properties return copies, safe to modify."""

    def __init__(self, settings: SandboxSettings) -> None:
        base = base_time()
        self.perform_engage = PerformEngageData(
            settings.seed, base, settings.pe_conversations, settings.pe_plans
        )
        self.onq = OnqData(settings.seed, base, settings.onq_conversations)
        self.respondent = RespondentData(
            settings.seed, base, settings.respondent_conversations, settings.respondent_projects
        )
        self._datasets: dict[str, Dataset] = {
            dataset.provider: dataset
            for dataset in (self.perform_engage, self.onq, self.respondent)
        }
        self._lock = threading.Lock()
        for collection in (
            self.perform_engage.conversations,
            self.perform_engage.plans,
            self.onq.conversations,
            self.respondent.conversations,
        ):  # read on every request, as the other behaviour settings
            collection.undocumented = lambda: settings.undocumented_fields
        #: Changes applied between list-page requests (`sandbox.churn`), set by `Sandbox`.
        self.churn: ChurnSchedule | None = None

    def list_page_served(self, provider: str) -> None:
        """A provider built one page of its conversation list (churn may be due)."""
        if self.churn is not None:
            with self._lock:
                self.churn.page_served(self._dataset(provider))

    def mutate(self, provider: str, changed: int, added: int) -> MutationResult:
        """See `Sandbox.mutate`."""
        with self._lock:
            return self._dataset(provider).mutate(changed, added)

    def vanish_details(self, provider: str, n: int) -> list[str]:
        """See `Sandbox.vanish_details`."""
        if provider not in ("perform_engage", "respondent"):
            raise ValueError(f"{provider} conversations have no detail endpoint")
        dataset = self._dataset(provider)
        with self._lock:
            records = dataset.conversations.snapshot()
            keys = [str(record[dataset.key]) for record in dataset.rng.sample(records, n)]
            dataset.conversations.hide(keys)
        return keys

    def restore_details(self, provider: str) -> None:
        """See `Sandbox.restore_details`."""
        self._dataset(provider).conversations.unhide()

    def _dataset(self, provider: str) -> Dataset:
        if provider not in self._datasets:
            raise ValueError(f"unknown provider {provider!r}; use one of {list(self._datasets)}")
        return self._datasets[provider]

    @property
    def pe_conversations(self) -> list[Record]:
        """Conversations as the list endpoint serves them (no `data`), in served order."""
        return [
            pe_list_shape(record) for record in clone(self.perform_engage.conversations.snapshot())
        ]

    @property
    def pe_conversation_details(self) -> dict[str, Record]:
        records = clone(self.perform_engage.conversations.snapshot())
        return {record["api_id"]: record for record in records}

    @property
    def pe_plans(self) -> list[Record]:
        return [
            pe_plan_list_shape(record) for record in clone(self.perform_engage.plans.snapshot())
        ]

    @property
    def pe_plan_details(self) -> dict[str, Record]:
        return {record["api_id"]: record for record in clone(self.perform_engage.plans.snapshot())}

    @property
    def onq_conversations(self) -> list[Record]:
        return list(clone(self.onq.conversations.snapshot()))

    @property
    def respondent_conversations(self) -> list[Record]:
        return list(clone(self.respondent.conversations.snapshot()))

    @property
    def respondent_project_ids(self) -> list[str]:
        return list(self.respondent.project_ids)


def pe_list_shape(detail: Record) -> Record:
    """A Perform & Engage conversation as its list endpoint shows it."""
    return {key: value for key, value in detail.items() if key != "data"}


def pe_plan_list_shape(detail: Record) -> Record:
    """A Perform & Engage conversation plan as its list endpoint shows it."""
    extra = ("assigned_users", "assigned_departments")
    return {key: value for key, value in detail.items() if key not in extra}
