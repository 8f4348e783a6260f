# Run after notebooks/02_estimate_and_budget.ipynb, in its kernel.
from apollo_frames.client.http import default_client

_sandbox = default_client()._transport.app
_partial, _done = partial.attrs["apollo"], done.attrs["apollo"]
assert big.duration_s > 86_400 and big.api_calls == 2_000
assert _partial["credits_consumed"] <= 300 and _partial["skipped"] > 0
assert rest.credits_max == _partial["skipped_credits_max"]
assert _done["skipped"] == 0 and _done["credits_consumed"] <= rest.credits_max
assert leads.apollo.estimate(operation="enrich_people").api_calls == 0
assert apollo_frames.ledger()["credits"].sum() == _sandbox.credits_consumed
assert _sandbox.credits_consumed == _partial["credits_consumed"] + _done["credits_consumed"]
