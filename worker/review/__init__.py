"""The moderators' review page: pending plans and escalations, evidence with the matched spans, decisions."""
