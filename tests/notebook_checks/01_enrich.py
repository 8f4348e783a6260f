# Run after notebooks/01_enrich.ipynb, in its kernel.
from apollo_frames.client.http import default_client

_sandbox = default_client()._transport.app
_stats, _again = enriched.attrs["apollo"], again.attrs["apollo"]
assert len(enriched) == len(leads) and enriched["apollo_status"].notna().all()
assert _stats["matched"] > 400 and _stats["api_calls"] > 0
assert _stats["credits_consumed"] == _sandbox.credits_consumed
assert _again["api_calls"] == 0 and _again["credits_consumed"] == 0
assert (again["person.id"].fillna("") == enriched["person.id"].fillna("")).all()
assert apollo_frames.ledger()["credits"].sum() == _sandbox.credits_consumed
assert pd.read_parquet("leads_enriched.parquet").shape == enriched.shape
