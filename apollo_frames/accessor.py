"""The ``df.apollo`` accessor: a thin layer that hands the frame to the plain functions.

Everything here is also available without the accessor, e.g.
``apollo_frames.enrich_people(df, ...)``.
"""

from __future__ import annotations

import pandas as pd

from apollo_frames.ops import orgs

from apollo_frames.ops import people

from apollo_frames.ops import search as _search


@pd.api.extensions.register_dataframe_accessor("apollo")
class ApolloAccessor:
    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def enrich_people(
        self,
        columns=None,
        reveal_personal_emails=False,
        reveal_phone_number=False,
        webhook_url=None,
        max_credits=None,
        refresh=False,
        progress=True,
        client=None,
        confirm_over=None,
    ) -> pd.DataFrame:
        """Enrich each row as a person (POST people/bulk_match, 10 per call). See ``apollo_frames.enrich_people``."""
        return people.enrich_people(
            self._frame,
            columns=columns,
            reveal_personal_emails=reveal_personal_emails,
            reveal_phone_number=reveal_phone_number,
            webhook_url=webhook_url,
            max_credits=max_credits,
            refresh=refresh,
            progress=progress,
            client=client,
            confirm_over=confirm_over,
        )

    def enrich_orgs(
        self, columns=None, max_credits=None, refresh=False, progress=True, client=None, confirm_over=None
    ) -> pd.DataFrame:
        """Enrich each row as an organization by domain (POST organizations/bulk_enrich, 10 per call)."""
        return orgs.enrich_orgs(
            self._frame, columns=columns, max_credits=max_credits, refresh=refresh, progress=progress, client=client,
            confirm_over=confirm_over,
        )

    def search(
        self,
        kind="people",
        max_results_per_row=10,
        columns=None,
        max_credits=None,
        refresh=False,
        progress=True,
        client=None,
        **filters,
    ) -> pd.DataFrame:
        """One Apollo search per row (kind="people" or "orgs"); a long frame with ``apollo_input_index``.

        Per-row filters come from columns (``domain`` -> q_organization_domains_list, ``organization_id`` ->
        organization_ids, ``title`` -> person_titles, ...; ``columns=`` overrides), combined with the keyword
        filters. See ``apollo_frames.search_frame``.
        """
        return _search.search_frame(
            self._frame,
            kind=kind,
            max_results_per_row=max_results_per_row,
            columns=columns,
            max_credits=max_credits,
            refresh=refresh,
            progress=progress,
            client=client,
            **filters,
        )

    def estimate(self, operation, **options):
        """What ``operation`` ("enrich_people", "enrich_orgs") would cost on this frame; sends nothing.

        Takes ``client=``, ``columns=`` and the operation's options. See ``apollo_frames.estimates.estimate``.
        """
        from apollo_frames import estimates as credits

        return credits.estimate(self._frame, operation, **options)

    def push_contacts(
        self, mode="upsert", columns=None, run_dedupe=True, labels=None, dry_run=False, progress=True, client=None,
        default_region="US",
    ) -> pd.DataFrame:
        """Push each row to Apollo as a contact: mode "upsert" (default), "insert" or "update".

        One status per row (created, existing, updated, invalid, duplicate, error, skipped) with ``apollo_id``;
        ``dry_run=True`` sends nothing and returns the plan. See ``apollo_frames.push_contacts``.
        """
        from apollo_frames.ops import push

        return push.push_contacts(
            self._frame, mode=mode, columns=columns, run_dedupe=run_dedupe, labels=labels, dry_run=dry_run,
            progress=progress, client=client, default_region=default_region,
        )

    def push_accounts(
        self, mode="upsert", columns=None, run_dedupe=True, labels=None, dry_run=False, progress=True, client=None,
        default_region="US",
    ) -> pd.DataFrame:
        """Push each row to Apollo as an account, keyed on its domain (needs a master key). See ``apollo_frames.push_accounts``."""
        from apollo_frames.ops import push

        return push.push_accounts(
            self._frame, mode=mode, columns=columns, run_dedupe=run_dedupe, labels=labels, dry_run=dry_run,
            progress=progress, client=client, default_region=default_region,
        )
