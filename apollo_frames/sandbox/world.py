"""Deterministic fictional data for the sandbox: organizations and the people who work there.

Everything is derived from one ``random.Random(seed)``: the same seed and sizes
always give the same world, byte for byte. All companies live on ``.example``
domains (reserved, never resolvable), all people are invented.

Matching indexes (email, hashed email, LinkedIn URL, id, name + organization)
are plain dicts so every lookup is O(1).
"""

from __future__ import annotations

import gc
import hashlib
import random
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# -- vocabularies --------------------------------------------------------------------------------

ORG_WORDS_A = (
    "Northwind", "Bluefin", "Copperleaf", "Redwood", "Silverline", "Brightpath", "Ironbark", "Evergreen",
    "Stonebridge", "Lakeshore", "Highfield", "Oakridge", "Clearwater", "Sunpeak", "Windmill", "Harbor",
    "Granite", "Maplewood", "Cobalt", "Juniper", "Falcon", "Aurora", "Meridian", "Summit", "Pinecrest",
    "Riverbend", "Starling", "Quarry", "Lighthouse", "Foxglove", "Kestrel", "Bramble", "Tidewater",
    "Amberly", "Driftwood", "Cedar", "Helios", "Orchard", "Waypoint", "Nimbus", "Vantage", "Keystone",
    "Saltmarsh", "Hollow", "Birchwood", "Larkspur", "Gullwing", "Thistle", "Ember", "Glacier",
    "Marigold", "Osprey", "Quillon", "Rosewood", "Sable", "Tamarack", "Umber", "Verdant", "Wren", "Zephyr",
)
ORG_WORDS_B = (
    "Analytics", "Logistics", "Labs", "Systems", "Health", "Robotics", "Foods", "Energy", "Capital",
    "Software", "Networks", "Media", "Studios", "Outfitters", "Consulting", "Biotech", "Freight",
    "Security", "Dynamics", "Works", "Partners", "Digital", "Cloud", "Materials", "Mobility", "Pharma",
    "Textiles", "Learning", "Insurance", "Realty", "Brewing", "Aerospace", "Marine", "Telecom", "Data",
    "Payments", "Games", "Devices", "Clinics", "Travel",
)
ORG_SUFFIX_WORDS = ("Group", "Collective", "Holdings", "Co", "Industries", "Ventures")

INDUSTRIES = (
    "information technology & services", "computer software", "hospital & health care", "logistics & supply chain",
    "financial services", "marketing & advertising", "renewables & environment", "biotechnology",
    "food & beverages", "retail", "telecommunications", "education management", "real estate",
    "mechanical or industrial engineering", "insurance", "consumer electronics", "transportation/trucking/railroad",
    "apparel & fashion", "aviation & aerospace", "entertainment",
)
KEYWORDS = (
    "saas", "b2b", "analytics", "machine learning", "logistics", "ecommerce", "fintech", "payments",
    "healthcare", "cloud", "cybersecurity", "iot", "marketplace", "sustainability", "robotics", "data platform",
    "crm", "supply chain", "edtech", "insurtech", "developer tools", "mobile apps", "hardware", "consulting",
)
TECHNOLOGIES = (
    ("salesforce", "Salesforce", "CRM"), ("hubspot", "HubSpot", "Marketing Automation"),
    ("google_analytics", "Google Analytics", "Analytics and Tracking"), ("aws", "Amazon AWS", "Hosting"),
    ("slack", "Slack", "Other"), ("zendesk", "Zendesk", "Support and Feedback"), ("stripe", "Stripe", "Payments"),
    ("shopify", "Shopify", "Ecommerce Platforms"), ("wordpress_org", "WordPress.org", "CMS"),
    ("cloudflare_dns", "Cloudflare DNS", "Domain Name Services"), ("gmail", "Gmail", "Email Providers"),
    ("microsoft_office_365", "Microsoft Office 365", "Other"), ("intercom", "Intercom", "Support and Feedback"),
    ("segment_io", "Segment.io", "Analytics and Tracking"), ("marketo", "Marketo", "Marketing Automation"),
    ("react", "React", "Javascript Libraries"), ("nginx", "Nginx", "Load Balancers"),
    ("datadog", "Datadog", "Monitoring"),
)
FUNDING_TYPES = (
    "Seed", "Series A", "Series B", "Series C", "Series D", "Venture (Round not Specified)", "Private Equity"
)
INVESTORS = (
    "Harborline Ventures", "Copper Kettle Capital", "Northgate Partners", "Blue Lantern VC", "Foxhollow Fund",
    "Quarry Road Capital", "Tidepool Ventures", "Sable Point Partners",
)
LANGUAGES = ("English", "Spanish", "German", "French", "Portuguese", "Polish", "Dutch", "Japanese")

# (city, state, country, postal code, phone prefix)
LOCATIONS = (
    ("San Francisco", "California", "United States", "94105", "+1 415"),
    ("Austin", "Texas", "United States", "78701", "+1 512"),
    ("New York", "New York", "United States", "10001", "+1 212"),
    ("Chicago", "Illinois", "United States", "60601", "+1 312"),
    ("Seattle", "Washington", "United States", "98101", "+1 206"),
    ("Boston", "Massachusetts", "United States", "02110", "+1 617"),
    ("Denver", "Colorado", "United States", "80202", "+1 303"),
    ("Atlanta", "Georgia", "United States", "30303", "+1 404"),
    ("Toronto", "Ontario", "Canada", "M5H 2N2", "+1 416"),
    ("London", "England", "United Kingdom", "EC1A 1BB", "+44 20"),
    ("Manchester", "England", "United Kingdom", "M1 1AE", "+44 161"),
    ("Berlin", "Berlin", "Germany", "10115", "+49 30"),
    ("Munich", "Bavaria", "Germany", "80331", "+49 89"),
    ("Paris", "Île-de-France", "France", "75001", "+33 1"),
    ("Madrid", "Community of Madrid", "Spain", "28001", "+34 91"),
    ("Warsaw", "Masovian Voivodeship", "Poland", "00-001", "+48 22"),
    ("Amsterdam", "North Holland", "Netherlands", "1012 AB", "+31 20"),
    ("São Paulo", "São Paulo", "Brazil", "01000-000", "+55 11"),
    ("Sydney", "New South Wales", "Australia", "2000", "+61 2"),
    ("Dublin", "County Dublin", "Ireland", "D01 F5P2", "+353 1"),
)
STREETS = (
    "Market Street", "Main Street", "Harbour Road", "Kingsway", "Elm Avenue", "Mill Lane", "Station Road", "Park Avenue"
)

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Steven", "Ashley",
    "Paul", "Emily", "Andrew", "Donna", "Joshua", "Michelle", "Kevin", "Carol", "Brian", "Amanda",
    "Priya", "Wei", "Aisha", "Kenji", "Olga", "Ingrid", "Mateo", "Lucía", "Noah", "Emma",
    "Liam", "Olivia", "Hannah", "Lars", "Fatima", "Omar", "Chen", "Yuki", "Anna", "Marco",
)
FIRST_NAMES_ACCENTED = (
    "José", "Zoë", "Łukasz", "Renée", "Søren", "Chloé", "Jürgen", "Björn", "Inés", "Małgorzata", "François", "Zoltán"
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Patel", "Kim", "Nakamura", "Schmidt", "Novak", "Okafor", "Larsen", "Rossi", "Dubois", "Kowalski",
)
LAST_NAMES_ACCENTED = (
    "Muñoz", "Núñez", "Wójcik", "Jørgensen", "Brontë", "Lefèvre", "Müller", "Gómez", "Søndergaard", "Ångström"
)

# (title template, seniority, departments, subdepartments, functions)
ROLES = (
    ("Chief Executive Officer", "c_suite", ["c_suite"], ["executive"], ["entrepreneurship"]),
    ("Founder", "founder", ["c_suite"], ["founder"], ["entrepreneurship"]),
    ("Chief Technology Officer", "c_suite", ["c_suite"], ["executive"], ["engineering"]),
    ("Chief Financial Officer", "c_suite", ["c_suite"], ["finance_executive"], ["finance"]),
    ("Owner", "owner", ["c_suite"], ["executive"], ["entrepreneurship"]),
    ("Partner", "partner", ["c_suite"], ["executive"], ["business_development"]),
    ("VP of Sales", "vp", ["master_sales"], ["sales"], ["sales"]),
    ("VP Marketing", "vp", ["master_marketing"], ["marketing"], ["marketing"]),
    ("Vice President of Engineering", "vp", ["master_engineering_technical"], ["engineering"], ["engineering"]),
    ("Head of Operations", "head", ["master_operations"], ["operations"], ["operations"]),
    ("Head of Growth", "head", ["master_marketing"], ["growth"], ["marketing"]),
    ("Director of Sales", "director", ["master_sales"], ["sales"], ["sales"]),
    ("Director of Product", "director", ["master_product_management"], ["product_management"], ["product_management"]),
    ("Director of Human Resources", "director", ["master_human_resources"], ["recruiting"], ["human_resources"]),
    ("Engineering Manager", "manager", ["master_engineering_technical"], ["software_development"], ["engineering"]),
    ("Marketing Manager", "manager", ["master_marketing"], ["marketing"], ["marketing"]),
    ("Account Manager", "manager", ["master_sales"], ["account_management"], ["sales"]),
    ("Finance Manager", "manager", ["master_finance"], ["accounting"], ["finance"]),
    ("Senior Software Engineer", "senior", ["master_engineering_technical"], ["software_development"], ["engineering"]),
    ("Senior Data Analyst", "senior", ["master_information_technology"], ["data_science"], ["data_science"]),
    ("Senior Account Executive", "senior", ["master_sales"], ["sales"], ["sales"]),
    ("Software Engineer", "entry", ["master_engineering_technical"], ["software_development"], ["engineering"]),
    ("Sales Development Representative", "entry", ["master_sales"], ["sales"], ["sales"]),
    ("Customer Success Specialist", "entry", ["master_support"], ["customer_success"], ["support"]),
    ("Recruiter", "entry", ["master_human_resources"], ["recruiting"], ["human_resources"]),
    ("Marketing Intern", "intern", ["master_marketing"], ["marketing"], ["marketing"]),
)
#: Apollo's documented seniority values, most senior first.
SENIORITIES = (
    "owner", "founder", "c_suite", "partner", "vp", "head", "director", "manager", "senior", "entry", "intern"
)
PAST_TITLES = (
    "Analyst", "Consultant", "Associate", "Engineer", "Sales Representative", "Coordinator", "Project Manager"
)
DEPARTMENT_KEYS = (
    "engineering", "sales", "marketing", "operations", "finance", "human_resources", "support",
    "information_technology", "product_management", "legal", "consulting", "education", "administrative",
    "entrepreneurship", "business_development", "data_science", "design", "accounting", "arts_and_design",
    "media_and_commmunication",
)

_TRANSLIT = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "đ": "d"})


# -- normalisers shared by the store, the app and the samples --------------------------------------


def ascii_fold(text: str) -> str:
    """'Łukasz Wójcik' -> 'Lukasz Wojcik' (accents dropped, a few letters transliterated)."""
    text = text.translate(_TRANSLIT)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def name_key(text) -> str:
    """Case-, accent- and space-insensitive key for a name."""
    if not isinstance(text, str):
        return ""
    return " ".join(ascii_fold(text).casefold().split())


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", ascii_fold(text).lower()).strip("-")


def normalize_domain(value) -> str | None:
    """Lenient like Apollo: 'HTTPS://www.Acme.example/about?x=1' -> 'acme.example'; 'a@b.example' -> 'b.example'."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if not text:
        return None
    if "@" in text and "://" not in text:
        text = text.rsplit("@", 1)[1]
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return None
    host = host.strip(".")
    if host.startswith("www."):
        host = host[4:]
    if not host or "." not in host or " " in host:
        return None
    return host


def normalize_linkedin(value) -> str | None:
    """Canonical LinkedIn URL: lower-case, no scheme, no www., no query, no trailing slash."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text)
    text = text.split("?", 1)[0].split("#", 1)[0]
    if text.startswith("www."):
        text = text[4:]
    return text.rstrip("/") or None


def normalize_email(value) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text if "@" in text else None


# -- the world -----------------------------------------------------------------------------------


@dataclass
class World:
    """Organizations and people, plus the indexes used for matching and search."""

    seed: int
    orgs: list[dict]
    people: list[dict]
    #: person id -> mobile phone (never returned inline; delivered to webhooks).
    mobile_phones: dict[str, str]
    #: person id -> personal e-mails (returned only with reveal_personal_emails).
    personal_emails: dict[str, list[str]]
    org_by_id: dict[str, dict] = field(default_factory=dict)
    org_by_domain: dict[str, dict] = field(default_factory=dict)
    person_by_id: dict[str, dict] = field(default_factory=dict)
    person_by_email: dict[str, dict] = field(default_factory=dict)
    person_by_linkedin: dict[str, dict] = field(default_factory=dict)
    #: (first, last, organization id) name keys -> first person with that name there.
    person_by_name_org: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    orgs_by_name: dict[str, list[dict]] = field(default_factory=dict)
    people_by_org: dict[str, list[int]] = field(default_factory=dict)
    _hashed: dict[str, dict] | None = None
    _hash_lock: threading.Lock = field(default_factory=threading.Lock)

    def person_by_hashed_email(self, digest) -> dict | None:
        """MD5 or SHA-256 hex of the lower-cased email (index built on first use)."""
        if not isinstance(digest, str):
            return None
        if self._hashed is None:
            with self._hash_lock:
                if self._hashed is None:
                    index = {}
                    for email, person in self.person_by_email.items():
                        raw = email.encode("utf-8")
                        index[hashlib.md5(raw).hexdigest()] = person
                        index[hashlib.sha256(raw).hexdigest()] = person
                    self._hashed = index
        return self._hashed.get(digest.strip().lower())

    def org_for_domain(self, value) -> dict | None:
        domain = normalize_domain(value)
        return self.org_by_domain.get(domain) if domain else None

    def move(self, share: float = 0.1, *, retitle: float = 0.0, seed: int = 0, since: str = "2026-11-01") -> Moved:
        """Time passes between two runs: ``share`` of the people move to another organization (their job
        there ends, ``current=False``; the new one starts ``since``, ``current=True``; same title, same
        e-mail, so a lookup still finds them) and ``retitle`` of the others get a new title where they are.
        Returns who moved and who was retitled (two disjoint sets of person ids)."""
        rng = random.Random(seed)
        picked = rng.sample(range(len(self.people)), round(share * len(self.people)) +
                            round(retitle * len(self.people)))
        movers, retitled = picked[:round(share * len(self.people))], picked[round(share * len(self.people)):]
        for i in movers:
            self._move_one(i, rng, since)
        for i in retitled:
            person = self.people[i]
            title = rng.choice([r[0] for r in ROLES if r[0] != person["title"]])
            _set_title(person, title)
        return Moved([self.people[i]["id"] for i in movers], [self.people[i]["id"] for i in retitled])

    def _move_one(self, i: int, rng: random.Random, since: str) -> None:
        """Person ``i`` leaves their organization for another (indexes kept up to date)."""
        person = self.people[i]
        old = person["organization"]
        new = rng.choice(self.orgs)
        while new is old and len(self.orgs) > 1:
            new = rng.choice(self.orgs)
        for job in person["employment_history"]:
            if job["current"]:
                job["current"], job["end_date"] = False, since
        job_id = f"{rng.getrandbits(96):024x}"
        person["employment_history"].insert(0, {
            "_id": job_id, "id": job_id, "key": job_id, "created_at": None, "current": True, "degree": None,
            "description": None, "emails": None, "end_date": None, "grade_level": None, "kind": None, "major": None,
            "organization_id": new["id"], "organization_name": new["name"], "raw_address": None,
            "start_date": since, "title": person["title"], "updated_at": None,
        })
        person["organization"], person["organization_id"] = new, new["id"]
        person["headline"] = f"{person['title']} at {new['name']}"
        self.people_by_org[old["id"]].remove(i)
        self.people_by_org.setdefault(new["id"], []).append(i)
        names = (name_key(person["first_name"]), name_key(person["last_name"]), new["id"])
        self.person_by_name_org.setdefault(names, person)


@dataclass
class Moved:
    """What :meth:`World.move` did: the ids of the people who changed organization, and of those retitled."""

    moved: list[str]
    retitled: list[str]


def _set_title(person: dict, title: str) -> None:
    """A new title where the person works (their current job's title too)."""
    person["title"] = title
    person["headline"] = f"{title} at {person['organization']['name']}"
    for job in person["employment_history"]:
        if job["current"]:
            job["title"] = title


def _hex_id(rng: random.Random, taken: set) -> str:
    while True:
        value = f"{rng.getrandbits(96):024x}"
        if value not in taken:
            taken.add(value)
            return value


def _money(amount: int) -> str:
    if amount >= 1_000_000_000:
        return f"{amount / 1_000_000_000:.1f}B".replace(".0B", "B")
    if amount >= 1_000_000:
        return f"{amount / 1_000_000:.1f}M".replace(".0M", "M")
    return f"{amount // 1000}K"


def _make_org(rng: random.Random, ids: set, name: str, domain: str, s: str) -> dict:
    city, state, country, postal, prefix = LOCATIONS[rng.randrange(len(LOCATIONS))]
    number = f"{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
    sanitized = (prefix + number).replace(" ", "").replace("-", "")
    employees = int(rng.choice((3, 8, 15, 30, 60, 120, 250, 600, 1500, 4000, 12000)) * (0.7 + rng.random() * 0.6)) + 1
    revenue = employees * rng.randrange(60_000, 260_000)
    founded = rng.randrange(1975, 2024)
    industry = INDUSTRIES[rng.randrange(len(INDUSTRIES))]
    keywords = rng.sample(KEYWORDS, rng.randrange(2, 6))
    techs = rng.sample(TECHNOLOGIES, rng.randrange(2, 7))
    n_rounds = rng.randrange(0, 4)
    funding_events = []
    total_funding = 0
    year = max(founded + 1, 2005)
    for i in range(n_rounds):
        year = min(2026, year + rng.randrange(1, 4))
        amount = rng.randrange(5, 400) * 100_000 * (i + 1)
        total_funding += amount
        funding_events.append(
            {
                "id": _hex_id(rng, ids),
                "date": f"{year}-{rng.randrange(1, 13):02d}-01T00:00:00.000+00:00",
                "news_url": f"https://news.example/{s}-raises-{i + 1}",
                "type": FUNDING_TYPES[min(i + rng.randrange(0, 2), len(FUNDING_TYPES) - 1)],
                "investors": ", ".join(rng.sample(INVESTORS, rng.randrange(1, 3))),
                "amount": _money(amount),
                "currency": "$",
            }
        )
    funding_events.reverse()  # newest first, as Apollo lists them
    street = f"{rng.randrange(1, 900)} {STREETS[rng.randrange(len(STREETS))]}"
    heads = {k: 0 for k in DEPARTMENT_KEYS}
    for k in rng.sample(DEPARTMENT_KEYS, 6):
        heads[k] = max(0, int(employees * rng.random() * 0.3))
    org_id = _hex_id(rng, ids)
    return {
        "id": org_id,
        "name": name,
        "website_url": f"http://www.{domain}",
        "blog_url": None,
        "angellist_url": None,
        "linkedin_url": f"http://www.linkedin.com/company/{s}",
        "twitter_url": f"https://twitter.com/{s.replace('-', '')}" if rng.random() < 0.7 else None,
        "facebook_url": f"https://www.facebook.com/{s.replace('-', '')}" if rng.random() < 0.5 else None,
        "primary_phone": {"number": f"{prefix} {number}", "source": "Account", "sanitized_number": sanitized},
        "languages": ["English"] if country in ("United States", "United Kingdom", "Australia", "Ireland", "Canada")
        else ["English", LANGUAGES[rng.randrange(1, len(LANGUAGES))]],
        "alexa_ranking": rng.randrange(10_000, 5_000_000) if rng.random() < 0.6 else None,
        "phone": f"{prefix} {number}",
        "linkedin_uid": str(rng.randrange(100_000, 99_999_999)),
        "founded_year": founded,
        "publicly_traded_symbol": None,
        "publicly_traded_exchange": None,
        "logo_url": f"https://logos.example/{org_id}.png",
        "crunchbase_url": None,
        "primary_domain": domain,
        "sanitized_phone": sanitized,
        "industry": industry,
        "keywords": keywords,
        "estimated_num_employees": employees,
        "industries": [industry],
        "secondary_industries": [],
        "snippets_loaded": True,
        "industry_tag_id": "%024x" % (INDUSTRIES.index(industry) + 0x5567CD4673),
        "industry_tag_hash": {industry: "%024x" % (INDUSTRIES.index(industry) + 0x5567CD4673)},
        "retail_location_count": 0,
        "raw_address": f"{street}, {city}, {state} {postal}, {country}",
        "street_address": street,
        "city": city,
        "state": state,
        "postal_code": postal,
        "country": country,
        "owned_by_organization_id": None,
        "seo_description": f"{name} – {keywords[0]} for modern teams.",
        "short_description": f"{name} builds {keywords[0]} and {keywords[-1]} products for the {industry} market. "
                             f"Founded in {founded}, based in {city}.",
        "suborganizations": [],
        "num_suborganizations": 0,
        "annual_revenue_printed": _money(revenue),
        "annual_revenue": float(revenue),
        "total_funding": total_funding or None,
        "total_funding_printed": _money(total_funding) if total_funding else None,
        "latest_funding_round_date": funding_events[0]["date"] if funding_events else None,
        "latest_funding_stage": funding_events[0]["type"] if funding_events else None,
        "funding_events": funding_events,
        "technology_names": sorted(t[1] for t in techs),
        "current_technologies": [{"uid": t[0], "name": t[1], "category": t[2]} for t in techs],
        "org_chart_root_people_ids": [],
        "org_chart_sector": "OrgChart::SectorHierarchy::Rules::IT",
        "org_chart_removed": False,
        "org_chart_show_department_filter": True,
        "account_id": None,
        "departmental_head_count": heads,
        **_live_org_fields(org_id, founded, employees),
    }


_EXCHANGES = ("nasdaq", "nyse", "lse")


def _live_org_fields(org_id: str, founded: int, employees: int) -> dict:
    """The fields 2025-2026 answers add (headcount growth, market data, intent, SIC/NAICS), from the id alone
    so the world's random sequence (and every other value) stays as it was."""
    rng = random.Random(int(org_id, 16))
    public = employees > 1000 and rng.random() < 0.5
    growth = [round(rng.uniform(-0.3, 0.6), 4) for _ in range(3)] if founded < 2024 else [None, None, None]
    return {
        "sic_codes": [str(rng.randrange(1000, 9999))], "naics_codes": [str(rng.randrange(11000, 99999))],
        "organization_headcount_six_month_growth": growth[0],
        "organization_headcount_twelve_month_growth": growth[1],
        "organization_headcount_twenty_four_month_growth": growth[2],
        "publicly_traded_symbol": org_id[-4:].upper() if public else None,
        "publicly_traded_exchange": _EXCHANGES[int(org_id[-1], 16) % 3] if public else None,
        "market_cap": f"{rng.randrange(2, 900) / 10:g}B" if public else None,
        "intent_strength": None, "show_intent": False, "has_intent_signal_account": False,
        "intent_signal_account": None,
    }


def build_world(seed: int = 7, n_orgs: int = 2000, people_per_org: int = 12) -> World:
    """Build the world. Same arguments -> same world.

    The cyclic garbage collector is paused while the ~25,000 dicts are made
    (it would otherwise rescan them again and again); nothing here is cyclic.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_world(seed, n_orgs, people_per_org)
    finally:
        if was_enabled:
            gc.enable()


def _build_world(seed: int, n_orgs: int, people_per_org: int) -> World:
    rng = random.Random(seed)
    ids: set = set()
    orgs: list[dict] = []
    used_names: set = set()
    used_domains: set = set()
    na, nb = len(ORG_WORDS_A), len(ORG_WORDS_B)
    for i in range(n_orgs):
        while True:
            name = f"{ORG_WORDS_A[rng.randrange(na)]} {ORG_WORDS_B[rng.randrange(nb)]}"
            if len(used_names) >= na * nb // 2 or rng.random() < 0.04:
                name += f" {ORG_SUFFIX_WORDS[rng.randrange(len(ORG_SUFFIX_WORDS))]}"
            if name in used_names:
                if len(used_names) >= na * nb * len(ORG_SUFFIX_WORDS) // 2:
                    name = f"{name} {i}"
                else:
                    continue
            break
        used_names.add(name)
        name_slug = slug(name)
        domain = name_slug + ".example"
        n = 2
        while domain in used_domains:
            domain = f"{name_slug}-{n}.example"
            n += 1
        used_domains.add(domain)
        orgs.append(_make_org(rng, ids, name, domain, name_slug))

    people: list[dict] = []
    mobile_phones: dict[str, str] = {}
    personal_emails: dict[str, list[str]] = {}
    world = World(seed=seed, orgs=orgs, people=people, mobile_phones=mobile_phones, personal_emails=personal_emails)
    nf, nl, nr = len(FIRST_NAMES), len(LAST_NAMES), len(ROLES)
    nfa, nla, nloc = len(FIRST_NAMES_ACCENTED), len(LAST_NAMES_ACCENTED), len(LOCATIONS)
    mean = max(1, people_per_org)
    rand = rng.random
    getbits = rng.getrandbits
    every_name = FIRST_NAMES + FIRST_NAMES_ACCENTED + LAST_NAMES + LAST_NAMES_ACCENTED
    slugs = {n: slug(n) for n in every_name}
    flat = {n: slugs[n].replace("-", "") for n in every_name}
    keys = {n: name_key(n) for n in every_name}
    n_past = len(PAST_TITLES)

    def new_id() -> str:
        while True:
            value = f"{getbits(96):024x}"
            if value not in ids:
                ids.add(value)
                return value

    for org in orgs:
        world.org_by_id[org["id"]] = org
        world.org_by_domain[org["primary_domain"]] = org
        world.orgs_by_name.setdefault(name_key(org["name"]), []).append(org)
        domain = org["primary_domain"]
        count = rng.randint(1, 2 * mean - 1) if mean > 1 else 1
        used_local: set = set()
        indices = world.people_by_org.setdefault(org["id"], [])
        for j in range(count):
            r = rand()
            first = FIRST_NAMES_ACCENTED[int(rand() * nfa)] if r < 0.06 else FIRST_NAMES[int(rand() * nf)]
            last = LAST_NAMES_ACCENTED[int(rand() * nla)] if rand() < 0.05 else LAST_NAMES[int(rand() * nl)]
            # the first person of each org is its chief executive or founder
            role = ROLES[0 if j == 0 else (1 if j == 1 and rand() < 0.5 else 2 + int(rand() * (nr - 2)))]
            title, seniority, departments, subdepartments, functions = role
            local = f"{flat[first]}.{flat[last]}"
            k = 2
            base_local = local
            while local in used_local:
                local = f"{base_local}{k}"
                k += 1
            used_local.add(local)
            pid = new_id()
            has_email = rand() >= 0.12
            email = f"{local}@{domain}" if has_email else None
            li_slug = f"{slugs[first]}-{slugs[last]}-{getbits(16):04x}"
            loc = org if rand() < 0.8 else dict(
                zip(("city", "state", "country"), LOCATIONS[int(rand() * nloc)][:3], strict=True)
            )
            start_year = max(org["founded_year"], 2000) + int(rand() * (2026 - max(org["founded_year"], 2000)))
            past_org = orgs[int(rand() * len(orgs))]
            history = [
                {
                    "_id": new_id(), "id": None, "key": None,
                    "created_at": None, "current": True, "degree": None, "description": None, "emails": None,
                    "end_date": None, "grade_level": None, "kind": None, "major": None,
                    "organization_id": org["id"], "organization_name": org["name"], "raw_address": None,
                    "start_date": f"{start_year}-{1 + int(rand() * 12):02d}-01", "title": title, "updated_at": None,
                }
            ]
            if rand() < 0.7 and past_org is not org:
                past_start = start_year - 2 - int(rand() * 6)
                history.append(
                    {
                        "_id": new_id(), "id": None, "key": None,
                        "created_at": None, "current": False, "degree": None, "description": None, "emails": None,
                        "end_date": f"{start_year}-01-01", "grade_level": None, "kind": None, "major": None,
                        "organization_id": past_org["id"], "organization_name": past_org["name"], "raw_address": None,
                        "start_date": f"{past_start}-{1 + int(rand() * 12):02d}-01",
                        "title": PAST_TITLES[int(rand() * n_past)], "updated_at": None,
                    }
                )
            for h in history:
                h["id"] = h["_id"]
                h["key"] = h["_id"]
            engage = rand() < 0.3
            person = {
                "id": pid,
                "first_name": first,
                "last_name": last,
                "name": f"{first} {last}",
                "linkedin_url": f"http://www.linkedin.com/in/{li_slug}",
                "title": title,
                "email_status": ("verified" if rand() < 0.85 else "unverified") if has_email else "unavailable",
                "photo_url": f"https://photos.example/{pid}.jpg" if rand() < 0.6 else None,
                "twitter_url": f"https://twitter.com/{local.replace('.', '_')}" if rand() < 0.2 else None,
                "github_url": f"https://github.com/{local.replace('.', '-')}"
                if functions == ["engineering"] and rand() < 0.5 else None,
                "facebook_url": None,
                "extrapolated_email_confidence": round(0.5 + rand() * 0.5, 2) if has_email and rand() < 0.3 else None,
                "headline": f"{title} at {org['name']}",
                "email": email,
                "organization_id": org["id"],
                "employment_history": history,
                "state": loc["state"],
                "city": loc["city"],
                "country": loc["country"],
                "organization": org,
                "departments": departments,
                "subdepartments": subdepartments,
                "functions": functions,
                "seniority": seniority,
                "revealed_for_current_team": True,
                "is_likely_to_engage": engage,
                "intent_strength": None,
                "show_intent": False,
                # 2025-2026 answers: a catch-all e-mail domain (by organisation), links to the team's records
                "email_domain_catchall": int(org["id"][-3:], 16) % 7 == 0,
                "contact_id": None,
                "account_id": None,
            }
            if rand() < 0.3:
                mobile_phones[pid] = (
                    f"{LOCATIONS[int(rand() * nloc)][4]} {200 + int(rand() * 799)}-{1000 + int(rand() * 8999)}"
                )
            if rand() < 0.25:
                personal_emails[pid] = [f"{local}{10 + int(rand() * 89)}@mailbox.example"]
            indices.append(len(people))
            people.append(person)
            world.person_by_id[pid] = person
            if email:
                world.person_by_email[email] = person
            world.person_by_linkedin[f"linkedin.com/in/{li_slug}"] = person
            world.person_by_name_org.setdefault((keys[first], keys[last], org["id"]), person)
    return world
