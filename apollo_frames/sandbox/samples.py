"""Write the messy sample CSVs (``data/samples/people.csv``, ``companies.csv``) from the default world.

``python -m apollo_frames.sandbox.samples [DIR]`` rewrites them. The output is a
pure function of the seed, so a test can check the committed files never drift.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

from .world import World, build_world

PEOPLE_HEADER = ("First Name", "Last Name", "Email", "Company", "Company Domain", "LinkedIn")
COMPANY_HEADER = ("Company", "Website")

UNKNOWN_PEOPLE = (
    ("Harriet", "Quill"), ("Bartholomew", "Ensign"), ("Noémie", "Vasseur"), ("Tobias", "Fenwick"),
    ("Wanda", "Oyelaran"), ("Cyrus", "Penhallow"), ("Dagny", "Lindqvist"), ("Ezra", "Molyneux"),
    ("Greta", "Abernathy"), ("Ignacio", "Ybarra"), ("Ottilie", "Marchbanks"), ("Rufus", "Tennant"),
    ("Søren", "Halvorsen"), ("Yara", "Castellanos"), ("Zeke", "Ormsby"),
)
UNKNOWN_COMPANIES = (
    "Quasar Pickle Works", "Mothball Dynamics", "Velvet Anvil Co", "Paper Lantern Freight", "Hollow Reed Media",
    "Tin Whistle Robotics", "Crooked Fence Labs", "Lantern & Lark", "Obsidian Teacup Ltd", "Gossamer Bolt",
)
MALFORMED_EMAILS = (
    "jane.doe@", "bob at {d}", "mary@@{d}", "@{d}", "first.last{d}", "ann.lee@{d}.", "tom,smith@{d}", "no email given",
)


def _url_forms(domain: str, rng: random.Random) -> str:
    forms = (
        domain, domain, domain.upper(), f"https://www.{domain}/about", f"http://{domain}", f"www.{domain}",
        f"https://{domain}/", f" {domain} ", f"https://www.{domain}/contact?ref=footer",
    )
    return forms[rng.randrange(len(forms))]


def _messy_email(email: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.25:
        return email.upper()
    if r < 0.4:
        return f"  {email} "
    if r < 0.5:
        first, _, rest = email.partition("@")
        return f"{first.title()}@{rest.title()}"
    return email


def people_rows(world: World, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed * 7919 + 1)
    people = world.people
    picks = rng.sample(range(len(people)), 430)
    # make sure some accented names are in the sample
    accented = [i for i, p in enumerate(people) if not p["name"].isascii()]
    picks += [i for i in accented[:30] if i not in picks]
    rows: list[list[str]] = []
    for i in picks:
        p = people[i]
        org = p["organization"]
        r = rng.random()
        email = _messy_email(p["email"], rng) if p["email"] and rng.random() < 0.9 else ""
        company = org["name"] if rng.random() < 0.85 else ""
        domain = _url_forms(org["primary_domain"], rng) if rng.random() < 0.8 else ""
        linkedin = p["linkedin_url"] if rng.random() < 0.35 else ""
        if linkedin and rng.random() < 0.3:
            linkedin = linkedin.replace("http://www.", "https://").rstrip("/") + "/"
        first, last = p["first_name"], p["last_name"]
        if r < 0.03:
            first = f" {first.lower()} "
        elif r < 0.05:
            last = last.upper()
        rows.append([first, last, email, company, domain, linkedin])
    # unknown people: at unknown companies, and unknown names at known companies (no e-mail)
    for k, (first, last) in enumerate(UNKNOWN_PEOPLE):
        company = UNKNOWN_COMPANIES[k % len(UNKNOWN_COMPANIES)]
        dom = company.lower().replace(" & ", "-").replace(" ", "-") + ".example"
        email = f"{first.lower()}.{last.lower()}@{dom}".replace("é", "e").replace("ø", "o")
        rows.append([first, last, email, company, dom, ""])
    for first, last in UNKNOWN_PEOPLE[:12]:
        org = world.orgs[rng.randrange(len(world.orgs))]
        rows.append([first, last, "", org["name"], org["primary_domain"], ""])
    for k in range(8):
        domain = world.orgs[rng.randrange(len(world.orgs))]["primary_domain"]
        rows.append([f"Ghost{k}", "Nobody", f"ghost{k}.nobody@{domain}", "", "", ""])
    # malformed e-mails (some rows still have name + domain to fall back on)
    for template in MALFORMED_EMAILS:
        p = people[rng.randrange(len(people))]
        d = p["organization"]["primary_domain"]
        keep_domain = rng.random() < 0.5
        rows.append([p["first_name"], p["last_name"], template.format(d=d), p["organization"]["name"],
                     d if keep_domain else "", ""])
    # blank and nearly blank rows
    rows += [["", "", "", "", "", ""], ["", "", "   ", "", "", ""], ["Solo", "", "", "", "", ""],
             ["", "", "", "Acme", "", ""]]
    # exact duplicates and duplicates differing only by case / spacing
    base = rows[:430]
    for row in rng.sample(base, 25):
        rows.append(list(row))
    for row in rng.sample(base, 25):
        variant = list(row)
        if variant[2]:
            variant[2] = variant[2].strip().swapcase() if rng.random() < 0.5 else f"   {variant[2].strip()}   "
        else:
            variant[0] = variant[0].strip().upper()
        rows.append(variant)
    rng.shuffle(rows)
    return rows


def company_rows(world: World, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed * 104729 + 2)
    orgs = rng.sample(world.orgs, 200)
    rows: list[list[str]] = []
    for org in orgs:
        website = _url_forms(org["primary_domain"], rng) if rng.random() < 0.92 else ""
        name = org["name"] if rng.random() < 0.95 else ""
        if name and rng.random() < 0.05:
            name = name.upper()
        rows.append([name, website])
    for company in UNKNOWN_COMPANIES:
        rows.append([company, "https://www." + company.lower().replace(" & ", "-").replace(" ", "-") + ".example/"])
    rows += [["", ""], ["Acme", "not a website"], ["Widgets Inc", "acme"], ["", "   "], ["Blank Website Corp", ""]]
    for row in rng.sample(rows[:200], 12):
        rows.append(list(row))
    for row in rng.sample(rows[:200], 12):
        variant = list(row)
        variant[1] = f"  {variant[1].upper()}  " if variant[1] else variant[1]
        variant[0] = variant[0].lower() if variant[0] else variant[0]
        rows.append(variant)
    rng.shuffle(rows)
    return rows


def _write(path: Path, header, rows) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_samples(directory, seed: int = 7) -> tuple[Path, Path]:
    """Write ``people.csv`` and ``companies.csv`` for the default world of ``seed``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    world = build_world(seed)
    people_path, companies_path = directory / "people.csv", directory / "companies.csv"
    _write(people_path, PEOPLE_HEADER, people_rows(world, seed))
    _write(companies_path, COMPANY_HEADER, company_rows(world, seed))
    return people_path, companies_path


if __name__ == "__main__":  # pragma: no cover
    target = sys.argv[1] if len(sys.argv) > 1 else "data/samples"
    for written in write_samples(target):
        print(written)
