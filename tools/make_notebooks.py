"""Writes notebooks/*.ipynb: analyst flows, no assertions (tests/notebook_checks/ holds the checks).

Run `python -m tools.make_notebooks notebooks` after editing a cell here; the notebooks are committed as written.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks")

SETUP_MD = ("This notebook runs against the **embedded sandbox**, an offline stand-in for Apollo with fictional "
            "people and companies: no key, no network, no real credits. With your own key, leave out "
            "`apollo_frames.use_sandbox()` and set `APOLLO_API_KEY`; everything else stays the same.")
SETUP = """import pandas as pd

import apollo_frames

apollo_frames.use_sandbox()   # the one line: offline Apollo, fictional data, no key, no credits"""


def nb(cells: list[str]) -> nbformat.NotebookNode:
    book = new_notebook(cells=[new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c) for c in cells])
    book.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    book.metadata["language_info"] = {"name": "python"}
    return book


NOTEBOOKS: dict[str, list[str]] = {
"01_enrich.ipynb": [
"md:# Enrich a lead list\n\nLoad an export, enrich it in one call, see why rows failed, keep the result as Parquet, "
"and see that a second run costs nothing.\n\n" + SETUP_MD,
SETUP,
"md:## The leads\n\nA CRM export as messy as real ones: e-mails in mixed case, websites written as URLs, "
"names without a company, duplicates and a few footer lines. `read_table` reads a file as Excel, Outlook or "
"Google Sheets wrote it (encoding, separator, title lines above the header, the sheet that holds the data); "
"`pd.read_csv` works too for a clean file.",
"""leads = apollo_frames.read_table("../data/samples/people.csv")   # any CSV or .xlsx, as Excel or Sheets wrote it
print(f"{len(leads):,} rows")
leads.head()""",
"md:Which columns will be used, and why the others are not? Nothing is sent to find out:",
"""apollo_frames.columns(leads, operation="enrich_people")""",
"md:## Enrich\n\nOne call. Rows are normalised and deduplicated, sent 10 to a request, paced by Apollo's rate "
"limits, and every answer is stored on disk as it arrives. The table at the end is the run's summary.",
"""enriched = leads.apollo.enrich_people()
enriched[["Email", "apollo_status", "person.name", "person.title", "person.organization.name"]].head(10)""",
"md:## How did it go?\n\nEvery input row comes back, in order, with a status:",
"""ax = enriched["apollo_status"].value_counts().sort_values().plot.barh(title="Rows by status", color="#4c72b0")
ax.set_xlabel("rows");""",
"md:The rows that did not match, grouped by reason, with the fix:",
"""enriched.apollo.report()""",
"md:How well each kind of identifier matched, and where an answer disagrees with the row it came from "
"(`apollo_match_flags`):",
"""quality = enriched.apollo.match_report()
quality.plot();""",
"""quality""",
"md:## Keep it\n\nThe columns have a declared schema, so Parquet files from different runs concatenate.",
"""enriched.to_parquet("leads_enriched.parquet")
pd.read_parquet("leads_enriched.parquet").shape""",
"md:## Run it again\n\nEvery answer now comes from the store on disk: no request, no credit.",
"""again = leads.apollo.enrich_people()""",
"md:What the two runs spent, from the credit ledger (one row per request, kept beside the store):",
"""apollo_frames.credit_summary(by="run")""",
],
"02_estimate_and_budget.ipynb": [
"md:# Estimate, cap, finish: credits under control\n\nBefore spending on a large list, ask what it would cost "
"(`estimate` sends nothing), run with a cap (`max_credits`), look at what was left, and finish with what "
"the estimate says.\n\n" + SETUP_MD,
SETUP,
"""leads = pd.read_csv("../data/samples/people.csv", dtype=str)
print(f"{len(leads):,} rows")""",
"md:## 1. What would it cost?\n\nInvalid rows, duplicates and answers already stored are counted out; the "
"rest is worked out in requests, credits (the worst case, and what is expected from the match rates seen so "
"far) and time (from the rate limits).",
"""estimate = leads.apollo.estimate(operation="enrich_people")
estimate""",
"md:Time matters on a free plan (50 requests a minute, 200 an hour, 600 a day). A list of 20,000 new leads "
"takes days there; an estimate needs no key, so ask before you start:",
"""new_leads = pd.DataFrame({"Email": [f"lead{i}@prospect-{i % 400}.example" for i in range(20_000)]})
with apollo_frames.ApolloClient(plan="free") as free_plan:
    big = new_leads.apollo.estimate(operation="enrich_people", client=free_plan)
days = big.duration_s / 86_400
print(f"{big.api_calls:,} requests, at most {big.credits_max:,.0f} credits, about {days:.1f} days")""",
"md:## 2. Run with a cap\n\nWith `max_credits=300` no request is sent that could take the run past 300 "
"credits, whatever Apollo answers. The rest is `skipped`, and a warning says what finishing would cost.",
"""partial = leads.apollo.enrich_people(max_credits=300)""",
"""ax = partial["apollo_status"].value_counts().sort_values().plot.barh(title="Rows by status, capped at 300 credits")
ax.set_xlabel("rows");""",
"md:## 3. Finish\n\nWhat was done is stored: the estimate now counts only the skipped rows.",
"""rest = leads.apollo.estimate(operation="enrich_people")
rest""",
"""done = leads.apollo.enrich_people(max_credits=rest.credits_max)""",
"md:## 4. Where the credits went\n\nEvery request is in the ledger, a SQLite file beside the store that a "
"notebook and a nightly job can share.",
"""apollo_frames.credit_summary(by="run")""",
"""apollo_frames.plot_credits();""",
],
"03_search_to_enrich.ipynb": [
"md:# From target companies to decision makers with e-mails\n\nA list of target accounts, one people search per "
"company (free: it returns teasers), then one enrichment of the people found (1 credit each), joined back "
"to the accounts.\n\n" + SETUP_MD,
SETUP,
"md:The target accounts, as they usually arrive: names and websites, some written as URLs.",
"""accounts = pd.read_csv("../data/samples/companies.csv", dtype=str).head(8)
accounts""",
"md:## 1. Search\n\nThe `Website` column is recognised as the domain filter (URLs are cut to domains); the "
"other filters apply to every row. Identical queries are sent once; a row without a website is never "
"searched (an unfiltered search would return strangers).",
"""found = accounts.apollo.search(
    kind="people",
    max_results_per_row=5,
    person_seniorities=["Owner", "Founder", "C-Suite", "VP", "Director"],   # spellings are normalised
)
found[["apollo_input_index", "person.first_name", "person.last_name_obfuscated", "person.title",
       "person.organization.name"]].head(10)""",
"md:## 2. Enrich the people found\n\nSearch results are teasers (no e-mail, obfuscated last name). Their "
"`person.id` is all an enrichment needs.",
"""people = found.apollo.enrich_people()
people[["apollo_status", "person.name", "person.title", "person.email"]].head(10)""",
"md:## 3. Back to the accounts\n\n`apollo_input_index` is the account row each person came from.",
"""leads = people.join(accounts, on="apollo_input_index")[
    ["Company", "Website", "person.name", "person.title", "person.email", "person.linkedin_url"]]
ax = leads["Company"].value_counts().sort_values().plot.barh(title="Decision makers found per account")
ax.set_xlabel("people");""",
"""leads.to_parquet("decision_makers.parquet")
leads.head()""",
"md:Running it all again costs nothing: the search pages and the answers are stored.",
"""again = accounts.apollo.search(kind="people", max_results_per_row=5,
                                person_seniorities=["owner", "founder", "c_suite", "vp", "director"])
again_people = again.apollo.enrich_people()""",
],
"04_push_contacts.ipynb": [
"md:# Push enriched leads to Apollo as contacts\n\nEnrich, keep the rows worth pushing, see what would be sent "
"(a dry run), push, and push again a week later without creating anyone twice. Pushing costs no credits, "
"but every request counts against Apollo's rate limits: contacts are created 100 to a request.\n\n" + SETUP_MD,
SETUP,
"md:## 1. Enrich",
"""leads = pd.read_csv("../data/samples/people.csv", dtype=str)
enriched = leads.apollo.enrich_people(progress=False)
enriched["apollo_status"].value_counts()""",
"md:## 2. Keep the rows worth pushing\n\nMatched people with a title, and only the columns we want in Apollo. "
"Columns are recognised by name: the list's own `Email` wins over `person.email`; `person.title`, "
"`person.organization.name` and `person.linkedin_url` fill `title`, `organization_name` and `linkedin_url`.",
"""wanted = ["Email", "First Name", "Last Name", "person.title", "person.organization.name", "person.linkedin_url"]
to_push = enriched.loc[(enriched["apollo_status"] == "matched") & enriched["person.title"].notna(), wanted].copy()
to_push["Email"] = to_push["Email"].fillna(enriched["person.email"])   # people matched by name: use Apollo's e-mail
print(f"{len(to_push):,} rows to push")
to_push.head()""",
"md:## 3. Dry run: what would be sent\n\nNothing is sent. Each row gets the status it would try for and "
"`apollo_payload` the exact record; rows repeating an e-mail are `duplicate`.",
"""plan = to_push.apollo.push_contacts(mode="upsert", labels=["apollo_frames demo"], dry_run=True)
print(plan.attrs["apollo"]["planned_requests"], "requests planned")
plan["apollo_status"].value_counts()""",
"""import json

json.loads(plan["apollo_payload"].dropna().iloc[0])""",
"md:## 4. Push",
"""pushed = to_push.apollo.push_contacts(mode="upsert", labels=["apollo_frames demo"])
pushed[["Email", "apollo_status", "apollo_id", "apollo_error"]].head(10)""",
"""ax = pushed["apollo_status"].value_counts().sort_values().plot.barh(title="Push result by row")
ax.set_xlabel("rows");""",
"md:## 5. A week later: update, do not duplicate\n\nSome titles changed. Upsert finds the contacts Apollo "
"already has and updates them; nothing is created twice.",
"""changed = to_push.head(20).assign(**{"person.title": "VP Revenue"})
again = changed.apollo.push_contacts(mode="upsert", progress=False)
again["apollo_status"].value_counts()""",
"md:## 6. Keep the report\n\nIt has the input's index and columns plus `apollo_status`, `apollo_id` and "
"`apollo_error`, so it joins back to the warehouse table.",
"""pushed.to_parquet("push_report.parquet")
pd.read_parquet("push_report.parquet").dtypes.tail(3)""",
],
"05_phones_meter_quality.ipynb": [
"md:# Match quality, pilot estimates, phones and the credit meter\n\nFour things an analyst asks before "
"trusting a run: did each answer fit its row, what will the whole list cost, where are the phone numbers, "
"and how many credits are left.\n\nThe sandbox here simulates time, so waiting for phone numbers (30 s in "
"the sandbox, minutes at Apollo) costs nothing; with your own key, use `apollo_frames.use_client(...)` "
"or nothing at all.",
"""import pandas as pd

import apollo_frames
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox

sandbox = Sandbox(clock=FakeClock())                        # offline Apollo whose clock is simulated
apollo_frames.use_client(sandbox.client(cache_dir="store_05"))   # a store of its own: nothing known yet""",
"md:## 1. Did each answer fit its row?\n\nEvery matched row is compared with its input: `apollo_match_flags` "
"names what disagrees (`email_domain_mismatch`, `company_mismatch`, `name_mismatch`, `stale_title`), and "
"says `job_change` instead of `company_mismatch` when the answer's own employment history lists the input "
"company as a past employer. To see them, spoil the company of every fifth row of a list:",
"""leads = pd.read_csv("../data/samples/people.csv", dtype=str)
leads = leads[leads["Email"].notna() & leads["Company"].notna()].head(150).reset_index(drop=True)
spoiled = leads.index % 5 == 0
leads.loc[spoiled, "Company"] = leads["Company"].shift(-3)[spoiled]     # someone else's company
people = leads.apollo.enrich_people(progress=False)
quality = people.apollo.match_report()
quality.plot();""",
"""quality""",
"""people.loc[people["apollo_match_flags"].fillna("") != "",
           ["Email", "Company", "person.organization.name", "apollo_match_flags"]].head(8)""",
"md:`on_conflict=\"reject\"` turns contradicted rows into status `conflict` (a job change is not a "
"contradiction). The answers are stored, so this costs nothing:",
"""strict = leads.apollo.enrich_people(progress=False, on_conflict="reject")
strict["apollo_status"].value_counts()""",
"md:## 2. What will the whole list cost? A pilot\n\n`estimate(..., pilot=50)` enriches a stratified sample "
"(at most 50 credits, kept in the store) and extrapolates, with a 90 % interval.",
"""everyone = pd.read_csv("../data/samples/people.csv", dtype=str)
pilot = everyone.apollo.estimate(operation="enrich_people", pilot=50)
pilot""",
"md:## 3. Phone numbers, without a webhook\n\n`reveal_phone_number=True` without `webhook_url` asks Apollo "
"to hold the numbers: rows come back `pending`, and `collect()` polls until they are ready.",
"""team = leads.tail(30)
pending = team.apollo.enrich_people(progress=False, reveal_phone_number=True)
pending["apollo_async_status"].value_counts()""",
"""phones = pending.apollo.collect()
phones[["Email", "apollo_async_status", "person.mobile_phone"]].dropna(subset=["person.mobile_phone"]).head(10)""",
"md:## 4. The credit meter\n\n`credit_balance()` reads Apollo's credit usage (it costs nothing). Before a run "
"whose worst case is above 100 credits the meter is read, and a run that could overspend what is left is "
"refused before any request.",
"""apollo_frames.credit_balance()""",
"""apollo_frames.plot_credits();""",
"md:## 5. Personal data: opt-outs and erasure\n\nA person who opts out is never enriched, pushed or kept again: "
"`suppress` adds them to this store's list (kept as keyed hashes, never the address). `forget` also erases "
"everything stored about a person (answers, copies, old versions; the files are compacted) and suppresses "
"them. Their rows come back `suppressed`, and nothing is sent for them.",
"""opted_out, erased = leads.loc[0, "Email"], leads.loc[1, "Email"]
apollo_frames.suppress([opted_out], reason="opt-out 2026-12")
print(apollo_frames.forget([erased]))
apollo_frames.suppressed()""",
"""again = leads.head(5).apollo.enrich_people(progress=False)
again[["Email", "apollo_status", "apollo_error"]]""",
],
}

for name, cells in NOTEBOOKS.items():
    nbformat.write(nb(cells), OUT / name)
print("wrote", len(NOTEBOOKS))
