"""Run quality flags: Good / Medium / Bad / Null per plot group and super group, over chunk ranges of a run.

`rules` decides (pure, tested without a database); `compute` reads a run's verdicts and stores its flags;
`signoff` records a run coordinator's confirmations and overrides and says which flag stands; `export`
writes the certification files (golden JSON of Good ranges, CSV of everything).  docs/flags.md explains it.
"""
