"""The team's saved contacts and accounts (what Apollo's CRM endpoints write to).

One lock guards everything; every public method takes it, so the store can be
used from the threaded loopback server. Records returned are deep copies, so a
caller can never change the store by accident.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime, timezone
from typing import Any

from apollo_frames.core.clock import SYSTEM_CLOCK, Clock

from .world import World, name_key, normalize_domain, normalize_email, normalize_linkedin

TEAM_ID = "5e1b1a5c0c4f8a00f2f6a3b1"
USER_ID = "5e1b1a5c0c4f8a00f2f6a3b2"

#: Fields a caller may set on a contact (create, bulk_create, update).
CONTACT_FIELDS = (
    "first_name", "last_name", "name", "email", "title", "organization_name", "account_id", "organization_id",
    "website_url", "linkedin_url", "facebook_url", "twitter_url", "photo_url", "contact_stage_id", "owner_id",
    "present_raw_address", "direct_phone", "corporate_phone", "mobile_phone", "home_phone", "other_phone", "phone",
    "typed_custom_fields", "salesforce_id", "hubspot_id", "salesforce_lead_id", "salesforce_contact_id",
    "salesforce_account_id", "outreach_id", "salesloft_id", "city", "state", "country", "time_zone",
)
#: Fields a caller may set on an account.
ACCOUNT_FIELDS = (
    "name", "domain", "owner_id", "account_stage_id", "phone", "phone_number", "raw_address", "linkedin_url",
    "facebook_url", "twitter_url", "salesforce_id", "hubspot_id", "organization_id", "parent_account_id",
    "typed_custom_fields", "phone_status_cd",
)
#: Documented fields of a ``contacts/bulk_create`` item the sandbox accepts without storing.
CONTACT_BULK_CREATE_EXTRAS = (
    "primary_title", "contact_emails", "phone_numbers", "contact_role_type_ids", "phone_status_cd"
)
#: Fields ``contacts/bulk_update`` takes (shared with ``contact_ids``, or per item of ``contact_attributes``).
CONTACT_BULK_FIELDS = (
    "owner_id", "email", "organization_name", "title", "first_name", "last_name", "account_id", "present_raw_address",
    "linkedin_url", "typed_custom_fields",
)
#: Fields of each ``account_attributes`` item of ``accounts/bulk_update``; with ``account_ids`` only the shared ones.
ACCOUNT_BULK_FIELDS = ("name", "owner_id", "account_stage_id", "typed_custom_fields")
ACCOUNT_BULK_SHARED = ("name", "owner_id", "account_stage_id")
#: The keys of each record in a synchronous bulk_update answer.
CONTACT_BULK_ANSWER = ("id", "first_name", "last_name", "email", "title", "organization_name", "owner_id", "account_id",
                       "present_raw_address", "linkedin_url", "updated_at")
ACCOUNT_BULK_ANSWER = ("id", "name", "domain", "owner_id", "account_stage_id", "typed_custom_fields", "updated_at")
CRM_ID_FIELDS = (
    "salesforce_id", "hubspot_id", "salesforce_lead_id", "salesforce_contact_id", "outreach_id", "salesloft_id"
)
CONTACT_SORTS = {
    "contact_created_at": "created_at", "contact_updated_at": "updated_at",
    "contact_last_activity_date": "last_activity_date",
    "contact_email_last_opened_at": "updated_at", "contact_email_last_clicked_at": "updated_at",
}
ACCOUNT_SORTS = {
    "account_created_at": "created_at", "account_updated_at": "updated_at",
    "account_last_activity_date": "last_activity_date",
}


def _stamp(seconds: float) -> str:
    """Apollo's timestamp format (UTC, milliseconds) for POSIX ``seconds``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Store:
    """Contacts, accounts and labels of the (single) sandbox team."""

    def __init__(self, world: World, clock: Clock = SYSTEM_CLOCK):
        self.world = world
        self.clock = clock
        self.lock = threading.RLock()
        self.contacts: dict[str, dict] = {}
        self.accounts: dict[str, dict] = {}
        self.labels: dict[tuple[str, str], dict] = {}  # (modality, name key) -> label
        self.jobs: dict[str, dict] = {}  # entity_progress_job id -> job (asynchronous bulk updates)
        self._seq = 0

    # -- helpers ---------------------------------------------------------------------------------

    def _now(self) -> str:
        return _stamp(self.clock.time())

    def _new_id(self, base: int) -> str:
        self._seq += 1
        return "%024x" % (base + self._seq)

    def _labels_for(self, names, modality: str) -> list[dict]:
        if isinstance(names, str):
            names = [names]
        out = []
        for raw in names or []:
            if not isinstance(raw, str) or not raw.strip():
                continue
            key = (modality, raw.strip().casefold())
            label = self.labels.get(key)
            if label is None:
                now = self._now()
                label = {
                    "id": self._new_id(0x6600_0000_0000_0000_0000_0000), "modality": modality, "cached_count": 0,
                    "name": raw.strip(), "created_at": now, "updated_at": now, "user_id": USER_ID,
                }
                self.labels[key] = label
            if label not in out:
                out.append(label)
        return out

    def _recount_labels(self) -> None:
        counts: dict[str, int] = {}
        for record in list(self.contacts.values()) + list(self.accounts.values()):
            for lid in record["label_ids"]:
                counts[lid] = counts.get(lid, 0) + 1
        for label in self.labels.values():
            label["cached_count"] = counts.get(label["id"], 0)

    def labels_of(self, record: dict) -> list[dict]:
        by_id = {label["id"]: label for label in self.labels.values()}
        return [copy.deepcopy(by_id[i]) for i in record["label_ids"] if i in by_id]

    # -- contacts --------------------------------------------------------------------------------

    def _apply_contact(self, contact: dict, attrs: dict) -> None:
        for key in CONTACT_FIELDS:
            if key in attrs:
                contact[key] = attrs[key]
        if "email" in attrs:
            email = attrs["email"]
            # Apollo ignores invalid e-mails on create/update
            contact["email"] = email.strip() if isinstance(email, str) and "@" in email else None
        if "name" in attrs and not ("first_name" in attrs or "last_name" in attrs) and isinstance(attrs["name"], str):
            first, _, last = attrs["name"].strip().partition(" ")
            contact["first_name"], contact["last_name"] = first or None, last or None
        if any(k in attrs for k in ("first_name", "last_name", "name")):
            parts = [p for p in (contact.get("first_name"), contact.get("last_name")) if isinstance(p, str) and p]
            contact["name"] = " ".join(parts) or None
        phones: list[dict] = []
        for kind in ("direct_phone", "corporate_phone", "mobile_phone", "home_phone", "other_phone", "phone"):
            if contact.get(kind):
                raw = str(contact[kind])
                phones.append({
                    "raw_number": raw,
                    "sanitized_number": "".join(c for c in raw if c.isdigit() or c == "+"),
                    "type": kind.replace("_phone", "") if kind != "phone" else "other",
                    "position": len(phones),
                })
        contact["phone_numbers"] = phones
        contact["sanitized_phone"] = phones[0]["sanitized_number"] if phones else None
        if "linkedin_url" in attrs or "email" in attrs:
            person = None
            if contact.get("email"):
                person = self.world.person_by_email.get(normalize_email(contact["email"]) or "")
            if person is None and contact.get("linkedin_url"):
                person = self.world.person_by_linkedin.get(normalize_linkedin(contact["linkedin_url"]) or "")
            contact["person_id"] = person["id"] if person else contact.get("person_id")
        if contact.get("organization_id") is None and contact.get("email"):
            org = self.world.org_for_domain(contact["email"])
            contact["organization_id"] = org["id"] if org else None
        contact["updated_at"] = self._now()

    def _blank_contact(self) -> dict:
        now = self._now()
        return {
            "id": self._new_id(0x6650_0000_0000_0000_0000_0000), "first_name": None, "last_name": None, "name": None,
            "linkedin_url": None, "title": None, "contact_stage_id": None, "owner_id": USER_ID, "creator_id": USER_ID,
            "person_id": None, "email_needs_tickling": None, "organization_name": None, "source": "api",
            "original_source": "api", "organization_id": None, "headline": None, "photo_url": None,
            "present_raw_address": None, "linkedin_uid": None, "extrapolated_email_confidence": None,
            "salesforce_id": None, "salesforce_lead_id": None, "salesforce_contact_id": None,
            "salesforce_account_id": None, "crm_owner_id": None, "created_at": now, "emailer_campaign_ids": [],
            "direct_dial_status": None, "email_status": None, "email_source": None, "account_id": None,
            "last_activity_date": None, "hubspot_vid": None, "hubspot_company_id": None, "crm_id": None,
            "sanitized_phone": None, "merged_crm_ids": None, "updated_at": now, "label_ids": [],
            "existence_level": "full", "email": None, "typed_custom_fields": {}, "custom_field_errors": None,
            "source_display_name": "Created from API", "twitter_url": None, "state": None, "city": None,
            "country": None, "time_zone": None, "phone_numbers": [], "team_id": TEAM_ID, "intent_strength": None,
            "show_intent": False,
        }

    def _find_contact(self, attrs: dict) -> tuple[dict | None, str | None]:
        """Dedupe match: e-mail (case-insensitive), then a CRM id, then name + organization name."""
        email = normalize_email(attrs.get("email"))
        if email:
            for c in self.contacts.values():
                if normalize_email(c.get("email")) == email:
                    return c, "email_match"
        for key in CRM_ID_FIELDS:
            if attrs.get(key):
                for c in self.contacts.values():
                    if c.get(key) == attrs[key]:
                        return c, "crm_id_match"
        if not email and attrs.get("first_name") and attrs.get("last_name") and attrs.get("organization_name"):
            want = (name_key(attrs["first_name"]), name_key(attrs["last_name"]), name_key(attrs["organization_name"]))
            for c in self.contacts.values():
                if (name_key(c.get("first_name")), name_key(c.get("last_name")),
                        name_key(c.get("organization_name"))) == want:
                    return c, "name_and_organization_match"
        return None, None

    def create_contact(self, attrs: dict, run_dedupe: bool = False) -> tuple[dict, list[dict], dict | None]:
        """POST contacts. With run_dedupe a match is updated with the submitted fields and returned."""
        with self.lock:
            dedupe = None
            existing = None
            if run_dedupe:
                existing, reason = self._find_contact(attrs)
                dedupe = {"found_existing": existing is not None, "match_reason": reason,
                          "existing_contact_id": existing["id"] if existing else None}
            contact = existing if existing is not None else self._blank_contact()
            self._apply_contact(contact, attrs)
            if "label_names" in attrs:
                ids = [label["id"] for label in self._labels_for(attrs["label_names"], "contacts")]
                contact["label_ids"] = list(dict.fromkeys(contact["label_ids"] + ids))
            self.contacts[contact["id"]] = contact
            self._recount_labels()
            return copy.deepcopy(contact), self.labels_of(contact), dedupe

    def bulk_create_contacts(
        self, items: list, run_dedupe: bool = False, append_label_names=None
    ) -> tuple[list[dict], list[dict]]:
        """contacts/bulk_create. Matches (run_dedupe only) are returned unchanged in existing."""
        with self.lock:
            created, existing = [], []
            label_ids = [label["id"] for label in self._labels_for(append_label_names, "contacts")]
            for attrs in items:
                attrs = attrs if isinstance(attrs, dict) else {}
                if run_dedupe:
                    found, _ = self._find_contact(attrs)
                    if found is not None:
                        existing.append(copy.deepcopy(found))
                        continue
                contact = self._blank_contact()
                self._apply_contact(contact, attrs)
                contact["label_ids"] = list(label_ids)
                self.contacts[contact["id"]] = contact
                created.append(copy.deepcopy(contact))
            self._recount_labels()
            return created, existing

    def update_contact(self, contact_id: str, attrs: dict) -> tuple[dict, list[dict]] | None:
        with self.lock:
            contact = self.contacts.get(contact_id)
            if contact is None:
                return None
            self._apply_contact(contact, attrs)
            if "label_names" in attrs:  # replaces the whole set
                contact["label_ids"] = [label["id"] for label in self._labels_for(attrs["label_names"], "contacts")]
                self._recount_labels()
            return copy.deepcopy(contact), self.labels_of(contact)

    def get_contact(self, contact_id: str) -> dict | None:
        with self.lock:
            contact = self.contacts.get(contact_id)
            return copy.deepcopy(contact) if contact else None

    def search_contacts(
        self, q_keywords=None, stage_ids=None, label_ids=None, sort_by=None, ascending=False
    ) -> list[dict]:
        with self.lock:
            found = list(self.contacts.values())
            if q_keywords:
                words = name_key(str(q_keywords)).split()
                def text(c):
                    keys = ("name", "email", "title", "organization_name")
                    return name_key(" ".join(str(c.get(k) or "") for k in keys))
                found = [c for c in found if all(w in text(c) for w in words)]
            if stage_ids:
                found = [c for c in found if c.get("contact_stage_id") in stage_ids]
            if label_ids:
                found = [c for c in found if set(c["label_ids"]) & set(label_ids)]
            if sort_by:
                field = CONTACT_SORTS[sort_by]
                found.sort(key=lambda c: (c.get(field) is None, c.get(field) or ""), reverse=not ascending)
            return copy.deepcopy(found)

    # -- accounts --------------------------------------------------------------------------------

    def _blank_account(self) -> dict:
        now = self._now()
        return {
            "id": self._new_id(0x6680_0000_0000_0000_0000_0000), "domain": None, "name": None, "team_id": TEAM_ID,
            "organization_id": None, "account_stage_id": None, "source": "api", "original_source": "api",
            "creator_id": USER_ID, "owner_id": USER_ID, "created_at": now, "updated_at": now, "phone": None,
            "phone_status": "no_status", "hubspot_id": None, "salesforce_id": None, "crm_owner_id": None,
            "parent_account_id": None, "linkedin_url": None, "sanitized_phone": None, "account_playbook_statuses": [],
            "account_rule_config_statuses": [], "existence_level": "full", "label_ids": [], "typed_custom_fields": {},
            "custom_field_errors": None, "modality": "account", "source_display_name": "Created from API",
            "crm_record_url": None, "intent_strength": None, "show_intent": False, "has_intent_signal_account": False,
            "intent_signal_account": None, "raw_address": None, "last_activity_date": None, "num_contacts": 0,
        }

    def _apply_account(self, account: dict, attrs: dict) -> None:
        for key in ACCOUNT_FIELDS:
            if key in attrs:
                account[key] = attrs[key]
        if "phone_number" in attrs and "phone" not in attrs:
            account["phone"] = attrs["phone_number"]
        account.pop("phone_number", None)
        if "domain" in attrs:
            account["domain"] = normalize_domain(attrs["domain"]) or (attrs["domain"] or None)
        if account.get("phone"):
            account["sanitized_phone"] = "".join(c for c in str(account["phone"]) if c.isdigit() or c == "+")
        if account.get("domain") and not attrs.get("organization_id"):
            org = self.world.org_by_domain.get(account["domain"])
            if org:
                account["organization_id"] = org["id"]
        account["updated_at"] = self._now()

    def _find_account(self, attrs: dict, run_dedupe: bool) -> dict | None:
        """CRM ids always; with run_dedupe also domain, organization_id and name (case-insensitive)."""
        for key in ("salesforce_id", "hubspot_id"):
            if attrs.get(key):
                for a in self.accounts.values():
                    if a.get(key) == attrs[key]:
                        return a
        if not run_dedupe:
            return None
        domain = normalize_domain(attrs.get("domain"))
        org_id = attrs.get("organization_id")
        name = name_key(attrs.get("name"))
        for a in self.accounts.values():
            if domain and a.get("domain") == domain:
                return a
            if org_id and a.get("organization_id") == org_id:
                return a
            if name and name_key(a.get("name")) == name:
                return a
        return None

    def create_account(self, attrs: dict) -> dict:
        """POST accounts: never dedupes."""
        with self.lock:
            account = self._blank_account()
            self._apply_account(account, attrs)
            self.accounts[account["id"]] = account
            return copy.deepcopy(account)

    def bulk_create_accounts(
        self, items: list, run_dedupe: bool = False, append_label_names=None
    ) -> tuple[list[dict], list[dict]]:
        with self.lock:
            created, existing = [], []
            label_ids = [label["id"] for label in self._labels_for(append_label_names, "accounts")]
            for attrs in items:
                attrs = attrs if isinstance(attrs, dict) else {}
                found = self._find_account(attrs, run_dedupe)
                if found is not None:
                    existing.append(copy.deepcopy(found))
                    continue
                account = self._blank_account()
                self._apply_account(account, attrs)
                account["label_ids"] = list(label_ids)
                self.accounts[account["id"]] = account
                created.append(copy.deepcopy(account))
            self._recount_labels()
            return created, existing

    def update_account(self, account_id: str, attrs: dict) -> tuple[dict, list[dict]] | None:
        with self.lock:
            account = self.accounts.get(account_id)
            if account is None:
                return None
            self._apply_account(account, attrs)
            if "label_names" in attrs:
                account["label_ids"] = [label["id"] for label in self._labels_for(attrs["label_names"], "accounts")]
                self._recount_labels()
            return copy.deepcopy(account), self.labels_of(account)

    def bulk_update(self, kind: str, updates: list[tuple[str, dict]]) -> tuple[list[str], list[dict]]:
        """contacts/bulk_update or accounts/bulk_update (``kind`` "contacts" / "accounts"): all or nothing.

        ``updates`` are (id, fields) with the fields already limited to the documented ones. Returns
        (unknown ids, []) without writing anything when an id is unknown, else ([], the updated records,
        reduced to the keys of Apollo's synchronous answer).
        """
        records = self.contacts if kind == "contacts" else self.accounts
        apply = self._apply_contact if kind == "contacts" else self._apply_account
        keys = CONTACT_BULK_ANSWER if kind == "contacts" else ACCOUNT_BULK_ANSWER
        with self.lock:
            unknown = [i for i, _ in updates if i not in records]
            if unknown:
                return list(dict.fromkeys(unknown)), []
            out = []
            for record_id, attrs in updates:
                apply(records[record_id], attrs)
                out.append({k: copy.deepcopy(records[record_id].get(k)) for k in keys})
            return [], out

    def open_job(self, job_type: str, entity_ids: list[str]) -> dict:
        """An ``entity_progress_job`` for an asynchronous bulk update (the writes themselves are already done)."""
        with self.lock:
            now = self._now()
            job: dict[str, Any] = {
                "id": self._new_id(0x66A0_0000_0000_0000_0000_0000), "job_type": job_type, "status": "pending",
                "entity_ids": list(entity_ids), "created_at": now, "updated_at": now,
            }
            self.jobs[job["id"]] = job
            return copy.deepcopy(job)

    def get_account(self, account_id: str) -> dict | None:
        with self.lock:
            account = self.accounts.get(account_id)
            return copy.deepcopy(account) if account else None

    def saved_accounts_by_org(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """The team's accounts by organization_id and by domain (the oldest account wins), for company search."""
        with self.lock:
            by_org: dict[str, dict] = {}
            by_domain: dict[str, dict] = {}
            for account in self.accounts.values():
                if account.get("organization_id"):
                    by_org.setdefault(account["organization_id"], account)
                if account.get("domain"):
                    by_domain.setdefault(account["domain"], account)
            return copy.deepcopy((by_org, by_domain))

    def search_accounts(
        self, q_organization_name=None, stage_ids=None, label_ids=None, sort_by=None, ascending=False
    ) -> list[dict]:
        with self.lock:
            found = list(self.accounts.values())
            if q_organization_name:
                want = name_key(str(q_organization_name))
                found = [a for a in found if want in name_key(a.get("name") or "")]
            if stage_ids:
                found = [a for a in found if a.get("account_stage_id") in stage_ids]
            if label_ids:
                found = [a for a in found if set(a["label_ids"]) & set(label_ids)]
            if sort_by:
                field = ACCOUNT_SORTS[sort_by]
                found.sort(key=lambda a: (a.get(field) is None, a.get(field) or ""), reverse=not ascending)
            counts: dict[str, int] = {}
            for c in self.contacts.values():
                if c.get("account_id"):
                    counts[c["account_id"]] = counts.get(c["account_id"], 0) + 1
            out = copy.deepcopy(found)
            for a in out:
                a["num_contacts"] = counts.get(a["id"], 0)
            return out
