# Run after notebooks/05_phones_meter_quality.ipynb, in its kernel.
assert (people["apollo_status"] == "matched").mean() > 0.9
assert strict.attrs["apollo"]["api_calls"] == 0                  # the answers were stored
assert pilot.pilot.credits_spent <= 50 and pilot.credits_expected > 0
assert (pending["apollo_async_status"] == "pending").any()
assert phones["person.mobile_phone"].notna().sum() > 0
assert apollo_frames.ledger()["credits"].sum() == sandbox.credits_consumed
_flagged = people["apollo_match_flags"].fillna("").str.contains("company_mismatch|job_change")
assert _flagged[spoiled].mean() >= 0.8 and _flagged[~spoiled].mean() <= 0.05
assert again["apollo_status"].tolist()[:2] == ["suppressed", "suppressed"]
assert (again["apollo_status"][2:] == "matched").all() and again.attrs["apollo"]["api_calls"] == 0
