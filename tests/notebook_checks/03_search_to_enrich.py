# Run after notebooks/03_search_to_enrich.ipynb, in its kernel.
from apollo_frames.client.http import default_client

_sandbox = default_client()._transport.app
_search, _people = found.attrs["apollo"], people.attrs["apollo"]
assert _search["credits_consumed"] == 0 and len(found) > 10
assert found["person.email"].isna().all()                       # teasers
assert (people["apollo_status"] == "matched").all()
assert _people["credits_consumed"] == _sandbox.credits_consumed
assert again.attrs["apollo"]["api_calls"] == 0 and again_people.attrs["apollo"]["api_calls"] == 0
assert len(pd.read_parquet("decision_makers.parquet")) == len(people)
