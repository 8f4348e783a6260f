# Run after notebooks/04_push_contacts.ipynb, in its kernel.
from apollo_frames.client.http import default_client

_sandbox = default_client()._transport.app
_stats = pushed.attrs["apollo"]
assert _stats["errors"] == 0 and pushed["apollo_status"].notna().all()
_emails = [c["email"] for c in _sandbox.store.contacts.values()]
assert len(_emails) == len(set(_emails)) == _stats["created"]           # no contact twice
_sent = again["apollo_status"] == "updated"
assert _sent.sum() > 0
assert all(_sandbox.store.contacts[i]["title"] == "VP Revenue" for i in again.loc[_sent, "apollo_id"])
pd.testing.assert_frame_equal(pd.read_parquet("push_report.parquet"), pushed)
